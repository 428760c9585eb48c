//! Any text as a profile: parse and lint never panic; a profile that
//! parses writes YAML that parses again.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (profile, _findings) = agentwatch::profile::parse::parse(text);
    if let Some(p) = profile {
        let yaml = agentwatch::profile::yaml::to_yaml(&p);
        let (again, _) = agentwatch::profile::parse::parse(&yaml);
        assert!(again.is_some(), "a written profile does not parse:\n{yaml}");
    }
});
