//! Worker commands: decoding, idempotency, capacity, and the replica table they act on.
//!
//! [`Commands::handle`] turns one command payload into a [`CommandAck`] plus [`Effect`]s the run
//! loop carries out (watch a new replica's health, stop a replica in the background). It talks
//! to the [`Runtime`] only to launch replicas, so it is unit-tested with the fake runtime.
//!
//! Rules (see `docs/ARCHITECTURE.md`):
//! - idempotent by command id: a repeated id gets the first answer again with `duplicate: true`
//!   and nothing else happens (the last [`ACK_MEMORY`] answers are remembered);
//! - `start` of a replica that runs succeeds with its status; `stop` of an unknown replica
//!   succeeds;
//! - `start` is refused when `starting + healthy + unhealthy >= max_replicas`;
//! - `start` is acknowledged once the replica is launched (state `starting`, address known).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use acs_events::{
    decode, Action, CommandAck, CommandId, DecodeError, ReplicaId, ReplicaSpec, ReplicaState,
    ReplicaStatus, WorkerCommand, WorkerId, MAX_PAYLOAD, SCHEMA_VERSION,
};
use tracing::{info, warn};

use crate::runtime::{RunningReplica, Runtime};

/// How many answers are kept for duplicate detection.
pub const ACK_MEMORY: usize = 4096;

/// One replica as the worker tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub info: RunningReplica,
    pub state: ReplicaState,
    pub cpu_pct: f64,
    pub mem_bytes: u64,
}

impl Replica {
    pub fn new(info: RunningReplica) -> Self {
        Self {
            info,
            state: ReplicaState::Starting,
            cpu_pct: 0.0,
            mem_bytes: 0,
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            id: self.info.id.clone(),
            service: self.info.service.clone(),
            addr: self.info.addr.clone(),
            state: self.state,
            cpu_pct: if self.cpu_pct.is_finite() && self.cpu_pct >= 0.0 {
                self.cpu_pct
            } else {
                0.0
            },
            mem_bytes: self.mem_bytes,
            started_ms: self.info.started_ms,
            restarts: 0,
        }
    }

    /// Occupies a slot of capacity (everything but `stopping` / `exited`).
    pub fn counts(&self) -> bool {
        matches!(
            self.state,
            ReplicaState::Starting | ReplicaState::Healthy | ReplicaState::Unhealthy
        )
    }
}

pub type Replicas = BTreeMap<ReplicaId, Replica>;

/// Replicas that occupy capacity.
pub fn running(replicas: &Replicas) -> u32 {
    replicas.values().filter(|r| r.counts()).count() as u32
}

