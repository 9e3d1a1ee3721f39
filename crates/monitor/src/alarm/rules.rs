//! The rules file (`--alarms FILE`, TOML): channels and rules, checked into typed values.
//!
//! Every error names the rule or channel and the field, so a bad file is fixed from the message.
//! See `config/alarms.example.toml` for every field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use acs_events::StatsScope;
use serde::Deserialize;

use super::channels::{check_channel, BadField, RawChannel};
pub use super::channels::{Channel, Email, Secret, SmtpTls};
use crate::store::metrics_of;

/// Most rules and channels one file may hold (each rule is evaluated every second).
pub const MAX_RULES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the alarm rules {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("alarm rules: {0}")]
    Toml(String),
    #[error("alarm rule {rule:?}: field `{field}`: {message}")]
    Rule {
        rule: String,
        field: &'static str,
        message: String,
    },
    #[error("alarm rule {rule:?}: {message}")]
    RuleSyntax { rule: String, message: String },
    #[error("alarm channel {channel:?}: field `{field}`: {message}")]
    Channel {
        channel: String,
        field: &'static str,
        message: String,
    },
}

type Result<T, E = RulesError> = std::result::Result<T, E>;

/// Which way a value is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Above,
    Below,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Above => "above",
            Condition::Below => "below",
        }
    }
}

/// How the samples in a rule's window become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Avg,
    Min,
    Max,
    Last,
    P95,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Last => "last",
            Aggregate::P95 => "p95",
        }
    }
}

/// One id, or every id of the scope the monitor knows (`"*"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    One(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub after_ms: u64,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    pub scope: StatsScope,
    pub target: Target,
    pub condition: Condition,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// How long the condition must hold before the alarm fires.
    pub for_ms: u64,
    /// Hysteresis: an `above` alarm clears below `threshold - clear` (`below`: above `+ clear`).
    pub clear: f64,
    pub window_ms: u64,
    pub aggregate: Aggregate,
    /// Repeat while firing and not acked; `None`: once.
    pub repeat_ms: Option<u64>,
    pub notify: Vec<String>,
    pub escalation: Option<Escalation>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub channels: BTreeMap<String, Channel>,
}

impl Rules {
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    metric: String,
    scope: StatsScope,
    id: String,
    condition: Condition,
    #[serde(default)]
    warning: Option<f64>,
    #[serde(default)]
    critical: Option<f64>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    clear: Option<f64>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    aggregate: Option<Aggregate>,
    #[serde(default)]
    repeat: Option<String>,
    /// Channels to tell; none (or left out): the alarm shows on NATS, `acsctl alarms` and the
    /// dashboard only.
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    escalation: Option<RawEscalation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    after: String,
    to: String,
}

/// Reads and checks a rules file. Relative `password_file` paths are relative to the file.
pub fn load(path: &Path) -> Result<Rules> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
}

/// Parses and checks rules text; `base` resolves relative password files.
pub fn parse(text: &str, base: &Path) -> Result<Rules> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| RulesError::Toml(e.to_string()))?;
    let raw_channels = match table.remove("channels") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(RulesError::Toml(
                "`channels` must be a table of [channels.<name>]".into(),
            ))
        }
    };
    let raw_rules = match table.remove("rule") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            return Err(RulesError::Toml(
                "`rule` must be an array of [[rule]] tables".into(),
            ))
        }
    };
    if let Some(key) = table.keys().next() {
        return Err(RulesError::Toml(format!(
            "unknown top-level key `{key}` (known: channels, rule)"
        )));
    }
    if raw_rules.len() > MAX_RULES || raw_channels.len() > MAX_RULES {
        return Err(RulesError::Toml(format!(
            "at most {MAX_RULES} rules and {MAX_RULES} channels"
        )));
    }

    let mut channels = BTreeMap::new();
    for (name, value) in raw_channels {
        let bad = |field: &'static str, message: String| RulesError::Channel {
            channel: name.clone(),
            field,
            message,
        };
        acs_events::id::validate_id("channel name", &name)
            .map_err(|e| bad("name", e.to_string()))?;
        let raw: RawChannel = value
            .try_into()
            .map_err(|e: toml::de::Error| bad("type", e.message().to_string()))?;
        let channel = check_channel(raw, base, &bad)?;
        channels.insert(name, channel);
    }

    let mut rules: Vec<Rule> = Vec::new();
    for (i, value) in raw_rules.into_iter().enumerate() {
        let label = value
            .get("name")
            .and_then(|n| n.as_str())
            .map_or_else(|| format!("#{}", i + 1), str::to_string);
        let raw: RawRule =
            value
                .try_into()
                .map_err(|e: toml::de::Error| RulesError::RuleSyntax {
                    rule: label.clone(),
                    message: e.message().trim().to_string(),
                })?;
        let rule = check_rule(raw, &channels)?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(RulesError::Rule {
                rule: rule.name,
                field: "name",
                message: "two rules have this name".into(),
            });
        }
        rules.push(rule);
    }
    Ok(Rules { rules, channels })
}

fn check_rule(raw: RawRule, channels: &BTreeMap<String, Channel>) -> Result<Rule> {
    let name = raw.name.clone();
    let bad = |field: &'static str, message: String| RulesError::Rule {
        rule: name.clone(),
        field,
        message,
    };
    acs_events::id::validate_id("rule name", &raw.name).map_err(|e| bad("name", e.to_string()))?;
    let target = check_target(&raw, &bad)?;
    let clear = check_thresholds(&raw, &bad)?;
    let (for_ms, window_ms, repeat_ms) = check_durations(&raw, &bad)?;
    let escalation = check_channels(&raw.notify, raw.escalation, channels, &bad)?;
    Ok(Rule {
        name: raw.name,
        metric: raw.metric,
        scope: raw.scope,
        target,
        condition: raw.condition,
        warning: raw.warning,
        critical: raw.critical,
        for_ms,
        clear,
        window_ms,
        aggregate: raw.aggregate.unwrap_or(Aggregate::Avg),
        repeat_ms,
        notify: raw.notify,
        escalation,
    })
}

