//! Starts in flight: what the run loop launches in the background ([`Launch`]), how it ended
//! ([`LaunchResult`]), the starts not finished yet ([`InFlight`], each holding its slot), and
//! [`Commands::launched`], which turns a result into the answer.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// A start the policy admitted, to be run by the runtime in the background.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// The command that asked for it.
    pub id: CommandId,
    pub replica: ReplicaId,
    /// The admitted spec (program resolved, secrets read).
    pub spec: ReplicaSpec,
}

/// How a launch ended.
#[derive(Debug)]
pub enum LaunchResult {
    Started(RunningReplica),
    Failed(RuntimeError),
    /// Not done within its deadline: given up, and whatever it left was removed (`cleanup`:
    /// the error if that failed too).
    TimedOut {
        deadline: Duration,
        cleanup: Result<(), String>,
    },
}

/// Someone waiting for the answer to a start in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter {
    /// Reply subject.
    pub reply: String,
    pub id: CommandId,
    /// The same command id as the start itself (answered with `duplicate: true`).
    pub duplicate: bool,
}

/// One start in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Starting {
    pub id: CommandId,
    pub service: ServiceName,
    /// Reply subject of the command that asked for it.
    pub reply: String,
    /// Later commands answered with its result.
    pub waiters: Vec<Waiter>,
    /// A stop came while it was starting: stop it with this grace as soon as it runs.
    pub stop_after: Option<Duration>,
}

/// The starts in flight, by replica; each takes a slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlight(BTreeMap<ReplicaId, Starting>);

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn insert(&mut self, replica: ReplicaId, starting: Starting) {
        self.0.insert(replica, starting);
    }

    pub fn contains(&self, replica: &ReplicaId) -> bool {
        self.0.contains_key(replica)
    }

    pub fn get_mut(&mut self, replica: &ReplicaId) -> Option<&mut Starting> {
        self.0.get_mut(replica)
    }

    pub fn remove(&mut self, replica: &ReplicaId) -> Option<Starting> {
        self.0.remove(replica)
    }

    pub fn drain(&mut self) -> impl Iterator<Item = (ReplicaId, Starting)> {
        std::mem::take(&mut self.0).into_iter()
    }

    /// The service of `replica` if its start is in flight.
    pub fn service(&self, replica: &ReplicaId) -> Option<&ServiceName> {
        self.0.get(replica).map(|s| &s.service)
    }

    /// The replica whose start command `id` is in flight.
    pub fn command(&self, id: &CommandId) -> Option<&ReplicaId> {
        self.0.iter().find(|(_, s)| s.id == *id).map(|(r, _)| r)
    }
}

impl Commands {
    /// The answer to a finished launch, remembered under its command id. `stop_after`: a stop
    /// came while it was starting. The replica joins the table when it started.
    pub fn launched(
        &mut self,
        l: Launch,
        res: LaunchResult,
        stop_after: Option<Duration>,
        replicas: &mut Replicas,
    ) -> Outcome {
        let (ack, effects) = match res {
            LaunchResult::Started(info) => {
                let mut r = Replica::new(info);
                let effect = match stop_after {
                    Some(grace) => {
                        r.state = ReplicaState::Stopping;
                        info!(command = %l.id, replica = %l.replica, "replica started; stopping it as asked meanwhile");
                        Effect::Stop {
                            replica: l.replica.clone(),
                            grace,
                        }
                    }
                    None => Effect::WatchHealth(l.replica.clone()),
                };
                let status = r.status();
                info!(command = %l.id, replica = %l.replica, service = %l.spec.service, addr = %status.addr, "replica starting");
                replicas.insert(l.replica.clone(), r);
                (ok(&l.id, status), vec![effect])
            }
            LaunchResult::Failed(e) => {
                warn!(command = %l.id, replica = %l.replica, error = %e, "start failed");
                let msg = format!("worker {}: {e}", self.worker);
                (CommandAck::error(Some(l.id.clone()), msg), vec![])
            }
            LaunchResult::TimedOut { deadline, cleanup } => {
                let left = match &cleanup {
                    Ok(()) => "whatever it left was removed".to_string(),
                    Err(e) => format!("removing what it left failed: {e}"),
                };
                let reason = format!(
                    "start did not finish within {} ms (--start-deadline); abandoned, {left}",
                    deadline.as_millis()
                );
                warn!(command = %l.id, replica = %l.replica, %reason, "start abandoned");
                let msg = format!("worker {}: replica {}: {reason}", self.worker, l.replica);
                let gone = Replica {
                    state: ReplicaState::Exited,
                    ..Replica::new(never_ran(&l))
                };
                let effect = Effect::Gone {
                    replica: gone,
                    reason,
                };
                (CommandAck::error(Some(l.id.clone()), msg), vec![effect])
            }
        };
        self.recent.insert(l.id, ack.clone());
        Outcome {
            ack,
            effects,
            rejected: None,
            refused: None,
        }
    }

    /// The answer for a command that joined a start in flight, remembered under its own id.
    pub fn joined(&mut self, ack: &CommandAck, id: CommandId, duplicate: bool) -> CommandAck {
        let mut mine = ack.clone();
        if duplicate {
            mine.duplicate = true;
        } else {
            mine.id = Some(id.clone());
            self.recent.insert(id, mine.clone());
        }
        mine
    }
}

/// The address reported for a replica that never got one (the contract wants `host:port` even
/// for an `exited` replica; nobody routes to an exited one).
pub const NO_ADDR: &str = "0.0.0.0:1";

/// What is known of a replica that never got to run: its id and service, no address.
pub(super) fn never_ran(l: &Launch) -> RunningReplica {
    RunningReplica {
        id: l.replica.clone(),
        service: l.spec.service.clone(),
        addr: NO_ADDR.into(),
        health_addr: NO_ADDR.into(),
        health_path: l.spec.health_path.clone(),
        pid: None,
        container_id: None,
        started_ms: 0,
        adopted: false,
    }
}

#[cfg(test)]
mod tests;
