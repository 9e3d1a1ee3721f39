//! Worker commands: decoding, idempotency and capacity, acting on the
//! [replica table](crate::replicas).
//!
//! One command payload becomes a [`CommandAck`] plus [`Effect`]s the run loop carries out (watch
//! a new replica's health, stop a replica in the background). Deciding never touches the
//! runtime; only [`Commands::handle`] launches inline, for tests with the fake runtime.
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
//! - `start` is acknowledged once the replica is launched (state `starting`, address known);
//! - a command whose `issued_ms` is more than `max_age` behind this worker's wall clock is
//!   refused as `stale` and nothing runs (0 = unset, and an `issued_ms` ahead of the clock is
//!   accepted: only clearly stale commands are refused, the two clocks may differ a little);
//! - fencing: the worker keeps the newest leader term it has seen (from commands and from
//!   `LeaderEvent`s, [`Commands::observe_term`]). A command from an older term is refused as
//!   `fenced` and nothing runs: a paused old leader that wakes cannot act. A term-0 command
//!   (a brain without a lease) is accepted only while no term > 0 was ever seen;
//! - a command whose `instance` names another process than this one is refused as
//!   `wrong_instance` (a second process took this worker id; the brain meant the first).
//!
//! The run loop launches in the background: [`Commands::decide`] answers at once or hands back a
//! [`Launch`]; a start in flight takes its slot ([`InFlight`]) until [`Commands::launched`] turns
//! its result into the answer. [`Commands::handle`] does both in one go (tests).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use acs_events::{
    decode, Action, CommandAck, CommandId, DecodeError, ReplicaId, ReplicaSpec, ReplicaState,
    ReplicaStatus, RuntimeKind, ServiceName, Term, UnixMs, WorkerCommand, WorkerId, MAX_PAYLOAD,
    SCHEMA_VERSION,
};
use tracing::{info, warn};

use crate::clock::unix_now_ms;
use crate::policy::Policy;
use crate::replicas::{running, Replica, Replicas};
use crate::runtime::{RunningReplica, Runtime, RuntimeError};

mod launch;

pub use launch::{InFlight, Launch, LaunchResult, Starting, Waiter};

/// How many answers are kept for duplicate detection.
pub const ACK_MEMORY: usize = 4096;