/// The metric must belong to the scope; the id is one valid id or `*`.
fn check_target(raw: &RawRule, bad: BadField) -> Result<Target> {
    let known = metrics_of(raw.scope);
    if !known.contains(&raw.metric.as_str()) {
        return Err(bad(
            "metric",
            format!(
                "{:?} is not a {} metric; known: {}",
                raw.metric,
                raw.scope.as_str(),
                known.join(", ")
            ),
        ));
    }
    Ok(match raw.id.as_str() {
        "*" => Target::All,
        id => {
            acs_events::id::validate_id("id", id)
                .map_err(|e| bad("id", format!("{e}; or \"*\" for every one")))?;
            Target::One(id.to_string())
        }
    })
}

/// Thresholds are finite, at least one is given and they are ordered by the condition; returns
/// the clear margin.
fn check_thresholds(raw: &RawRule, bad: BadField) -> Result<f64> {
    for (field, v) in [
        ("warning", raw.warning),
        ("critical", raw.critical),
        ("clear", raw.clear),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(bad(field, "must be a finite number".into()));
        }
    }
    match (raw.warning, raw.critical) {
        (None, None) => {
            return Err(bad(
                "warning",
                "give a warning or a critical threshold (or both)".into(),
            ))
        }
        (Some(w), Some(c)) if raw.condition == Condition::Above && c < w => {
            return Err(bad(
                "critical",
                format!("{c} is below the warning threshold {w}; for `above` it must be higher"),
            ))
        }
        (Some(w), Some(c)) if raw.condition == Condition::Below && c > w => {
            return Err(bad(
                "critical",
                format!("{c} is above the warning threshold {w}; for `below` it must be lower"),
            ))
        }
        _ => {}
    }
    let clear = raw.clear.unwrap_or(0.0);
    if clear < 0.0 {
        return Err(bad(
            "clear",
            format!("{clear} is negative; it is how far past the threshold the value must return"),
        ));
    }
    Ok(clear)
}

/// `for`, `window` and `repeat` in ms, with their defaults.
fn check_durations(raw: &RawRule, bad: BadField) -> Result<(u64, u64, Option<u64>)> {
    let for_ms = raw
        .for_
        .as_deref()
        .map(|d| duration_ms(d, true))
        .transpose()
        .map_err(|e| bad("for", e))?
        .unwrap_or(0);
    let window_ms = raw
        .window
        .as_deref()
        .map(|d| duration_ms(d, false))
        .transpose()
        .map_err(|e| bad("window", e))?
        .unwrap_or(30_000);
    if window_ms > acs_events::MAX_WINDOW_MS {
        return Err(bad("window", "must be at most 30 days".into()));
    }
    let repeat_ms = raw
        .repeat
        .as_deref()
        .map(|d| duration_ms(d, false))
        .transpose()
        .map_err(|e| bad("repeat", e))?;
    Ok((for_ms, window_ms, repeat_ms))
}

/// Every channel named by `notify` and the escalation is declared; an escalation needs `notify`.
fn check_channels(
    notify: &[String],
    escalation: Option<RawEscalation>,
    channels: &BTreeMap<String, Channel>,
    bad: BadField,
) -> Result<Option<Escalation>> {
    if notify.is_empty() && escalation.is_some() {
        return Err(bad(
            "escalation",
            "needs `notify` channels first: an escalation follows an unacknowledged notice".into(),
        ));
    }
    for c in notify {
        if !channels.contains_key(c) {
            return Err(bad(
                "notify",
                format!("no channel {c:?}; declare it as [channels.{c}]"),
            ));
        }
    }
    Ok(match escalation {
        None => None,
        Some(e) => {
            let after_ms = duration_ms(&e.after, false).map_err(|m| bad("escalation.after", m))?;
            if !channels.contains_key(&e.to) {
                return Err(bad(
                    "escalation.to",
                    format!("no channel {:?}; declare it as [channels.{}]", e.to, e.to),
                ));
            }
            Some(Escalation { after_ms, to: e.to })
        }
    })
}

/// A duration as `humantime` reads it (`500ms`, `30s`, `5m`, `1h`, `1d`, `1h 30m`), in ms; the
/// parser of every duration the monitor reads.
pub fn humantime_ms(v: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(v).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("{v:?}: unknown unit {unit:?} (ms, s, m, h, d, ...)")
        }
        e => format!("{v:?} is not a duration like 30s, 5m, 1h: {e}"),
    })?;
    u64::try_from(d.as_millis()).map_err(|_| format!("{v:?} is too long"))
}

/// [`humantime_ms`], where a bare number is refused (no unit) and `0s` only where `zero_ok` (a
/// `for` of zero fires at once).
pub fn duration_ms(v: &str, zero_ok: bool) -> Result<u64, String> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} has no unit (ms, s, m, h, d)"));
    }
    let ms = humantime_ms(v)?;
    if ms == 0 && !zero_ok {
        return Err(format!("{v:?} must be above zero"));
    }
    Ok(ms)
}

/// `90000` → `1m30s`, for messages.
pub fn human_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut s = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests;
