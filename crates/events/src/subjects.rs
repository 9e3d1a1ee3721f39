//! Every subject name in one place.
//!
//! Publishers use full subjects; subscribers use the wildcard helpers. All names hang off one
//! prefix (default `acs`) so several clusters can share a NATS server. See `docs/EVENTS.md`.

use crate::id::{ProxyId, ServiceName, WorkerId};

/// Subject names under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: "acs".to_string(),
        }
    }
}

impl Subjects {
    /// `prefix` may itself be dotted (`prod.acs`), but no token may be empty or a wildcard.
    pub fn new(prefix: impl Into<String>) -> Result<Self, String> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err("subject prefix must not be empty".into());
        }
        for tok in prefix.split('.') {
            if tok.is_empty() || tok.contains(['*', '>']) || tok.chars().any(char::is_whitespace) {
                return Err(format!(
                    "subject prefix {prefix:?} has an invalid token {tok:?}"
                ));
            }
        }
        Ok(Self { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything: `acs.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    // ---- worker → brain -------------------------------------------------------------------

    /// `acs.metrics.worker.<worker>`: host + replica metrics, every second; doubles as heartbeat.
    pub fn worker_metrics(&self, worker: &WorkerId) -> String {
        format!("{}.metrics.worker.{worker}", self.prefix)
    }
    pub fn worker_metrics_all(&self) -> String {
        format!("{}.metrics.worker.*", self.prefix)
    }

    /// `acs.events.replica.<worker>`: a replica changed state (healthy, exited, ...), reported at once.
    pub fn replica_events(&self, worker: &WorkerId) -> String {
        format!("{}.events.replica.{worker}", self.prefix)
    }
    pub fn replica_events_all(&self) -> String {
        format!("{}.events.replica.*", self.prefix)
    }

    // ---- brain → worker -------------------------------------------------------------------

    /// `acs.cmd.worker.<worker>`: request-reply start/stop; the reply is a `CommandAck`.
    pub fn worker_command(&self, worker: &WorkerId) -> String {
        format!("{}.cmd.worker.{worker}", self.prefix)
    }
    pub fn worker_command_all(&self) -> String {
        format!("{}.cmd.worker.*", self.prefix)
    }

    // ---- brain → proxy --------------------------------------------------------------------

    /// `acs.backends.<service>`: `BackendUpdate` (snapshot or delta).
    pub fn backends(&self, service: &ServiceName) -> String {
        format!("{}.backends.{service}", self.prefix)
    }
    pub fn backends_all(&self) -> String {
        format!("{}.backends.*", self.prefix)
    }
    /// `acs.sync.backends`: request-reply, answered with a `SyncReply` holding a snapshot of every
    /// service. A proxy asks on start and whenever it sees a version gap.
    pub fn backends_sync(&self) -> String {
        format!("{}.sync.backends", self.prefix)
    }

    // ---- proxy → brain --------------------------------------------------------------------

    /// `acs.metrics.proxy.<proxy>`: traffic figures per service and backend, every second.
    pub fn proxy_metrics(&self, proxy: &ProxyId) -> String {
        format!("{}.metrics.proxy.{proxy}", self.prefix)
    }
    pub fn proxy_metrics_all(&self) -> String {
        format!("{}.metrics.proxy.*", self.prefix)
    }
    /// `acs.events.drained.<proxy>`: a draining backend has nothing in flight at this proxy
    /// (`BackendDrained`), sent at once so a drain does not wait for the next metrics tick.
    pub fn backend_drained(&self, proxy: &ProxyId) -> String {
        format!("{}.events.drained.{proxy}", self.prefix)
    }
    pub fn backend_drained_all(&self) -> String {
        format!("{}.events.drained.*", self.prefix)
    }

    // ---- brain → everyone (explanations) ---------------------------------------------------

    /// `acs.events.decision.<service>`: every scaling/placement decision with reason and inputs.
    pub fn decisions(&self, service: &ServiceName) -> String {
        format!("{}.events.decision.{service}", self.prefix)
    }
    pub fn decisions_all(&self) -> String {
        format!("{}.events.decision.*", self.prefix)
    }
    /// `acs.events.leader`: a brain took, renewed or gave up the leader lease (`LeaderEvent`).
    /// Workers and proxies raise their fencing term from it.
    pub fn leader(&self) -> String {
        format!("{}.events.leader", self.prefix)
    }
    /// `acs.events.worker.<worker>`: the brain saw a worker come up or go down.
    pub fn worker_events(&self, worker: &WorkerId) -> String {
        format!("{}.events.worker.{worker}", self.prefix)
    }
    pub fn worker_events_all(&self) -> String {
        format!("{}.events.worker.*", self.prefix)
    }
    /// `acs.events.error.<component>`: a component rejected a message nobody was waiting on a
    /// reply for (bad metrics, bad backend update). Lets `nats sub 'acs.>'` show bad input.
    pub fn rejections(&self, component: &str) -> String {
        format!("{}.events.error.{component}", self.prefix)
    }

    // ---- users → brain --------------------------------------------------------------------

    /// `acs.cmd.scale`: request-reply manual scale.
    pub fn scale(&self) -> String {
        format!("{}.cmd.scale", self.prefix)
    }
    /// `acs.cmd.maintenance`: request-reply cordon / uncordon / drain of a worker.
    pub fn maintenance(&self) -> String {
        format!("{}.cmd.maintenance", self.prefix)
    }
    /// `acs.cmd.replica`: request-reply replace (make-before-break) of one replica.
    pub fn replica_command(&self) -> String {
        format!("{}.cmd.replica", self.prefix)
    }
    /// `acs.status`: request-reply cluster status.
    pub fn status(&self) -> String {
        format!("{}.status", self.prefix)
    }

    // ---- monitor ---------------------------------------------------------------------------

    /// `acs.monitor.stats`: request-reply metrics history query (`StatsRequest` → `StatsReply`).
    pub fn monitor_stats(&self) -> String {
        format!("{}.monitor.stats", self.prefix)
    }
    /// `acs.monitor.history`: request-reply kept events (decisions, replica, worker, leader,
    /// alarm, error) by kind and window (`HistoryRequest` → `HistoryReply`).
    pub fn monitor_history(&self) -> String {
        format!("{}.monitor.history", self.prefix)
    }

    /// Every event kept in the history stream.
    pub fn events_all(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// `acs.monitor.alarms`: request-reply list / ack / silence (`AlarmRequest` → `AlarmReply`).
    pub fn monitor_alarms(&self) -> String {
        format!("{}.monitor.alarms", self.prefix)
    }
    /// `acs.events.alarm.<rule>`: an alarm went pending, firing or resolved (`AlarmEvent`).
    /// `rule` must be a valid id (rules are checked when the rules file loads).
    pub fn alarm_events(&self, rule: &str) -> String {
        format!("{}.events.alarm.{rule}", self.prefix)
    }
    pub fn alarm_events_all(&self) -> String {
        format!("{}.events.alarm.*", self.prefix)
    }
    /// `acs.rollup.>`: the monitor's closed rollup buckets, kept in its `ACS_ROLLUPS` stream.
    pub fn rollups_all(&self) -> String {
        format!("{}.rollup.>", self.prefix)
    }

    /// Which kind of subject `subject` is, for readable output in `acsctl watch`.
    pub fn classify<'a>(&self, subject: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        match rest.rsplit_once('.') {
            Some((kind, last)) => Some((kind, Some(last))),
            None => Some((rest, None)),
        }
    }
}

/// Checks that a subject's last token names the sender that its payload names, as in
/// `acs.metrics.worker.w1` carrying `worker: "w1"`. Returns the error sentence to put in a
/// [`Rejection`](crate::Rejection) (kind `invalid`) when it does not.
pub fn check_sender(subject: &str, named: &str) -> Result<(), String> {
    let token = subject.rsplit('.').next().unwrap_or_default();
    if token == named {
        Ok(())
    } else {
        Err(format!(
            "subject {subject:?} names {token:?} but the payload names {named:?}; publish on the subject that ends in .{named}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = Subjects::default();
        let w = WorkerId::new("w1").unwrap();
        assert_eq!(s.worker_metrics(&w), "acs.metrics.worker.w1");
        assert_eq!(s.worker_command(&w), "acs.cmd.worker.w1");
        assert_eq!(s.worker_command_all(), "acs.cmd.worker.*");
        assert_eq!(s.worker_events_all(), "acs.events.worker.*");
        assert_eq!(s.alarm_events_all(), "acs.events.alarm.*");
        assert_eq!(s.rollups_all(), "acs.rollup.>");
        assert_eq!(s.scale(), "acs.cmd.scale");
        assert_eq!(s.status(), "acs.status");
        assert_eq!(s.all(), "acs.>");
        assert_eq!(
            s.backend_drained(&ProxyId::new("p1").unwrap()),
            "acs.events.drained.p1"
        );
        assert_eq!(s.backend_drained_all(), "acs.events.drained.*");
        let p = Subjects::new("prod.acs").unwrap();
        assert_eq!(
            p.backends(&ServiceName::new("web").unwrap()),
            "prod.acs.backends.web"
        );
    }

    #[test]
    fn bad_prefix() {
        assert!(Subjects::new("").is_err());
        assert!(Subjects::new("a..b").is_err());
        assert!(Subjects::new("a.*").is_err());
        assert!(Subjects::new("a b").is_err());
    }

    #[test]
    fn check_sender_matches_last_token() {
        assert_eq!(check_sender("acs.metrics.worker.w1", "w1"), Ok(()));
        let err = check_sender("acs.metrics.worker.w1", "w2").unwrap_err();
        assert!(
            err.contains("names \"w1\"") && err.contains("names \"w2\""),
            "{err}"
        );
        assert!(check_sender("", "w1").is_err());
    }

    #[test]
    fn classify() {
        let s = Subjects::default();
        assert_eq!(
            s.classify("acs.metrics.worker.w1"),
            Some(("metrics.worker", Some("w1")))
        );
        assert_eq!(s.classify("acs.status"), Some(("status", None)));
        assert_eq!(s.classify("other.x"), None);
    }
}