/// What the run loop must do after a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A replica was launched: watch its health.
    WatchHealth(ReplicaId),
    /// Stop a replica in the background (it is already marked `stopping`).
    Stop { replica: ReplicaId, grace: Duration },
    /// The replica's start is in flight: stop it once it has started.
    StopAfterStart { replica: ReplicaId, grace: Duration },
    /// A replica that never got to run (its start was abandoned): report it `exited`.
    Gone { replica: Replica, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ack: CommandAck,
    pub effects: Vec<Effect>,
    /// Set when the payload was malformed: `(kind, message)` for the counter and the log.
    pub rejected: Option<(&'static str, String)>,
    /// Set when the policy refused a start or the command was stale: `(kind, message)` for the
    /// counter, the log and a `Rejection` event.
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

/// What [`Commands::decide`] makes of one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answered now.
    Done(Outcome),
    /// Launch in the background; the answer waits for [`Commands::launched`].
    Launch(Launch),
    /// The replica's start is already in flight: answer this command (`id`) with that start's
    /// result once it is known (`duplicate`: the very same command id again).
    Join {
        replica: ReplicaId,
        id: CommandId,
        duplicate: bool,
    },
}

pub struct Commands {
    worker: WorkerId,
    max_replicas: u32,
    policy: Policy,
    recent: AckCache,
    /// Commands issued longer ago than this (by the wall clocks) are refused; `None`: never.
    max_age: Option<Duration>,
    /// This process's instance id (`WorkerMetrics::instance`); empty: any instance accepted.
    instance: String,
    /// The newest leader term seen; commands from older terms are fenced.
    term_floor: Term,
}

impl Commands {
    pub fn new(worker: WorkerId, max_replicas: u32, policy: Policy) -> Self {
        Self {
            worker,
            max_replicas,
            policy,
            recent: AckCache::new(ACK_MEMORY),
            max_age: None,
            instance: String::new(),
            term_floor: 0,
        }
    }

    /// Refuses commands addressed to another instance than `instance` (this process).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Raises the fencing floor to `term` if it is newer. True if it was.
    pub fn observe_term(&mut self, term: Term) -> bool {
        if term > self.term_floor {
            self.term_floor = term;
            true
        } else {
            false
        }
    }

    /// The newest leader term seen.
    pub fn term_floor(&self) -> Term {
        self.term_floor
    }

    /// Refuses commands whose `issued_ms` is more than `max_age` old (`Duration::ZERO`: never).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = (!max_age.is_zero()).then_some(max_age);
        self
    }

    /// Decodes and carries out one command payload, launching inline. Never panics on input.
    pub async fn handle(
        &mut self,
        payload: &[u8],
        replicas: &mut Replicas,
        runtime: &dyn Runtime,
    ) -> Outcome {
        let none = InFlight::new();
        match self.decide(payload, replicas, &none, runtime.kind(), unix_now_ms()) {
            Decision::Done(out) => out,
            Decision::Launch(l) => {
                let res = match runtime.start(&l.replica, &l.spec).await {
                    Ok(info) => LaunchResult::Started(info),
                    Err(e) => LaunchResult::Failed(e),
                };
                self.launched(l, res, None, replicas)
            }
            // Nothing is in flight here.
            Decision::Join { id, .. } => Outcome::answer(CommandAck::error(Some(id), "busy")),
        }
    }

    /// Decodes one command and answers it, or says what to launch. `now_ms`: the wall clock.
    pub fn decide(
        &mut self,
        payload: &[u8],
        replicas: &mut Replicas,
        in_flight: &InFlight,
        kind: RuntimeKind,
        now_ms: UnixMs,
    ) -> Decision {
        let cmd: WorkerCommand = match decode(payload) {
            Ok(c) => c,
            Err(e) => return Decision::Done(self.malformed(payload, e)),
        };
        if let Some(prev) = self.recent.get(&cmd.id) {
            info!(command = %cmd.id, "duplicate command id: replaying the first answer");
            let mut ack = prev.clone();
            ack.duplicate = true;
            return Decision::Done(Outcome::answer(ack));
        }
        if let Some(replica) = in_flight.command(&cmd.id) {
            info!(command = %cmd.id, replica = %replica, "duplicate command id: its start is in flight");
            return Decision::Join {
                replica: replica.clone(),
                id: cmd.id,
                duplicate: true,
            };
        }
        let mut refused = None;
        let (ack, effects) = if let Some((kind, msg)) = self.refusal(&cmd, now_ms) {
            warn!(command = %cmd.id, kind, term = cmd.term, term_floor = self.term_floor, instance = ?cmd.instance, issued_ms = cmd.issued_ms, now_ms, "{msg}");
            refused = Some((kind, msg.clone()));
            (CommandAck::error(Some(cmd.id.clone()), msg), vec![])
        } else {
            match cmd.action {
                Action::Start { replica, spec } => {
                    match self.start(
                        &cmd.id,
                        replica,
                        spec,
                        replicas,
                        in_flight,
                        kind,
                        &mut refused,
                    ) {
                        Ok(done) => done,
                        Err(d) => return *d,
                    }
                }
                Action::Stop { replica, grace_ms } => {
                    Self::stop(&cmd.id, replica, grace_ms, replicas, in_flight)
                }
            }
        };
        self.recent.insert(cmd.id, ack.clone());
        Decision::Done(Outcome {
            ack,
            effects,
            rejected: None,
            refused,
        })
    }

    /// Why `cmd` must not be carried out, if so: `(kind, message)`. Fencing first, so an old
    /// leader's command is reported as fenced whatever else is wrong with it. A command from a
    /// newer term raises the floor (even one refused for another reason: its leader is real).
    fn refusal(&mut self, cmd: &WorkerCommand, now_ms: UnixMs) -> Option<(&'static str, String)> {
        if cmd.term < self.term_floor {
            return Some(("fenced", format!(
                "worker {}: command {} from term {}, but term {} leads; refused (fenced), nothing was done",
                self.worker, cmd.id, cmd.term, self.term_floor
            )));
        }
        if self.observe_term(cmd.term) {
            info!(worker = %self.worker, term = cmd.term, "newer leader term seen in a command");
        }
        if let Some(want) = cmd.instance.as_deref() {
            if !self.instance.is_empty() && want != self.instance {
                return Some(("wrong_instance", format!(
                    "worker {}: command {} is for instance {want}, but this is instance {}; refused, nothing was done (another process may be using this worker id)",
                    self.worker, cmd.id, self.instance
                )));
            }
        }
        self.stale(cmd, now_ms).map(|m| ("stale", m))
    }

    /// Why `cmd` is too old to carry out, if it is.
    fn stale(&self, cmd: &WorkerCommand, now_ms: UnixMs) -> Option<String> {
        let max = self.max_age?;
        let age = now_ms
            .checked_sub(cmd.issued_ms)
            .filter(|_| cmd.issued_ms > 0)?;
        (age > max.as_millis() as u64).then(|| {
            format!(
                "worker {}: command {} is stale: issued {age} ms ago (by the wall clocks), more than --command-max-age {}ms; nothing was done",
                self.worker,
                cmd.id,
                max.as_millis()
            )
        })
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

    /// `Err`: not answered yet (a launch, or a join of the start in flight).
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        id: &CommandId,
        replica: ReplicaId,
        spec: ReplicaSpec,
        replicas: &Replicas,
        in_flight: &InFlight,
        kind: RuntimeKind,
        refused: &mut Option<(&'static str, String)>,
    ) -> Result<(CommandAck, Vec<Effect>), Box<Decision>> {
        if let Some(service) = in_flight.service(&replica) {
            if *service != spec.service {
                let msg = format!(
                    "replica {replica} is starting on worker {} for service {service}, not {}",
                    self.worker, spec.service
                );
                return Ok((CommandAck::error(Some(id.clone()), msg), vec![]));
            }
            info!(command = %id, replica = %replica, "start: replica is already starting");
            return Err(Box::new(Decision::Join {
                replica,
                id: id.clone(),
                duplicate: false,
            }));
        }
        if let Some(r) = replicas.get(&replica) {
            if r.info.service != spec.service {
                let msg = format!(
                    "replica {replica} already runs on worker {} for service {}, not {}",
                    self.worker, r.info.service, spec.service
                );
                return Ok((CommandAck::error(Some(id.clone()), msg), vec![]));
            }
            if r.state == ReplicaState::Stopping {
                let msg = format!(
                    "replica {replica} is stopping on worker {}; start it again once it has exited",
                    self.worker
                );
                return Ok((CommandAck::error(Some(id.clone()), msg), vec![]));
            }
            info!(command = %id, replica = %replica, state = ?r.state, "start: replica already runs");
            return Ok((ok(id, r.status()), vec![]));
        }
        // A start in flight takes its slot.
        let used = running(replicas) + in_flight.len() as u32;
        if used >= self.max_replicas {
            let msg = format!(
                "worker {} is full: {used}/{} replicas",
                self.worker, self.max_replicas
            );
            warn!(command = %id, replica = %replica, "{msg}");
            return Ok((CommandAck::error(Some(id.clone()), msg), vec![]));
        }
        // Before the runtime is asked for anything: what is not allowed never runs.
        let path = std::env::var_os("PATH");
        let spec = match self.policy.admit(kind, spec, path.as_deref()) {
            Ok(spec) => spec,
            Err(e) => {
                let msg = format!("worker {}: {e}", self.worker);
                if let Some(kind) = e.kind() {
                    warn!(command = %id, replica = %replica, kind, error = %e, "start refused by this worker's policy");
                    *refused = Some((kind, msg.clone()));
                } else {
                    warn!(command = %id, replica = %replica, error = %e, "start failed");
                }
                return Ok((CommandAck::error(Some(id.clone()), msg), vec![]));
            }
        };
        Err(Box::new(Decision::Launch(Launch {
            id: id.clone(),
            replica,
            spec,
        })))
    }

    fn stop(
        id: &CommandId,
        replica: ReplicaId,
        grace_ms: u64,
        replicas: &mut Replicas,
        in_flight: &InFlight,
    ) -> (CommandAck, Vec<Effect>) {
        let grace = Duration::from_millis(grace_ms.min(10 * 60 * 1000));
        if in_flight.service(&replica).is_some() {
            info!(command = %id, replica = %replica, grace_ms, "stop: replica is still starting; stopped as soon as its start finishes");
            return (
                ok_without_replica(id),
                vec![Effect::StopAfterStart { replica, grace }],
            );
        }
        let Some(r) = replicas.get_mut(&replica) else {
            info!(command = %id, replica = %replica, "stop: replica not here (already gone)");
            return (ok_without_replica(id), vec![]);
        };
        if r.state == ReplicaState::Stopping {
            return (ok(id, r.status()), vec![]);
        }
        r.state = ReplicaState::Stopping;
        info!(command = %id, replica = %replica, grace_ms, "stopping replica");
        (ok(id, r.status()), vec![Effect::Stop { replica, grace }])
    }
}

impl Outcome {
    /// An answer with nothing else to do.
    pub fn answer(ack: CommandAck) -> Self {
        Self {
            ack,
            effects: vec![],
            rejected: None,
            refused: None,
        }
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
mod fencing_tests;
#[cfg(test)]
mod tests;
