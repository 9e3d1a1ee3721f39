//! How the loop reacts: commands (through [`Commands`](crate::commands::Commands)) and their
//! effects, runtime exits, health reports, finished stops, the heartbeat's measurements. Starts
//! are launched in the background (`starts.rs`): nothing here waits for the runtime. Each reaction updates the replica
//! table and publishes the replica's new state.

use std::time::Duration;

use acs_events::{encode, Rejection, ReplicaId, ReplicaState};
use tracing::{debug, error, info, warn};

use super::{Worker, COMPONENT};
use crate::clock::unix_now_ms;
use crate::commands::{Decision, Effect, Waiter};
use crate::health::{self, HealthChange, HealthReport};
use crate::prom::CommandResult;
use crate::runtime::{RuntimeError, RuntimeEvent};

impl Worker {
    pub(super) async fn on_command(&mut self, msg: async_nats::Message) {
        let Some(reply) = msg.reply.clone() else {
            let error =
                "command without a reply subject refused; send commands as requests".to_string();
            warn!(subject = %msg.subject, bytes = msg.payload.len(), total = self.rejected + 1, "{error}");
            self.prom.command(CommandResult::Rejected);
            self.publish_rejection(msg.subject.as_str(), "no_reply", error);
            return;
        };
        let decision = self.commands.decide(
            &msg.payload,
            &mut self.replicas,
            &self.in_flight,
            self.runtime.kind(),
            unix_now_ms(),
        );
        let out = match decision {
            Decision::Done(out) => out,
            Decision::Launch(l) => {
                self.prom.command(CommandResult::Launched);
                return self.spawn_launch(l, reply.to_string());
            }
            Decision::Join {
                replica,
                id,
                duplicate,
            } => {
                self.prom.command(CommandResult::Joined);
                let reply = reply.to_string();
                return self.join_launch(
                    &replica,
                    Waiter {
                        reply,
                        id,
                        duplicate,
                    },
                );
            }
        };
        let result = match (&out.rejected, &out.refused, out.ack.ok) {
            (Some(_), _, _) => CommandResult::Rejected,
            (None, Some(_), _) => CommandResult::Refused,
            (None, None, true) => CommandResult::Ok,
            (None, None, false) => CommandResult::Error,
        };
        self.prom.command(result);
        if let Some((kind, error)) = &out.rejected {
            self.rejected += 1;
            warn!(kind, %error, total = self.rejected, "rejected a malformed command");
        }
        if let Some((kind, error)) = out.refused.clone() {
            // Logged by `Commands`; counted and published here, so the refusal is visible to
            // whoever watches the cluster, not only to the sender.
            self.publish_rejection(msg.subject.as_str(), kind, error);
        }
        self.publisher
            .send(reply.to_string(), encode(&out.ack), false);
        self.apply(out.effects);
    }

    /// Carries out what a command's answer asks for.
    /// A `LeaderEvent`: raises the fencing floor. A bad one is logged, counted and published.
    pub(super) fn on_leader(&mut self, payload: &[u8]) {
        match acs_events::decode::<acs_events::LeaderEvent>(payload) {
            Ok(ev) => {
                if self.commands.observe_term(ev.term) {
                    info!(term = ev.term, brain = %ev.brain, change = ?ev.change, "newer leader term seen; commands from older terms are now refused");
                }
            }
            Err(e) => {
                let error = format!("bad leader event: {e}");
                warn!(bytes = payload.len(), total = self.rejected + 1, "{error}");
                let subject = self.config.subjects.leader();
                self.publish_rejection(&subject, "malformed", error);
            }
        }
    }

