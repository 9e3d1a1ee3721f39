//! What a plan emits, in one place: a start or stop command with its record and decision, a
//! record of the brain's intent, a blocked service announced once, and the decision builder
//! every step uses.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{
    Action, CommandId, Decision, DecisionAction, ReplicaId, ServiceName, WorkerCommand, WorkerId,
    SCHEMA_VERSION,
};

use super::{scale_out, Command, Plan, Stop};
use crate::config::ServiceConfig;
use crate::world::{BlockedChange, Intent, Now, Record, RecordChange, World};

impl Plan {
    pub(super) fn record(
        &mut self,
        replica: &ReplicaId,
        service: &ServiceName,
        worker: &WorkerId,
        intent: Intent,
    ) {
        let record = Record {
            service: service.clone(),
            worker: worker.clone(),
            intent,
        };
        self.bookkeeping
            .records
            .push(RecordChange::Upsert(replica.clone(), record));
    }

    /// Replicas this plan has recorded an intent for so far.
    pub(super) fn upserted_records(&self) -> BTreeSet<ReplicaId> {
        let upserted = self
            .bookkeeping
            .records
            .iter()
            .filter_map(|change| match change {
                RecordChange::Upsert(id, _) => Some(id.clone()),
                RecordChange::Remove(_) => None,
            });
        upserted.collect()
    }

    /// The stop command, its record, and on the first attempt its decision.
    pub(super) fn stop(&mut self, service: &ServiceName, stop: Stop, now: Now) {
        let Stop {
            replica,
            worker,
            attempt,
            grace_s,
            reason,
        } = stop;
        let cmd = WorkerCommand {
            v: SCHEMA_VERSION,
            id: command_id("stop", &replica, attempt),
            issued_ms: now.unix_ms,
            term: 0,
            instance: None,
            action: Action::Stop {
                replica: replica.clone(),
                grace_ms: (grace_s * 1000.0) as u64,
            },
        };
        self.commands.push(Command {
            worker: worker.clone(),
            replica: replica.clone(),
            cmd,
        });
        self.record(
            &replica,
            service,
            &worker,
            Intent::Stopping {
                sent: now.mono,
                attempt,
            },
        );
        if attempt == 1 {
            let action = DecisionAction::Stop { replica, worker };
            self.decisions
                .push(decision(service, now, action, reason, BTreeMap::new()));
        }
    }

    /// A start on the chosen worker, with a fresh replica id.
    pub(super) fn start(
        &mut self,
        world: &World,
        service: &ServiceName,
        svc: &ServiceConfig,
        placement: scale_out::Placement,
        now: Now,
    ) {
        let seq = self.bookkeeping.next_seq;
        self.bookkeeping.next_seq += 1;
        let replica = world.replica_id(service, seq);
        let worker = placement.worker;
        let cmd = WorkerCommand {
            v: SCHEMA_VERSION,
            id: command_id("start", &replica, 1),
            issued_ms: now.unix_ms,
            term: 0,
            instance: world.instance_of(&worker),
            action: Action::Start {
                replica: replica.clone(),
                spec: svc.replica_spec(),
            },
        };
        self.commands.push(Command {
            worker: worker.clone(),
            replica: replica.clone(),
            cmd,
        });
        self.record(
            &replica,
            service,
            &worker,
            Intent::Starting { since: now.mono },
        );
        let action = DecisionAction::Place { replica, worker };
        self.decisions.push(decision(
            service,
            now,
            action,
            placement.reason,
            BTreeMap::new(),
        ));
    }

    /// Announces a blocked service once, and records the change.
    pub(super) fn set_blocked(
        &mut self,
        service: &ServiceName,
        was: Option<&String>,
        blocked: Option<String>,
        now: Now,
    ) {
        if was != blocked.as_ref() {
            if let Some(reason) = &blocked {
                self.decisions.push(decision(
                    service,
                    now,
                    DecisionAction::Blocked,
                    reason.clone(),
                    BTreeMap::new(),
                ));
            }
            self.bookkeeping.blocked.push(BlockedChange {
                service: service.clone(),
                reason: blocked,
            });
        }
    }
}

/// `<kind>-<replica>-<attempt>`, or with the replica id hashed when that would not fit in an id
/// (replica ids reported by workers may be up to 64 bytes).
fn command_id(kind: &str, replica: &ReplicaId, attempt: u32) -> CommandId {
    CommandId::new(format!("{kind}-{replica}-{attempt}")).unwrap_or_else(|_| {
        // FNV-1a: stable across runs, so a retried command keeps its id.
        let h = replica
            .as_str()
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
        CommandId::new(format!("{kind}-{h:016x}-{attempt}")).expect("short ascii id")
    })
}

pub(super) fn decision(
    service: &ServiceName,
    now: Now,
    action: DecisionAction,
    reason: String,
    inputs: BTreeMap<String, f64>,
) -> Decision {
    Decision {
        v: SCHEMA_VERSION,
        service: service.clone(),
        ts_ms: now.unix_ms,
        action,
        reason,
        inputs,
        lifecycle: None,
        term: 0,
    }
}
