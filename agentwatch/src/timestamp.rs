//! Wall-clock timestamps, RFC 3339 in UTC.
//!
//! Two kinds, never mixed:
//! - Records (alerts, decisions, approvals, audit and feed records, the
//!   syslog header) carry the true time with microseconds: `now`, and
//!   `wall_of_monotonic` for a kernel event, whose own clock is CLOCK_MONOTONIC.
//! - What learning writes into profiles and session headers carries
//!   `profile_time`: whole seconds, clamped to SOURCE_DATE_EPOCH when it is
//!   set (reproducible-builds.org), so two learning runs of one workload
//!   can give byte-identical profiles. A record's time is never clamped.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// The current time, for a record.
pub fn now() -> String {
    micros(SystemTime::now())
}

/// The wall-clock time of a kernel event stamped `ts_ns` on
/// CLOCK_MONOTONIC (`bpf_ktime_get_ns`): now, less how long ago that was.
pub fn wall_of_monotonic(ts_ns: u64) -> SystemTime {
    let wall = SystemTime::now();
    let mono = crate::clock::monotonic_ns();
    // An event from the future (a clock read failed) is taken as now.
    wall.checked_sub(Duration::from_nanos(mono.saturating_sub(ts_ns)))
        .unwrap_or(wall)
}

/// `t` with microseconds, always six digits: `2026-11-27T07:14:56.123456Z`.
pub fn micros(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut s = format_utc(since.as_secs());
    let at = s.len().saturating_sub(1);
    s.insert_str(at, &format!(".{:06}", since.subsec_micros()));
    s
}

/// Parses an RFC 3339 time (any offset, any precision).
pub fn parse(s: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// `t` in whole seconds, no later than SOURCE_DATE_EPOCH: for profiles.
pub fn profile_time(t: SystemTime) -> String {
    static SOURCE_DATE_EPOCH: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let mut secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let sde = SOURCE_DATE_EPOCH.get_or_init(|| {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    if let Some(sde) = sde {
        secs = secs.min(*sde);
    }
    format_utc(secs)
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn format_utc(secs: u64) -> String {
    format_rfc3339(Duration::from_secs(secs)).unwrap_or_else(|| secs.to_string())
}

fn format_rfc3339(since_epoch: Duration) -> Option<String> {
    let nanos = i128::try_from(since_epoch.as_nanos()).ok()?;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    t.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_219_200 + 3_723), "2026-11-21T01:02:03Z");
    }

    #[test]
    fn records_have_microseconds_and_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_795_219_200, 123_456_789);
        let s = micros(t);
        assert_eq!(s, "2026-11-21T00:00:00.123456Z");
        assert_eq!(
            parse(&s),
            Some(UNIX_EPOCH + Duration::new(1_795_219_200, 123_456_000))
        );
        assert_eq!(parse("not a time"), None);
        // Six digits even on a whole second: every record reads alike.
        assert_eq!(
            micros(UNIX_EPOCH + Duration::from_secs(60)),
            "1970-01-01T00:01:00.000000Z"
        );
    }

    #[test]
    fn kernel_events_are_placed_on_the_wall_clock() {
        let mono = crate::clock::monotonic_ns();
        let two_s_ago = wall_of_monotonic(mono - 2_000_000_000);
        let ago = SystemTime::now().duration_since(two_s_ago).unwrap();
        assert!(
            ago >= Duration::from_secs(2) && ago < Duration::from_secs(3),
            "{ago:?}"
        );
        // From the future: now.
        let future = wall_of_monotonic(mono + 10_000_000_000);
        assert!(future <= SystemTime::now());
    }
}