    pub(super) fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::WatchHealth(id) => {
                    self.publish_event(&id, "launched; waiting for the health check".into());
                    self.watch_health(&id);
                }
                Effect::Stop { replica, grace } => {
                    self.stop_health(&replica);
                    self.publish_event(
                        &replica,
                        format!("stop requested (grace {} ms)", grace.as_millis()),
                    );
                    self.spawn_stop(replica, grace);
                }
                Effect::StopAfterStart { replica, grace } => {
                    if let Some(s) = self.in_flight.get_mut(&replica) {
                        s.stop_after = Some(grace);
                    }
                }
                Effect::Gone { replica, reason } => self.publish_status(&replica, reason),
            }
        }
    }

    /// Counts a refused message and publishes it on this worker's rejection subject.
    fn publish_rejection(&mut self, subject: &str, kind: &str, error: String) {
        self.rejected += 1;
        let rej = Rejection::new(
            format!("{COMPONENT} {}", self.config.worker_id),
            subject,
            kind,
            error,
            unix_now_ms(),
            self.rejected,
        );
        self.publisher.send(
            self.config.subjects.rejections(COMPONENT),
            encode(&rej),
            false,
        );
    }

    pub(super) fn spawn_stop(&mut self, replica: ReplicaId, grace: Duration) {
        let runtime = self.runtime.clone();
        self.stops.spawn(async move {
            let r = runtime.stop(&replica, grace).await;
            (replica, r)
        });
    }

    pub(super) fn watch_health(&mut self, id: &ReplicaId) {
        let Some(r) = self.replicas.get(id) else {
            return;
        };
        let (addr, path) = (r.info.health_addr.clone(), r.info.health_path.clone());
        self.stop_health(id);
        let task = tokio::spawn(health::watch(
            id.clone(),
            addr,
            path,
            self.config.health.clone(),
            self.health_tx.clone(),
        ));
        self.health_tasks.insert(id.clone(), task.abort_handle());
    }

    pub(super) fn stop_health(&mut self, id: &ReplicaId) {
        if let Some(t) = self.health_tasks.remove(id) {
            t.abort();
        }
    }

    pub(super) fn on_runtime_event(&mut self, ev: RuntimeEvent) {
        match ev {
            RuntimeEvent::Exited {
                replica,
                code,
                reason,
            } => {
                self.stop_health(&replica);
                if self.in_flight.contains(&replica) {
                    debug!(replica = %replica, %reason, "exit before its start was recorded; applied once it is");
                    let ev = RuntimeEvent::Exited {
                        replica: replica.clone(),
                        code,
                        reason,
                    };
                    self.early_exits.insert(replica, ev);
                    return;
                }
                let Some(mut r) = self.replicas.remove(&replica) else {
                    debug!(replica = %replica, %reason, "exit of a replica already forgotten");
                    return;
                };
                let reason = if r.state == ReplicaState::Stopping {
                    format!("stopped: {reason}")
                } else {
                    reason
                };
                if r.state == ReplicaState::Stopping {
                    info!(replica = %replica, ?code, %reason, "replica stopped");
                } else {
                    warn!(replica = %replica, ?code, %reason, "replica exited");
                }
                r.state = ReplicaState::Exited;
                self.publish_status(&r, reason);
            }
        }
    }

    pub(super) fn on_health(&mut self, report: HealthReport) {
        let id = report.replica;
        let Some(r) = self.replicas.get_mut(&id) else {
            return;
        };
        match report.change {
            HealthChange::Passed => {
                let reason = match r.state {
                    ReplicaState::Starting => "health check passed",
                    ReplicaState::Unhealthy => "health check passes again",
                    _ => return,
                };
                r.state = ReplicaState::Healthy;
                info!(replica = %id, addr = %r.info.addr, "{reason}");
                self.publish_event(&id, reason.into());
            }
            HealthChange::Unhealthy { last_error } => {
                if r.state != ReplicaState::Healthy {
                    return;
                }
                r.state = ReplicaState::Unhealthy;
                let reason = format!(
                    "health check failed {} times in a row: {last_error}",
                    self.config.health.failures
                );
                warn!(replica = %id, %reason, "replica unhealthy");
                self.publish_event(&id, reason);
            }
            HealthChange::StartTimedOut { last_error } => {
                if r.state != ReplicaState::Starting {
                    return;
                }
                let mut r = self.replicas.remove(&id).expect("present");
                self.health_tasks.remove(&id);
                let reason = format!(
                    "health check GET {} did not pass within {} s ({last_error}); stopped",
                    r.info.health_path,
                    self.config.health.start_timeout.as_secs()
                );
                warn!(replica = %id, %reason, "replica never became healthy");
                r.state = ReplicaState::Exited;
                self.publish_status(&r, reason);
                self.spawn_stop(id, self.config.shutdown_grace);
            }
        }
    }

    /// The heartbeat measured CPU / memory.
    pub(super) fn on_measured(&mut self, measured: super::heartbeat::Measured) {
        for (id, stats) in measured {
            if let Some(r) = self.replicas.get_mut(&id) {
                r.measured(stats);
            }
        }
    }

    /// A background stop finished.
    pub(super) fn on_stop_done(
        &mut self,
        done: Result<(ReplicaId, Result<(), RuntimeError>), tokio::task::JoinError>,
    ) {
        match done {
            Ok((replica, Err(e))) => {
                self.prom.runtime_error("stop");
                error!(replica = %replica, error = %e, "stop failed; a repeated stop command tries again");
                // Leave `stopping`, or every later stop would be answered "already
                // stopping" and the replica would never stop. Its health check decides
                // whether it is still healthy.
                if let Some(r) = self.replicas.get_mut(&replica) {
                    if r.state == ReplicaState::Stopping {
                        r.state = ReplicaState::Unhealthy;
                    }
                }
            }
            Ok((replica, Ok(()))) => debug!(replica = %replica, "stop finished"),
            Err(e) => error!(error = %e, "stop task failed"),
        }
    }
}
