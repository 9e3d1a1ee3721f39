//! The query parameters of `GET /api/v1/stats` and `GET /api/v1/history`, decoded by axum's
//! `Query` (percent-decoding, unknown parameters refused by name) and checked here into the
//! requests the NATS APIs take.

use acs_events::{HistoryRequest, StatsRequest, StatsScope};
use serde::Deserialize;

/// `scope`, `id`, `metric` (required); `window` (a duration back from now) or `from`/`to` (unix
/// ms); `step` (a duration).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    scope: Option<String>,
    id: Option<String>,
    metric: Option<String>,
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
}

/// `kind`, `id`, `window` or `from`/`to`, `limit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    kind: Option<String>,
    id: Option<String>,
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

fn unix_ms(what: &str, v: Option<String>) -> Result<Option<u64>, String> {
    v.map(|v| {
        v.parse()
            .map_err(|_| format!("{what}: {v:?} is not unix milliseconds"))
    })
    .transpose()
}

fn duration(what: &str, v: Option<String>) -> Result<Option<u64>, String> {
    v.map(|v| parse_duration_ms(&v).map_err(|e| format!("{what}: {e}")))
        .transpose()
}

impl StatsParams {
    pub fn into_request(self) -> Result<StatsRequest, String> {
        let scope = self
            .scope
            .ok_or("missing parameter scope (worker, replica, service or proxy)")?;
        Ok(StatsRequest {
            v: 1,
            scope: parse_scope(&scope)?,
            id: self.id.ok_or("missing parameter id")?,
            metric: self.metric.ok_or("missing parameter metric")?,
            from_ms: unix_ms("from", self.from)?,
            to_ms: unix_ms("to", self.to)?,
            last_ms: duration("window", self.window)?,
            step_ms: duration("step", self.step)?,
        })
    }
}

impl HistoryParams {
    pub fn into_request(self) -> Result<HistoryRequest, String> {
        let limit = self
            .limit
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("limit: {v:?} is not a number"))
            })
            .transpose()?;
        let req = HistoryRequest {
            v: 1,
            kind: self.kind,
            id: self.id,
            from_ms: unix_ms("from", self.from)?,
            to_ms: unix_ms("to", self.to)?,
            last_ms: duration("window", self.window)?,
            limit,
        };
        // The same checks as on NATS, so both APIs refuse alike.
        acs_events::codec::Validate::validate(&req)?;
        Ok(req)
    }
}

/// A whole query string as `GET /api/v1/stats` reads it.
pub fn parse_query(q: &str) -> Result<StatsRequest, String> {
    decode::<StatsParams>(q)?.into_request()
}

/// A whole query string as `GET /api/v1/history` reads it.
pub fn parse_history_query(q: &str) -> Result<HistoryRequest, String> {
    decode::<HistoryParams>(q)?.into_request()
}

fn decode<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, String> {
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|e| format!("bad query string: {e}"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| e.body_text())
}

fn parse_scope(v: &str) -> Result<StatsScope, String> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| format!("scope: {v:?} is not one of worker, replica, service, proxy"))
}

/// A duration (`humantime`: `1500ms`, `90s`, `5m`, `1h`, `1d`, `1h 30m`) in ms; a bare number
/// is seconds. Zero is refused.
pub fn parse_duration_ms(v: &str) -> Result<u64, String> {
    let ms = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<u64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| format!("{v:?} is too long"))?
    } else {
        crate::alarm::rules::humantime_ms(v)?
    };
    match ms {
        0 => Err(format!("{v:?} must be above zero")),
        ms => Ok(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_name_the_problem() {
        let q = parse_query("scope=worker&id=w1&metric=cpu&window=1h&step=1m").unwrap();
        assert_eq!(
            (q.scope, q.id.as_str(), q.metric.as_str()),
            (StatsScope::Worker, "w1", "cpu")
        );
        assert_eq!((q.last_ms, q.step_ms), (Some(3_600_000), Some(60_000)));
        let err = |q: &str| parse_query(q).unwrap_err();
        assert!(err("id=w1&metric=cpu").contains("scope"));
        assert!(err("scope=host&id=w1&metric=cpu").contains("\"host\""));
        assert!(err("scope=worker&id=w1&metric=cpu&window=1x").contains("unit"));
        assert!(err("scope=worker&id=w1&metric=cpu&windw=1h").contains("windw"));
        assert!(err("scope=worker&id=w1&metric=cpu&step=0s").contains("above zero"));
        assert!(err("scope=worker&id=w1&metric=cpu&from=yesterday").contains("from"));
        assert_eq!(
            parse_query("scope=service&id=a%20b&metric=rps").unwrap().id,
            "a b"
        );
    }

    #[test]
    fn durations_are_humantime_and_a_bare_number_is_seconds() {
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("1500ms"), Ok(1500));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("1h 30m"), Ok(5_400_000));
        assert!(parse_duration_ms("0").unwrap_err().contains("above zero"));
        assert!(parse_duration_ms("soon").is_err());
    }

    #[test]
    fn http_queries_are_checked_like_nats_ones() {
        let q = parse_history_query("kind=decision&id=web&window=10m&limit=5").unwrap();
        assert_eq!(
            (q.kind.as_deref(), q.id.as_deref(), q.last_ms, q.limit),
            (Some("decision"), Some("web"), Some(600_000), Some(5))
        );
        for (query, names) in [
            ("kind=nope", "not one of"),
            ("id=web", "needs a kind"),
            ("limit=x", "limit"),
            ("since=1h", "since"),
        ] {
            let e = parse_history_query(query).unwrap_err();
            assert!(e.contains(names), "{query}: {e}");
        }
    }
}
