//! How reports and answers fold into the world: a worker's metrics (with duplicate instances
//! and the id cap), a replica event, a proxy's report and drain evidence, a command's result,
//! and the operators' pins, maintenance and replaces. Called only by [`World::apply`].

use std::collections::BTreeMap;

use acs_events::{
    BackendDrained, CommandAck, ProxyMetrics, ReplicaEvent, ReplicaId, ReplicaState, ReplicaStatus,
    ServiceName, WorkerId, WorkerMetrics,
};

use super::crash;
use super::{liveness, Drained, Intent, Maintenance, Millis, ProxyView, Record, WorkerView, World};

impl World {
    /// A proxy's report; the drain evidence it no longer lists is dropped.
    pub(super) fn proxy_metrics(&mut self, m: ProxyMetrics, now: Millis) {
        if !self.proxies.contains_key(&m.proxy) && self.proxies.len() >= self.settings.max_ids {
            self.refused_ids += 1;
            return;
        }
        let mut drained = self
            .proxies
            .remove(&m.proxy)
            .map(|p| p.drained)
            .unwrap_or_default();
        if !drained.is_empty() {
            let listed = |r: &ReplicaId| {
                m.services
                    .iter()
                    .any(|s| s.backends.iter().any(|b| &b.id == r))
            };
            drained.retain(|r, _| listed(r));
        }
        let id = m.proxy.clone();
        self.proxies.insert(
            id,
            ProxyView {
                last: m,
                last_seen: now,
                drained,
            },
        );
    }

    /// From a proxy the brain does not know (no metrics yet) it is no evidence: a drain waits
    /// for every live proxy, and this one is not live yet.
    pub(super) fn drained(&mut self, d: BackendDrained, now: Millis) {
        if let Some(p) = self.proxies.get_mut(&d.proxy) {
            let e = p.drained.entry(d.replica).or_insert(Drained {
                version: 0,
                seen: 0,
            });
            if d.version >= e.version {
                *e = Drained {
                    version: d.version,
                    seen: now,
                };
            }
        }
    }

    pub(super) fn pin(&mut self, service: ServiceName, replicas: Option<u32>) {
        let scale = &mut self.services.entry(service).or_default().scale;
        scale.manual = replicas;
        scale.pin_unreadable = false;
        if replicas.is_none() {
            // Restart the stabilisation history: the pinned period says nothing about the load.
            scale.history.clear();
        }
    }

    pub(super) fn set_maintenance(&mut self, worker: WorkerId, state: Maintenance) {
        if state == Maintenance::default() {
            self.maintenance.remove(&worker);
        } else {
            let cordoned = Maintenance {
                cordoned: true,
                ..state
            };
            self.maintenance.insert(worker, cordoned);
        }
    }

    pub(super) fn replace(&mut self, service: ServiceName, replica: ReplicaId, reason: String) {
        let moves = &mut self.services.entry(service).or_default().moves;
        moves.moving = Some(replica);
        moves.replacing = Some(reason);
    }

