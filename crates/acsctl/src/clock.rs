//! Times as users write and read them: `--from/--to` as RFC 3339, a local date and time, unix
//! milliseconds or a time relative to now (`-2h`, `2h ago`, `90m`); dates printed in the
//! system's time zone (or UTC where a table says so). One library: `jiff`.

use std::time::Duration;

use acs_events::UnixMs;
use jiff::{civil, tz::TimeZone, Timestamp};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The clap parser of `--from/--to`: an instant as unix milliseconds.
pub fn parse_instant(s: &str) -> Result<UnixMs, String> {
    parse_instant_at(s, now_ms(), &TimeZone::system())
}

/// [`parse_instant`] with "now" and the time zone given (pure, for tests).
pub fn parse_instant_at(s: &str, now: UnixMs, tz: &TimeZone) -> Result<UnixMs, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("{s:?} is out of range for unix milliseconds"));
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return non_negative(t.as_millisecond(), s);
    }
    // A date and time without an offset is local; a bare date is its local midnight.
    let civil = s.parse::<civil::DateTime>().or_else(|_| {
        s.parse::<civil::Date>()
            .map(|d| d.to_datetime(civil::Time::midnight()))
    });
    if let Ok(dt) = civil {
        let zoned = dt
            .to_zoned_datetime(tz.clone())
            .map_err(|e| format!("{s:?}: {e}"))?;
        return non_negative(zoned.timestamp().as_millisecond(), s);
    }
    let ago = s
        .strip_prefix('-')
        .or_else(|| s.strip_suffix("ago"))
        .unwrap_or(s)
        .trim();
    match humantime::parse_duration(ago) {
        Ok(d) => Ok(now.saturating_sub(d.as_millis() as u64)),
        Err(_) => Err(format!(
            "{s:?} is not a time: give RFC 3339 (2026-12-07T18:00:00Z), a local `2026-12-07 18:00`, unix milliseconds, or a time ago (`-2h`, `2h ago`, `90m`)"
        )),
    }
}

fn non_negative(ms: i64, s: &str) -> Result<UnixMs, String> {
    u64::try_from(ms).map_err(|_| format!("{s:?} is before 1970"))
}

/// The clap parser of durations: `30s`, `1.5` (seconds), `7d`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    acs_node::parse_duration(s).or_else(|short| {
        humantime::parse_duration(s.trim()).map_err(|_| {
            format!("{short}; humantime forms such as `7d` or `1h 30m` are accepted too")
        })
    })
}

/// `2026-12-07 18:30:05.120` in `tz`.
pub fn date_time_ms(ms: UnixMs, tz: &TimeZone) -> String {
    zoned(ms, tz).strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// `2026-12-07 18:30:05` in `tz`.
pub fn date_time(ms: UnixMs, tz: &TimeZone) -> String {
    zoned(ms, tz).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// `18:30:05.120` in `tz`.
pub fn time_of_day_ms(ms: UnixMs, tz: &TimeZone) -> String {
    zoned(ms, tz).strftime("%H:%M:%S%.3f").to_string()
}

fn zoned(ms: UnixMs, tz: &TimeZone) -> jiff::ZonedDateTime {
    let t = i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX);
    t.to_zoned_datetime(tz.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMs = 1_765_130_400_000; // 2025-12-07 18:00:00 UTC

    fn at(s: &str) -> Result<UnixMs, String> {
        parse_instant_at(s, NOW, &TimeZone::fixed(jiff::tz::offset(1)))
    }

    #[test]
    fn instants_in_every_form() {
        assert_eq!(at("now"), Ok(NOW));
        assert_eq!(at("1765130400000"), Ok(NOW));
        assert_eq!(at("2025-12-07T18:00:00Z"), Ok(NOW));
        assert_eq!(at("2025-12-07T19:00:00+01:00"), Ok(NOW));
        // Without an offset: the local zone (here UTC+1).
        assert_eq!(at("2025-12-07 19:00"), Ok(NOW));
        assert_eq!(at("2025-12-07"), Ok(NOW - 19 * 3_600_000));
        for ago in ["-2h", "2h ago", "2h", "2 hours ago", "- 2h", "1h 60m"] {
            assert_eq!(at(ago), Ok(NOW - 7_200_000), "{ago}");
        }
        for bad in [
            "",
            "yesterday-ish",
            "2h later",
            "1969-12-31T23:59:59Z",
            "-x",
        ] {
            assert!(at(bad).is_err(), "{bad:?}");
        }
        assert!(at("soon").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn durations_take_days() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1_500)));
        assert!(parse_duration("7x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn dates_in_a_zone() {
        let plus1 = TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(date_time_ms(NOW + 5, &plus1), "2025-12-07 19:00:00.005");
        assert_eq!(date_time(NOW, &TimeZone::UTC), "2025-12-07 18:00:00");
        assert_eq!(time_of_day_ms(NOW + 120, &TimeZone::UTC), "18:00:00.120");
        assert_eq!(date_time(0, &TimeZone::UTC), "1970-01-01 00:00:00");
        assert_eq!(
            date_time(951_782_400_000, &TimeZone::UTC),
            "2000-02-29 00:00:00"
        );
    }
}
