//! Worker commands: decoding, idempotency and capacity, acting on the
//! [replica table](crate::replicas).
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
//! - `start` of a spec this host does not allow ([`Policy::admit`]: image, program, environment,
//!   secrets) is refused before the runtime is asked; nothing runs;
//! - `start` is refused when the replicas that take a slot
//!   ([`ReplicaState::takes_slot`]: all but `exited`, so `stopping` ones too) reach `max_replicas`;
//! - `start` is acknowledged once the replica is launched (state `starting`, address known).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use acs_events::{
    decode, Action, CommandAck, CommandId, DecodeError, ReplicaId, ReplicaSpec, ReplicaState,
    ReplicaStatus, WorkerCommand, WorkerId, MAX_PAYLOAD, SCHEMA_VERSION,
};
use tracing::{info, warn};

use crate::policy::Policy;
use crate::replicas::{running, Replica, Replicas};
use crate::runtime::Runtime;

/// How many answers are kept for duplicate detection.
pub const ACK_MEMORY: usize = 4096;

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
    /// Set when the policy refused a start: `(kind, message)` for the counter, the log and a
    /// `Rejection` event.
    pub refused: Option<(&'static str, String)>,
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
    policy: Policy,
    recent: AckCache,
}

impl Commands {
    pub fn new(worker: WorkerId, max_replicas: u32, policy: Policy) -> Self {
        Self {
            worker,
            max_replicas,
            policy,
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
                refused: None,
            };
        }
        let mut refused = None;
        let (ack, effects) = match cmd.action {
            Action::Start { replica, spec } => {
                self.start(&cmd.id, replica, spec, replicas, runtime, &mut refused)
                    .await
            }
            Action::Stop { replica, grace_ms } => Self::stop(&cmd.id, replica, grace_ms, replicas),
        };
        self.recent.insert(cmd.id, ack.clone());
        Outcome {
            ack,
            effects,
            rejected: None,
            refused,
        }
    }

    fn malformed(&self, payload: &[u8], e: DecodeError) -> Outcome {
        let id = command_id_of(payload);
        let msg = format!("worker {}: bad command: {e}", self.worker);
        Outcome {
            ack: CommandAck::error(id, msg.clone()),
            effects: vec![],
            rejected: Some((e.kind(), msg)),
            refused: None,
        }
    }

    async fn start(
        &self,
        id: &CommandId,
        replica: ReplicaId,
        spec: ReplicaSpec,
        replicas: &mut Replicas,
        runtime: &dyn Runtime,
        refused: &mut Option<(&'static str, String)>,
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
        // Before the runtime is asked for anything: what is not allowed never runs.
        let path = std::env::var_os("PATH");
        let spec = match self.policy.admit(runtime.kind(), spec, path.as_deref()) {
            Ok(spec) => spec,
            Err(e) => {
                let msg = format!("worker {}: {e}", self.worker);
                if let Some(kind) = e.kind() {
                    warn!(command = %id, replica = %replica, kind, error = %e, "start refused by this worker's policy");
                    *refused = Some((kind, msg.clone()));
                } else {
                    warn!(command = %id, replica = %replica, error = %e, "start failed");
                }
                return (CommandAck::error(Some(id.clone()), msg), vec![]);
            }
        };
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
mod tests;