    pub(super) fn worker_metrics(&mut self, m: WorkerMetrics, now: Millis) {
        let id = m.worker.clone();
        if let Some(w) = self.workers.get(&id) {
            if liveness::is_duplicate(w, &m, now, &self.settings) {
                liveness::note_duplicate(&mut self.duplicates, w, &m, now);
                return;
            }
            if w.last.instance != m.instance {
                // A restart (the first instance went silent or stopped before this one started).
                self.duplicates.remove(&id);
            }
        }
        let full = self.workers.len() >= self.settings.max_ids;
        match self.workers.get_mut(&id) {
            Some(w) => {
                w.last = m;
                w.last_seen = now;
            }
            None if full => {
                self.refused_ids += 1;
                return;
            }
            None => {
                self.workers.insert(
                    id.clone(),
                    WorkerView {
                        last: m,
                        last_seen: now,
                        announced_up: false,
                        backoff_until: 0,
                        unhealthy_since: BTreeMap::new(),
                        keys: Vec::new(),
                    },
                );
            }
        }
        let w = self.workers.get_mut(&id).expect("just inserted");
        w.reindex(&id, &mut self.service_numbers);
        let unhealthy: Vec<ReplicaId> = w
            .last
            .replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Unhealthy)
            .map(|r| r.id.clone())
            .collect();
        w.unhealthy_since.retain(|id, _| unhealthy.contains(id));
        for id in unhealthy {
            w.unhealthy_since.entry(id).or_insert(now);
        }
    }

    pub(super) fn replica_event(&mut self, ev: ReplicaEvent, now: Millis) {
        // A replica event is news from a live worker; fold it into its last report so
        // the plan sees it before the next metrics tick. Unknown worker: wait for metrics.
        let Some(w) = self.workers.get_mut(&ev.worker) else {
            return;
        };
        w.last_seen = w.last_seen.max(now);
        let r = ev.replica;
        match r.state {
            ReplicaState::Exited => {
                if let Some(st) = self.services.get_mut(&r.service) {
                    let intent = self.records.get(&r.id).map(|rec| &rec.intent);
                    crash::on_exit(&mut st.crash, &r, intent, &ev.reason, ev.ts_ms, now);
                }
                w.last.replicas.retain(|x| x.id != r.id);
                w.unhealthy_since.remove(&r.id);
                // Exited while starting (crashed, or its health check timed out): forget
                // the start, so the next plan replaces it now rather than after the
                // start timeout.
                if matches!(
                    self.records.get(&r.id),
                    Some(Record {
                        intent: Intent::Starting { .. },
                        ..
                    })
                ) {
                    self.records.remove(&r.id);
                }
            }
            state => {
                if state == ReplicaState::Unhealthy {
                    w.unhealthy_since.entry(r.id.clone()).or_insert(now);
                } else {
                    w.unhealthy_since.remove(&r.id);
                }
                upsert(&mut w.last.replicas, r);
            }
        }
        w.last.capacity.running = slots_taken(&w.last.replicas);
        w.reindex(&ev.worker, &mut self.service_numbers);
    }

    pub(super) fn command_result(
        &mut self,
        worker: WorkerId,
        replica: ReplicaId,
        start: bool,
        result: Result<CommandAck, String>,
        now: Millis,
    ) {
        let failed = match &result {
            Ok(ack) if ack.ok => None,
            Ok(ack) => Some(ack.error.clone().unwrap_or_else(|| "refused".into())),
            Err(e) => Some(e.clone()),
        };
        if start {
            match failed {
                // The worker said no (full, bad spec, runtime error): forget the
                // attempt so the next plan places it again, elsewhere for a while.
                Some(error) => {
                    // A worker's own refusal may be the image's fault; no answer at all is not.
                    if let (Some(rec), true) = (self.records.remove(&replica), result.is_ok()) {
                        if let Some(st) = self.services.get_mut(&rec.service) {
                            crash::on_start_refused(
                                &mut st.crash,
                                replica.as_str(),
                                worker.as_str(),
                                &error,
                                now,
                            );
                        }
                    }
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.backoff_until = now + self.settings.refusal_backoff_ms;
                    }
                }
                None => {
                    if let (Ok(ack), Some(w)) = (&result, self.workers.get_mut(&worker)) {
                        if let Some(r) = &ack.replica {
                            if !w.last.replicas.iter().any(|x| x.id == r.id) {
                                w.last.replicas.push(r.clone());
                                w.last.capacity.running = slots_taken(&w.last.replicas);
                                w.reindex(&worker, &mut self.service_numbers);
                            }
                        }
                    }
                }
            }
        } else if failed.is_some() {
            // Retry the stop on the next plan.
            if let Some(Record {
                intent: Intent::Stopping { sent, .. },
                ..
            }) = self.records.get_mut(&replica)
            {
                *sent = 0;
            }
        }
    }
}

/// Replicas that occupy one of the worker's slots.
pub(super) fn slots_taken(replicas: &[ReplicaStatus]) -> u32 {
    replicas.iter().filter(|r| r.state.takes_slot()).count() as u32
}

fn upsert(list: &mut Vec<ReplicaStatus>, r: ReplicaStatus) {
    match list.iter_mut().find(|x| x.id == r.id) {
        Some(x) => *x = r,
        None => list.push(r),
    }
}
