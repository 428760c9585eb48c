//! Wall-clock timestamps: RFC 3339 in UTC, clamped to SOURCE_DATE_EPOCH
//! when it is set (reproducible-builds.org), so two learning runs of one
//! workload can give byte-identical profiles. Profiles, the audit log and
//! the feeds take their times from here.
use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`, no later than SOURCE_DATE_EPOCH.
pub fn rfc3339(t: SystemTime) -> String {
    static SOURCE_DATE_EPOCH: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    thread_local! {
        // Records come in bursts within one second: format it once.
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let mut secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let sde = SOURCE_DATE_EPOCH.get_or_init(|| {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    if let Some(sde) = sde {
        secs = secs.min(*sde);
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = format_utc(secs);
        }
        text.clone()
    })
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
}
