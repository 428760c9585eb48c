//! Any bytes as a stream of kernel records (each a little-endian u16
//! length, then that many bytes): decoding never panics, pairs entries
//! with exits as far as it can, and every event it yields serialises.
#![no_main]
use agentwatch::pipeline::decode::{Decoder, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = vec!["fuzz".to_string()];
    let mut decoder = Decoder::default();
    let mut rest = data;
    let mut events = Vec::new();
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let take = n.min(body.len());
        if let Ok(rec) = Record::from_bytes(&body[..take]) {
            if let Ok(evs) = decoder.decode(&rec, &names) {
                events.extend(evs);
            }
        }
        rest = &body[take..];
    }
    events.extend(decoder.drain());
    for ev in &events {
        serde_json::to_string(ev).expect("an event serialises");
    }
});
