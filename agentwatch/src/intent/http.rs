//! One TLS connection's plain text as HTTP/1.1 exchanges: the request an
//! agent wrote (head and body, possibly with a gap where a long write was
//! only partly captured) and the response it read (a JSON body or a
//! server-sent event stream, plain or chunked). Tolerant: anything it
//! cannot read as HTTP ends the exchange with what it has.

/// Bytes kept per direction of one exchange.
const KEEP: usize = 256 * 1024;

/// A request or a response being read.
#[derive(Debug, Default)]
pub struct Message {
    /// The captured bytes, in order (a gap where a long write was cut).
    pub bytes: Vec<u8>,
    /// Bytes the calls carried, captured or not.
    pub logical: u64,
    /// Some bytes were not captured.
    pub gap: bool,
    /// A long write's head came; its tail record is still to come.
    awaiting_tail: bool,
    /// The head, parsed once its blank line has come, and where it ends.
    parsed: Option<(usize, Head)>,
}

impl Message {
    /// `tails`: a call longer than one record sends its tail too (writes).
    fn push(&mut self, data: &[u8], call_len: u64, offset: u64, tails: bool) {
        if offset == 0 {
            self.logical += call_len;
            self.awaiting_tail = tails && call_len > agentwatch_common::tls::MAX_BYTES as u64;
        } else {
            // The tail of a long write: what lies between was not sent.
            self.gap = true;
            self.awaiting_tail = false;
        }
        let room = KEEP.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.gap = true;
        }
        let before = self.bytes.len();
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        if self.parsed.is_none() {
            // Only the new bytes (and the three before, where a blank line
            // may have begun) can hold the head's end.
            let from = before.saturating_sub(3);
            if let Some(i) = self.bytes[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                let end = from + i + 4;
                let head = Head::parse(&String::from_utf8_lossy(&self.bytes[..end]));
                self.parsed = Some((end, head));
            }
        }
    }

    /// The head, once complete.
    pub fn head(&self) -> Option<&Head> {
        self.parsed.as_ref().map(|(_, h)| h)
    }

    /// Whether the body is all there, as far as the head tells.
    pub fn complete(&self) -> bool {
        let Some((end, head)) = &self.parsed else {
            return false;
        };
        let end = *end;
        if self.awaiting_tail {
            return false;
        }
        if head.chunked {
            return self.bytes.ends_with(b"0\r\n\r\n");
        }
        match head.content_length {
            Some(n) => self.logical >= end as u64 + n,
            None => !head.sse,
        }
    }

    /// The body, de-chunked when the head says chunked.
    pub fn body(&self) -> Vec<u8> {
        let Some((end, head)) = &self.parsed else {
            return Vec::new();
        };
        let raw = &self.bytes[*end..];
        if head.chunked {
            dechunk(raw)
        } else {
            raw.to_vec()
        }
    }
}

/// What the head says.
#[derive(Debug, Default, PartialEq)]
pub struct Head {
    /// The request's Host header, lower-cased.
    pub host: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// A server-sent event stream.
    pub sse: bool,
    /// The first line (request line or status line).
    pub first: String,
}

impl Head {
    fn parse(text: &str) -> Head {
        let mut lines = text.split("\r\n");
        let mut h = Head {
            first: lines.next().unwrap_or("").to_string(),
            ..Head::default()
        };
        for l in lines {
            let Some((n, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match n.trim().to_ascii_lowercase().as_str() {
                "host" => h.host = Some(v.to_ascii_lowercase()),
                "content-length" => h.content_length = v.parse().ok(),
                "transfer-encoding" => h.chunked = v.to_ascii_lowercase().contains("chunked"),
                "content-type" => h.sse = v.to_ascii_lowercase().contains("text/event-stream"),
                _ => {}
            }
        }
        h
    }
}

/// A chunked body's data; what cannot be read as chunks is kept as is.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            out.extend_from_slice(raw);
            break;
        };
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or(&[]);
    }
    out
}

/// One connection: the exchange in flight.
#[derive(Debug, Default)]
pub struct Stream {
    pub request: Message,
    pub response: Message,
    /// The request was read and judged (to a model endpoint or not).
    pub request_done: bool,
}

/// What a chunk of plain text completed.
#[derive(Debug, PartialEq)]
pub enum Step {
    Nothing,
    /// A request's head and body are in.
    Request,
    /// The response to it is in (or a new request began, ending it).
    Response,
}

impl Stream {
    /// Adds a chunk: `write` from the agent, else read by it.
    pub fn push(&mut self, write: bool, data: &[u8], call_len: u64, offset: u64) -> Step {
        if write {
            let mut step = Step::Nothing;
            if self.request_done && !self.response.bytes.is_empty() && offset == 0 {
                // A new request on a kept-alive connection: the previous
                // exchange is over; the caller reads it before this one.
                step = Step::Response;
            }
            if step == Step::Response {
                return step;
            }
            self.request.push(data, call_len, offset, true);
            if !self.request_done && self.request.complete() {
                self.request_done = true;
                return Step::Request;
            }
            return Step::Nothing;
        }
        self.response.push(data, call_len, offset, false);
        if self.request_done && self.response.complete() {
            return Step::Response;
        }
        Step::Nothing
    }

    /// Starts the next exchange.
    pub fn reset(&mut self) {
        *self = Stream::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_a_length_completes_when_its_body_is_in() {
        let mut s = Stream::default();
        let head =
            b"POST /v1/messages HTTP/1.1\r\nHost: API.Model.test\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(s.push(true, head, head.len() as u64, 0), Step::Nothing);
        assert_eq!(s.push(true, b"{\"a\":\"bcd\"}", 11, 0), Step::Request);
        assert_eq!(
            s.request.head().unwrap().host.as_deref(),
            Some("api.model.test")
        );
        assert_eq!(s.request.body(), b"{\"a\":\"bcd\"}");
    }

    #[test]
    fn a_chunked_event_stream_completes_at_its_last_chunk() {
        let mut s = Stream {
            request_done: true,
            ..Stream::default()
        };
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n";
        assert_eq!(s.push(false, resp, resp.len() as u64, 0), Step::Nothing);
        assert_eq!(
            s.push(false, b"2\r\n{}\r\n0\r\n\r\n", 12, 0),
            Step::Response
        );
        assert_eq!(s.response.body(), b"data: {}");
        assert!(s.response.head().unwrap().sse);
    }

    #[test]
    fn a_long_write_seen_by_its_ends_counts_its_whole_length() {
        let mut s = Stream::default();
        let head = b"POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 20000\r\n\r\n";
        let total = head.len() as u64 + 20000;
        let mut first = head.to_vec();
        first.extend_from_slice(&[b'a'; agentwatch_common::tls::MAX_BYTES - 60]);
        assert_eq!(s.push(true, &first, total, 0), Step::Nothing);
        assert_eq!(s.push(true, b"zz", total, total - 2), Step::Request);
        assert!(s.request.gap);
    }
}
