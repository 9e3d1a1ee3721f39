//! [`parse_duration`]: the one duration syntax of every acs flag and config field (`1.5s`,
//! `500ms`, `2m`, `1h 30m`), from `humantime`; [`secs_or_duration`] reads a TOML seconds
//! field that also takes a duration string. The old integer flags: [`crate::legacy`].

use std::time::Duration;

/// Longest duration any flag takes: more is a typo, and `Instant + d` must not overflow.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// `1.5s`, `500ms`, `2m`, `1h 30m`, `7d` (humantime's units). A bare number means seconds
/// (`30`, `1.5`): every duration flag is named for what it times, never for a unit, so a bare
/// number has one reading; the old integer flags in milliseconds are separate flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like 500ms, 1.5s, 2m or 1h 30m"))?;
        Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is out of range"))?
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not a duration like 500ms, 1.5s, 2m or 1h 30m: {e}"))?
    };
    if d > MAX {
        return Err(format!("duration {s:?} is out of range (at most 365d)"));
    }
    Ok(d)
}

/// Serde `deserialize_with` for a field kept in seconds (`f64`) that the file gives as a
/// duration string (`drain_timeout = "10s"`) or, as older files do, a number of seconds
/// (`drain_timeout_s = 10`, read with a deprecation warning).
pub fn secs_or_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration like \"10s\" or \"500ms\"")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<f64, E> {
            parse_duration(s)
                .map(|d| d.as_secs_f64())
                .map_err(E::custom)
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<f64, E> {
            if !(0.0..=MAX.as_secs_f64()).contains(&n) {
                return Err(E::custom(format!("{n} seconds is out of range")));
            }
            tracing::warn!(
                "a duration as a bare number of seconds ({n}) is deprecated: write \"{n}s\""
            );
            Ok(n)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
    }
    d.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fractions_and_compounds() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h 30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_bare_number_is_seconds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_input_says_what_a_duration_looks_like() {
        for bad in [
            "",
            "soon",
            "-1s",
            "1..5s",
            "3 parsecs",
            "1e3",
            "inf",
            "400d",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{bad:?}: {e}");
        }
        assert!(parse_duration("3x")
            .unwrap_err()
            .contains("unknown time unit"));
    }

    #[derive(serde::Deserialize)]
    struct Policy {
        #[serde(rename = "drain_timeout", alias = "drain_timeout_s")]
        #[serde(deserialize_with = "secs_or_duration")]
        drain_timeout_s: f64,
    }

    #[test]
    fn toml_seconds_fields_take_a_duration_or_the_old_number() {
        let read = |t: &str| toml::from_str::<Policy>(t).map(|p| p.drain_timeout_s);
        assert_eq!(read("drain_timeout = \"10s\"").unwrap(), 10.0);
        assert_eq!(read("drain_timeout = \"1.5s\"").unwrap(), 1.5);
        assert_eq!(read("drain_timeout_s = 10").unwrap(), 10.0);
        assert_eq!(read("drain_timeout_s = 2.5").unwrap(), 2.5);
        let e = read("drain_timeout = \"ten\"").unwrap_err().to_string();
        assert!(e.contains("drain_timeout") && e.contains("\"ten\""), "{e}");
        assert!(read("drain_timeout_s = -1").is_err());
    }
}
