//! Every alarm and silence the monitor holds, and the two things that change them: a tick
//! (evaluate every rule against the store) and a person's request (list, ack, silence). Pure:
//! the caller passes the time and does the saving, publishing and sending that come out.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{
    AlarmAction, AlarmEvent, AlarmReply, AlarmRequest, AlarmState, AlarmView, StatsRequest,
    SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};

use super::machine::{self, Alarm, NoticeKind, Output, Route};
use super::rules::{Aggregate, Rule, Rules, Target};
use crate::store::Store;

/// A rule with `id = "*"` tracks at most this many targets (the first ids in order).
pub const MAX_TARGETS_PER_RULE: usize = 1000;
/// How the reply to a request naming an unknown rule starts (HTTP answers it with 404).
pub const NO_RULE: &str = "no alarm rule";
/// A resolved alarm with nothing owed is forgotten after this long.
pub const RESOLVED_KEEP_MS: u64 = 24 * 3600 * 1000;

/// (rule, target id)
pub type Key = (String, String);
/// (rule, target id or `None` for the whole rule)
pub type SilenceKey = (String, Option<String>);

/// Who stopped notifications, until when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub by: String,
    pub until_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One notification for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub channel: String,
    pub kind: NoticeKind,
    pub alarm: AlarmEvent,
}

/// What a tick or a request changed, for the caller to save, publish and send.
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<AlarmEvent>,
    pub notices: Vec<Notice>,
    /// Alarms to save (`None`: delete the key).
    pub alarms: BTreeMap<Key, Option<Alarm>>,
    pub silences: BTreeMap<SilenceKey, Option<Silence>>,
    /// Rules whose `*` had more targets than [`MAX_TARGETS_PER_RULE`].
    pub capped: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Book {
    pub alarms: BTreeMap<Key, Alarm>,
    pub silences: BTreeMap<SilenceKey, Silence>,
}

/// The rule's aggregate over its window for one target, `None` when there is no data.
pub fn value(rule: &Rule, store: &Store, id: &str, now_ms: u64) -> Option<f64> {
    let req = StatsRequest {
        v: SCHEMA_VERSION,
        scope: rule.scope,
        id: id.to_string(),
        metric: rule.metric.clone(),
        from_ms: None,
        to_ms: None,
        last_ms: Some(rule.window_ms),
        step_ms: None,
    };
    let s = crate::query::answer(store, &req, now_ms)
        .summary
        .filter(|s| s.count > 0)?;
    Some(match rule.aggregate {
        Aggregate::Avg => s.avg,
        Aggregate::Min => s.min,
        Aggregate::Max => s.max,
        Aggregate::Last => s.last,
        Aggregate::P95 => s.p95,
    })
}

impl Book {
    /// Evaluates every rule on every target: its one id, or for `*` the ids `ids_of` lists plus
    /// those with an alarm already. `value_of` gives a target's value now.
    pub fn tick(
        &mut self,
        rules: &Rules,
        now_ms: u64,
        mut ids_of: impl FnMut(&Rule) -> Vec<String>,
        mut value_of: impl FnMut(&Rule, &str) -> Option<f64>,
    ) -> Effects {
        let mut fx = Effects::default();
        self.expire_silences(now_ms, &mut fx);
        for rule in &rules.rules {
            let mut targets: BTreeSet<String> = match &rule.target {
                Target::One(id) => [id.clone()].into(),
                Target::All => {
                    let ids = ids_of(rule);
                    if ids.len() > MAX_TARGETS_PER_RULE {
                        fx.capped.push(rule.name.clone());
                    }
                    ids.into_iter().take(MAX_TARGETS_PER_RULE).collect()
                }
            };
            targets.extend(
                self.alarms
                    .range(range(&rule.name))
                    .map(|(k, _)| k.1.clone()),
            );
            for id in targets {
                let v = value_of(rule, &id);
                self.step_one(rule, &id, v, now_ms, &mut fx);
            }
        }
        self.forget(rules, now_ms, &mut fx);
        fx
    }

    /// [`tick`](Self::tick) against the store: `*` takes the store's ids of the rule's scope.
    pub fn tick_store(&mut self, rules: &Rules, store: &Store, now_ms: u64) -> Effects {
        self.tick(
            rules,
            now_ms,
            |r| store.ids(r.scope),
            |r, id| value(r, store, id, now_ms),
        )
    }

