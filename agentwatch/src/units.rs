//! Units users write: durations (`30s`, `5m`) for flags and config keys,
//! ring buffer sizes in MiB. Errors name the value, not the flag or key:
//! callers say which one it was.
use std::time::Duration;

use thiserror::Error;

/// A duration: seconds, or a number with `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30, 30s, 5m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A ring buffer size that is not a power of two MiB from 1 to 1024.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a ring buffer of {0} MiB: give a power of two from 1 to 1024")]
pub struct RingSize(pub u32);

/// A ring buffer size in MiB, in bytes.
pub fn ring_bytes(mb: u32) -> Result<u32, RingSize> {
    mb.checked_mul(1024 * 1024)
        .filter(|b| b.is_power_of_two() && mb <= 1024)
        .ok_or(RingSize(mb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(ring_bytes(8), Ok(8 << 20));
        assert_eq!(ring_bytes(3), Err(RingSize(3)));
        assert_eq!(ring_bytes(0), Err(RingSize(0)));
        assert_eq!(ring_bytes(4096), Err(RingSize(4096)));
    }
}