/// What the run loop must do after a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A replica was launched: watch its health.
    WatchHealth(ReplicaId),
    /// Stop a replica in the background (it is already marked `stopping`).
    Stop { replica: ReplicaId, grace: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ack: CommandAck,
    pub effects: Vec<Effect>,
    /// Set when the payload was malformed: `(kind, message)` for the counter and the log.
    pub rejected: Option<(&'static str, String)>,
}

/// Recent answers by command id, oldest evicted first.
#[derive(Debug, Default)]
pub struct AckCache {
    acks: HashMap<CommandId, CommandAck>,
    order: VecDeque<CommandId>,
    cap: usize,
}

impl AckCache {
    pub fn new(cap: usize) -> Self {
        Self {
            acks: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn get(&self, id: &CommandId) -> Option<&CommandAck> {
        self.acks.get(id)
    }

    pub fn insert(&mut self, id: CommandId, ack: CommandAck) {
        if self.acks.insert(id.clone(), ack).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.acks.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.acks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}

pub struct Commands {
    worker: WorkerId,
    max_replicas: u32,
    recent: AckCache,
}

impl Commands {
    pub fn new(worker: WorkerId, max_replicas: u32) -> Self {
        Self {
            worker,
            max_replicas,
            recent: AckCache::new(ACK_MEMORY),
        }
    }

    /// Decodes and carries out one command payload. Never panics on input.
    pub async fn handle(
        &mut self,
        payload: &[u8],
        replicas: &mut Replicas,
        runtime: &dyn Runtime,
    ) -> Outcome {
        let cmd: WorkerCommand = match decode(payload) {
            Ok(c) => c,
            Err(e) => return self.malformed(payload, e),
        };
        if let Some(prev) = self.recent.get(&cmd.id) {
            info!(command = %cmd.id, "duplicate command id: replaying the first answer");
            let mut ack = prev.clone();
            ack.duplicate = true;
            return Outcome {
                ack,
                effects: vec![],
                rejected: None,
            };
        }
        let (ack, effects) = match cmd.action {
            Action::Start { replica, spec } => {
                self.start(&cmd.id, replica, spec, replicas, runtime).await
            }
            Action::Stop { replica, grace_ms } => Self::stop(&cmd.id, replica, grace_ms, replicas),
        };
        self.recent.insert(cmd.id, ack.clone());
        Outcome {
            ack,
            effects,
            rejected: None,
        }
    }

    fn malformed(&self, payload: &[u8], e: DecodeError) -> Outcome {
        let id = command_id_of(payload);
        let msg = format!("worker {}: bad command: {e}", self.worker);
        Outcome {
            ack: CommandAck::error(id, msg.clone()),
            effects: vec![],
            rejected: Some((e.kind(), msg)),
        }
    }

    async fn start(
        &self,
        id: &CommandId,
        replica: ReplicaId,
        spec: ReplicaSpec,
        replicas: &mut Replicas,
        runtime: &dyn Runtime,
    ) -> (CommandAck, Vec<Effect>) {
        if let Some(r) = replicas.get(&replica) {
            if r.info.service != spec.service {
                let msg = format!(
                    "replica {replica} already runs on worker {} for service {}, not {}",
                    self.worker, r.info.service, spec.service
                );
                return (CommandAck::error(Some(id.clone()), msg), vec![]);
            }
            if r.state == ReplicaState::Stopping {
                let msg = format!(
                    "replica {replica} is stopping on worker {}; start it again once it has exited",
                    self.worker
                );
                return (CommandAck::error(Some(id.clone()), msg), vec![]);
            }
            info!(command = %id, replica = %replica, state = ?r.state, "start: replica already runs");
            return (ok(id, r.status()), vec![]);
        }
        let used = running(replicas);
        if used >= self.max_replicas {
            let msg = format!(
                "worker {} is full: {used}/{} replicas",
                self.worker, self.max_replicas
            );
            warn!(command = %id, replica = %replica, "{msg}");
            return (CommandAck::error(Some(id.clone()), msg), vec![]);
        }
        match runtime.start(&replica, &spec).await {
            Ok(info) => {
                let r = Replica::new(info);
                let status = r.status();
                info!(command = %id, replica = %replica, service = %spec.service, addr = %status.addr, "replica starting");
                replicas.insert(replica.clone(), r);
                (ok(id, status), vec![Effect::WatchHealth(replica)])
            }
            Err(e) => {
                warn!(command = %id, replica = %replica, error = %e, "start failed");
                (
                    CommandAck::error(Some(id.clone()), format!("worker {}: {e}", self.worker)),
                    vec![],
                )
            }
        }
    }

    fn stop(
        id: &CommandId,
        replica: ReplicaId,
        grace_ms: u64,
        replicas: &mut Replicas,
    ) -> (CommandAck, Vec<Effect>) {
        let Some(r) = replicas.get_mut(&replica) else {
            info!(command = %id, replica = %replica, "stop: replica not here (already gone)");
            return (ok_without_replica(id), vec![]);
        };
        if r.state == ReplicaState::Stopping {
            return (ok(id, r.status()), vec![]);
        }
        r.state = ReplicaState::Stopping;
        info!(command = %id, replica = %replica, grace_ms, "stopping replica");
        let grace = Duration::from_millis(grace_ms.min(10 * 60 * 1000));
        (ok(id, r.status()), vec![Effect::Stop { replica, grace }])
    }
}

fn ok(id: &CommandId, status: ReplicaStatus) -> CommandAck {
    CommandAck {
        v: SCHEMA_VERSION,
        id: Some(id.clone()),
        ok: true,
        error: None,
        replica: Some(status),
        duplicate: false,
    }
}

fn ok_without_replica(id: &CommandId) -> CommandAck {
    CommandAck {
        v: SCHEMA_VERSION,
        id: Some(id.clone()),
        ok: true,
        error: None,
        replica: None,
        duplicate: false,
    }
}

/// The command id of a payload that failed to decode, when it has a valid one.
pub fn command_id_of(payload: &[u8]) -> Option<CommandId> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    CommandId::new(v.get("id")?.as_str()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{Call, FakeRuntime};
    use serde_json::json;

    fn worker() -> Commands {
        Commands::new(WorkerId::new("w1").unwrap(), 2)
    }

    fn start(id: &str, replica: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": id, "action": "start", "replica": replica,
            "spec": {"service": "web", "command": ["demo-web", "--port", "{port}"]}
        }))
        .unwrap()
    }

    fn stop(id: &str, replica: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"id": id, "action": "stop", "replica": replica, "grace_ms": 100}),
        )
        .unwrap()
    }

    fn rid(s: &str) -> ReplicaId {
        ReplicaId::new(s).unwrap()
    }

    #[tokio::test]
    async fn start_then_duplicate_replays_without_starting_again() {
        let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
        let out = c.handle(&start("c1", "r1"), &mut reps, &rt).await;
        assert!(out.ack.ok, "{:?}", out.ack);
        assert!(!out.ack.duplicate);
        let st = out.ack.replica.clone().unwrap();
        assert_eq!(st.state, ReplicaState::Starting);
        assert!(st.addr.starts_with("127.0.0.1:"));
        assert_eq!(out.effects, vec![Effect::WatchHealth(rid("r1"))]);

        let again = c.handle(&start("c1", "r1"), &mut reps, &rt).await;
        assert!(again.ack.duplicate);
        assert_eq!(
            CommandAck {
                duplicate: false,
                ..again.ack.clone()
            },
            out.ack
        );
        assert!(again.effects.is_empty());
        assert_eq!(rt.starts(), 1);
    }

    #[tokio::test]
    async fn start_of_a_running_replica_succeeds_with_its_status() {
        let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
        c.handle(&start("c1", "r1"), &mut reps, &rt).await;
        reps.get_mut(&rid("r1")).unwrap().state = ReplicaState::Healthy;
        let out = c.handle(&start("c2", "r1"), &mut reps, &rt).await;
        assert!(out.ack.ok && !out.ack.duplicate);
        assert_eq!(out.ack.replica.unwrap().state, ReplicaState::Healthy);
        assert!(out.effects.is_empty());
        assert_eq!(rt.starts(), 1);
    }

    #[tokio::test]
    async fn refuses_start_when_full() {
        let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
        assert!(c.handle(&start("c1", "r1"), &mut reps, &rt).await.ack.ok);
        assert!(c.handle(&start("c2", "r2"), &mut reps, &rt).await.ack.ok);
        let out = c.handle(&start("c3", "r3"), &mut reps, &rt).await;
        assert!(!out.ack.ok);
        assert_eq!(
            out.ack.error.as_deref(),
            Some("worker w1 is full: 2/2 replicas")
        );
        assert_eq!(out.ack.id, Some(CommandId::new("c3").unwrap()));
        assert!(out.rejected.is_none());
        assert_eq!(rt.starts(), 2);

        // A stopping replica frees its slot.
        let out = c.handle(&stop("c4", "r1"), &mut reps, &rt).await;
        assert!(out.ack.ok);
        assert_eq!(out.ack.replica.unwrap().state, ReplicaState::Stopping);
        assert_eq!(
            out.effects,
            vec![Effect::Stop {
                replica: rid("r1"),
                grace: Duration::from_millis(100)
            }]
        );
        assert!(c.handle(&start("c5", "r3"), &mut reps, &rt).await.ack.ok);
        // Starting a replica that is stopping is refused, clearly.
        let out = c.handle(&start("c6", "r1"), &mut reps, &rt).await;
        assert!(out.ack.error.unwrap().contains("stopping"));
    }

    #[tokio::test]
    async fn stop_of_unknown_replica_is_ok_and_stop_is_idempotent() {
        let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
        let out = c.handle(&stop("c1", "ghost"), &mut reps, &rt).await;
        assert!(out.ack.ok && out.ack.replica.is_none() && out.effects.is_empty());
        c.handle(&start("c2", "r1"), &mut reps, &rt).await;
        let first = c.handle(&stop("c3", "r1"), &mut reps, &rt).await;
        assert_eq!(first.effects.len(), 1);
        let second = c.handle(&stop("c4", "r1"), &mut reps, &rt).await;
        assert!(second.ack.ok && second.effects.is_empty());
        let dup = c.handle(&stop("c3", "r1"), &mut reps, &rt).await;
        assert!(dup.ack.duplicate && dup.effects.is_empty());
        // Stops are carried out by the run loop, not by `handle`.
        assert!(!rt.calls().iter().any(|c| matches!(c, Call::Stop { .. })));
    }

    #[tokio::test]
    async fn runtime_failure_becomes_an_error_ack() {
        let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
        rt.fail_next_start("no such program");
        let out = c.handle(&start("c1", "r1"), &mut reps, &rt).await;
        assert!(!out.ack.ok);
        assert!(out.ack.error.unwrap().contains("no such program"));
        assert!(reps.is_empty());
        assert!(out.rejected.is_none());
    }

    #[tokio::test]
    async fn malformed_payloads_get_error_acks() {
        let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
        let big = format!("{{\"id\":\"c1\",\"pad\":\"{}\"}}", "x".repeat(MAX_PAYLOAD));
        let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
            (b"{not json".to_vec(), None, "bad_json"),
            (b"".to_vec(), None, "empty"),
            (br#"{"id":"c1","action":"start","replica":"r1"}"#.to_vec(), Some("c1"), "bad_field"),
            (br#"{"id":"c2","action":"explode","replica":"r1"}"#.to_vec(), Some("c2"), "bad_field"),
            (br#"{"id":"c3","action":"stop","replica":"a.b"}"#.to_vec(), Some("c3"), "bad_field"),
            (br#"{"id":"c4","action":"stop","replica":"r1","grace_ms":-5}"#.to_vec(), Some("c4"), "bad_field"),
            (br#"{"id":"c5","action":"stop","replica":7}"#.to_vec(), Some("c5"), "bad_field"),
            (br#"{"id":"bad id","action":"stop","replica":"r1"}"#.to_vec(), None, "bad_field"),
            (
                br#"{"id":"c6","action":"start","replica":"r1","spec":{"service":"web","command":["x"],"cpus":-1}}"#.to_vec(),
                Some("c6"),
                "invalid",
            ),
            (big.into_bytes(), None, "too_large"),
        ];
        for (payload, id, kind) in cases {
            let out = c.handle(&payload, &mut reps, &rt).await;
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
            assert!(!out.ack.ok, "{shown}");
            assert_eq!(out.ack.id.as_ref().map(|i| i.as_str()), id, "{shown}");
            let err = out.ack.error.clone().unwrap();
            assert!(err.starts_with("worker w1: bad command: "), "{err}");
            assert_eq!(
                out.rejected.as_ref().map(|r| r.0),
                Some(kind),
                "{shown}: {err}"
            );
        }
        assert!(reps.is_empty());
        assert_eq!(rt.starts(), 0);
        // A malformed command does not poison its id: a good one with the same id runs.
        assert!(c.handle(&start("c1", "r1"), &mut reps, &rt).await.ack.ok);
    }

    #[test]
    fn ack_cache_is_bounded() {
        let mut cache = AckCache::new(3);
        for i in 0..5 {
            let id = CommandId::new(format!("c{i}")).unwrap();
            cache.insert(id.clone(), CommandAck::error(Some(id), "x"));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&CommandId::new("c0").unwrap()).is_none());
        assert!(cache.get(&CommandId::new("c4").unwrap()).is_some());
    }
}