    fn silenced_until(&self, rule: &str, id: &str) -> Option<u64> {
        let whole = self
            .silences
            .get(&(rule.to_string(), None))
            .map(|s| s.until_ms);
        let one = self
            .silences
            .get(&(rule.to_string(), Some(id.to_string())))
            .map(|s| s.until_ms);
        whole.max(one)
    }

    fn step_one(&mut self, rule: &Rule, id: &str, v: Option<f64>, now_ms: u64, fx: &mut Effects) {
        let key = (rule.name.clone(), id.to_string());
        let silenced = self.silenced_until(&rule.name, id);
        let mut slot = self.alarms.remove(&key);
        let before = slot.clone();
        let outs = machine::step(rule, &mut slot, v, now_ms, silenced);
        let Some(mut a) = slot else { return };
        for o in outs {
            match o {
                Output::Changed {
                    state,
                    severity,
                    value,
                    threshold,
                    since_ms,
                } => {
                    fx.events.push(AlarmEvent {
                        v: SCHEMA_VERSION,
                        rule: rule.name.clone(),
                        scope: rule.scope,
                        id: id.to_string(),
                        metric: rule.metric.clone(),
                        state,
                        severity,
                        value,
                        threshold,
                        since_ms,
                        ts_ms: now_ms,
                        message: machine::message(rule, id, state, severity, value, threshold),
                    });
                }
                Output::Notify { kind, route } => {
                    let mut channels: Vec<&String> = Vec::new();
                    if matches!(route, Route::Notify | Route::Both) {
                        channels.extend(&rule.notify);
                    }
                    if let (Route::Escalation | Route::Both, Some(e)) = (route, &rule.escalation) {
                        if !channels.contains(&&e.to) {
                            channels.push(&e.to);
                        }
                    }
                    let alarm = self.event(rule, id, &a, now_ms);
                    for c in channels {
                        a.notified += 1;
                        fx.notices.push(Notice {
                            channel: c.clone(),
                            kind,
                            alarm: alarm.clone(),
                        });
                    }
                }
            }
        }
        if !before.as_ref().is_some_and(|b| b.same_but_value(&a)) {
            fx.alarms.insert(key.clone(), Some(a.clone()));
        }
        self.alarms.insert(key, a);
    }

    fn event(&self, rule: &Rule, id: &str, a: &Alarm, now_ms: u64) -> AlarmEvent {
        AlarmEvent {
            v: SCHEMA_VERSION,
            rule: rule.name.clone(),
            scope: rule.scope,
            id: id.to_string(),
            metric: rule.metric.clone(),
            state: a.state,
            severity: a.severity,
            value: a.value,
            threshold: a.threshold,
            since_ms: a.since_ms,
            ts_ms: now_ms,
            message: machine::message(rule, id, a.state, a.severity, a.value, a.threshold),
        }
    }

    fn expire_silences(&mut self, now_ms: u64, fx: &mut Effects) {
        let gone: Vec<SilenceKey> = self
            .silences
            .iter()
            .filter(|(_, s)| s.until_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.silences.remove(&k);
            fx.silences.insert(k, None);
        }
    }

    /// Drops alarms of rules no longer in the file, and old resolved ones with nothing owed.
    fn forget(&mut self, rules: &Rules, now_ms: u64, fx: &mut Effects) {
        let gone: Vec<Key> = self
            .alarms
            .iter()
            .filter(|((rule, _), a)| {
                rules.rule(rule).is_none()
                    || (a.state == AlarmState::Resolved
                        && !matches!(a.told, Some((AlarmState::Firing, _)))
                        && now_ms.saturating_sub(a.since_ms) >= RESOLVED_KEEP_MS)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.alarms.remove(&k);
            fx.alarms.insert(k, None);
        }
        let gone: Vec<SilenceKey> = self
            .silences
            .keys()
            .filter(|(rule, _)| rules.rule(rule).is_none())
            .cloned()
            .collect();
        for k in gone {
            self.silences.remove(&k);
            fx.silences.insert(k, None);
        }
    }

    pub fn view(&self, rule: &Rule, id: &str, a: &Alarm) -> AlarmView {
        AlarmView {
            rule: rule.name.clone(),
            scope: rule.scope,
            id: id.to_string(),
            metric: rule.metric.clone(),
            state: a.state,
            severity: a.severity,
            value: a.value,
            threshold: a.threshold,
            since_ms: a.since_ms,
            changed_ms: a.changed_ms,
            ack: a.ack.clone(),
            silenced_until_ms: self.silenced_until(&rule.name, id),
            notified: a.notified,
            message: machine::message(rule, id, a.state, a.severity, a.value, a.threshold),
        }
    }

    fn views<'a>(&self, rules: &Rules, keys: impl IntoIterator<Item = &'a Key>) -> Vec<AlarmView> {
        keys.into_iter()
            .filter_map(|k| Some(self.view(rules.rule(&k.0)?, &k.1, self.alarms.get(k)?)))
            .collect()
    }

