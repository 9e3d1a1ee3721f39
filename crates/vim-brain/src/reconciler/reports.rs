//! Reports from workers and proxies: decoded, checked against their sender, folded into the
//! world; refusals counted and published on `acs.events.rejected.brain`.

use acs_events::{
    check_sender, decode, encode, BackendDrained, DecodeError, ProxyMetricsMsg, Rejection,
    ReplicaEvent, WorkerMetrics,
};
use async_nats::Message;
use tracing::{debug, warn};

use super::{now_unix_ms, Brain};
use crate::world::{Event, Now};

impl Brain {
    pub(super) async fn on_metrics(&mut self, m: &Message, now: Now) {
        if let Some(ev) = self
            .decode_from_sender::<WorkerMetrics>(m, |ev| ev.worker.as_str())
            .await
        {
            self.pace.report_taken(ev.ts_ms, now.unix_ms);
            let id = ev.worker.clone();
            let refused = self.world.duplicates().get(&id).map_or(0, |d| d.refused);
            self.apply_capped(m, "worker", Event::WorkerMetrics(ev), now)
                .await;
            // A second process under a live worker's id: refused (not applied), counted on every
            // report, announced once.
            if let Some(d) = self
                .world
                .duplicates()
                .get(&id)
                .filter(|d| d.refused > refused)
            {
                self.rejected += 1;
                if refused == 0 {
                    let ev = crate::world::duplicate_event(&id, d, now.unix_ms);
                    warn!(worker = %id, reason = %ev.reason, total = self.rejected, "duplicate worker id refused");
                    if self.lease.acting().is_some() {
                        self.publish(self.subjects.worker_events(&id), encode(&ev))
                            .await;
                    }
                } else {
                    debug!(worker = %id, refused = d.refused, "report from a duplicate worker instance refused");
                }
            }
        }
    }

    /// Applies a report, and says so loudly if the world refused it for its id cap.
    async fn apply_capped(&mut self, m: &Message, kind: &str, event: Event, now: Now) {
        let refused = self.world.refused_ids();
        self.fold([event], now);
        if self.world.refused_ids() > refused {
            let max = self.world.settings().max_ids;
            let error = format!(
                "refused a report from a new {kind}: {max} distinct {kind} ids are known already (max_ids); \
                 ids silent for forget_after_ms are forgotten, or raise the cap"
            );
            self.reject(m, "limit", error).await;
        }
    }

    pub(super) async fn on_replica_event(&mut self, m: &Message, now: Now) {
        if let Some(ev) = self
            .decode_from_sender::<ReplicaEvent>(m, |ev| ev.worker.as_str())
            .await
        {
            debug!(worker = %ev.worker, replica = %ev.replica.id, state = ?ev.replica.state, "replica event");
            self.fold([Event::Replica(ev)], now);
        }
    }

    /// A report too big for one message comes in parts; the world sees it once it is whole.
    pub(super) async fn on_proxy(&mut self, m: &Message, now: Now) {
        let Some(msg) = self
            .decode_from_sender::<ProxyMetricsMsg>(m, |ev| ev.metrics.proxy.as_str())
            .await
        else {
            return;
        };
        let before = self.proxy_parts.dropped().total();
        let whole = self.proxy_parts.push(msg, now.mono);
        let dropped = self.proxy_parts.dropped();
        if dropped.total() > before {
            self.prom.proxy_parts_dropped(dropped.total());
            warn!(
                subject = %m.subject, timed_out = dropped.timed_out, superseded = dropped.superseded, stale = dropped.stale,
                evicted = dropped.evicted, inconsistent = dropped.inconsistent, "incomplete split proxy report dropped"
            );
        }
        if let Some(ev) = whole {
            self.apply_capped(m, "proxy", Event::Proxy(ev), now).await;
        }
    }

    pub(super) async fn on_drained(&mut self, m: &Message, now: Now) {
        if let Some(ev) = self
            .decode_from_sender::<BackendDrained>(m, |ev| ev.proxy.as_str())
            .await
        {
            debug!(proxy = %ev.proxy, service = %ev.service, replica = %ev.replica, version = ev.version, "backend drained");
            self.fold([Event::Drained(ev)], now);
        }
    }

    /// Counts and reports a message that was refused and that nobody waits on.
    pub(super) async fn reject(&mut self, m: &Message, kind: &str, error: String) {
        self.rejected += 1;
        warn!(subject = %m.subject, kind, %error, total = self.rejected, "rejected message");
        let r = Rejection::new(
            "brain",
            m.subject.as_str(),
            kind,
            error,
            now_unix_ms(),
            self.rejected,
        );
        self.publish(self.subjects.rejections("brain"), encode(&r))
            .await;
    }

    async fn reject_decode(&mut self, m: &Message, e: DecodeError) {
        self.reject(m, e.kind(), e.to_string()).await;
    }

    /// Decodes a report whose subject must end in the sender its payload names.
    async fn decode_from_sender<T>(&mut self, m: &Message, sender: fn(&T) -> &str) -> Option<T>
    where
        T: serde::de::DeserializeOwned + acs_events::Validate + acs_events::codec::Versioned,
    {
        match decode::<T>(&m.payload) {
            Ok(ev) => match check_sender(m.subject.as_str(), sender(&ev)) {
                Ok(()) => Some(ev),
                Err(error) => {
                    self.reject(m, "invalid", error).await;
                    None
                }
            },
            Err(e) => {
                self.reject_decode(m, e).await;
                None
            }
        }
    }
}