    /// Answers one request; ack and silence also return what to save.
    pub fn request(
        &mut self,
        rules: &Rules,
        req: &AlarmRequest,
        now_ms: u64,
    ) -> (AlarmReply, Effects) {
        let mut fx = Effects::default();
        let reply = match self.apply(rules, req, now_ms, &mut fx) {
            Ok(views) => AlarmReply::ok(views),
            Err(e) => {
                fx = Effects::default();
                AlarmReply::error(e)
            }
        };
        (reply, fx)
    }

    fn apply(
        &mut self,
        rules: &Rules,
        req: &AlarmRequest,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<Vec<AlarmView>, String> {
        let rule = match &req.rule {
            Some(name) => Some(rules.rule(name).ok_or_else(|| {
                let known: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
                format!(
                    "{NO_RULE} {name:?}; known: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )
            })?),
            None => None,
        };
        let keys: Vec<Key> = self
            .alarms
            .keys()
            .filter(|k| {
                rule.is_none_or(|r| k.0 == r.name) && req.id.as_ref().is_none_or(|id| &k.1 == id)
            })
            .cloned()
            .collect();
        let (
            Some(rule),
            AlarmAction::Ack | AlarmAction::Unack | AlarmAction::Silence | AlarmAction::Unsilence,
        ) = (rule, req.action)
        else {
            return Ok(self.views(rules, &keys));
        };
        let target = match &req.id {
            Some(id) => format!("{} on {} {id}", rule.name, rule.scope.as_str()),
            None => rule.name.clone(),
        };
        let by = req.by.clone().unwrap_or_default().trim().to_string();
        let until = req.for_ms.map(|f| now_ms.saturating_add(f));
        match req.action {
            AlarmAction::Ack => {
                let active: Vec<Key> = keys
                    .iter()
                    .filter(|k| {
                        matches!(
                            self.alarms[*k].state,
                            AlarmState::Pending | AlarmState::Firing
                        )
                    })
                    .cloned()
                    .collect();
                if active.is_empty() {
                    return Err(format!(
                        "{target} has no pending or firing alarm to acknowledge"
                    ));
                }
                for k in &active {
                    if let Some(a) = self.alarms.get_mut(k) {
                        machine::ack(a, &by, until, req.comment.clone(), now_ms)?;
                        fx.alarms.insert(k.clone(), Some(a.clone()));
                    }
                }
                Ok(self.views(rules, &active))
            }
            AlarmAction::Unack => {
                for k in &keys {
                    if let Some(a) = self.alarms.get_mut(k) {
                        if a.ack.is_some() {
                            machine::unack(a, now_ms);
                            fx.alarms.insert(k.clone(), Some(a.clone()));
                        }
                    }
                }
                Ok(self.views(rules, &keys))
            }
            AlarmAction::Silence | AlarmAction::Unsilence => {
                let sk = (rule.name.clone(), req.id.clone());
                if req.action == AlarmAction::Silence {
                    let s = Silence {
                        by,
                        until_ms: until.unwrap_or(now_ms),
                        comment: req.comment.clone(),
                    };
                    self.silences.insert(sk.clone(), s.clone());
                    fx.silences.insert(sk, Some(s));
                } else if self.silences.remove(&sk).is_some() {
                    fx.silences.insert(sk, None);
                }
                Ok(self.views(rules, &keys))
            }
            AlarmAction::List => Ok(self.views(rules, &keys)),
        }
    }
}

/// The keys of one rule's alarms in a `BTreeMap<Key, _>`.
fn range(rule: &str) -> std::ops::RangeInclusive<Key> {
    (rule.to_string(), String::new())..=(rule.to_string(), char::MAX.to_string())
}

#[cfg(test)]
mod tests;
