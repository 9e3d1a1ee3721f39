//! `Event::PlanSent`: what a plan the loop has sent changes in the world (records, desired
//! counts, published sets, blocked reasons, lifecycle, crash steps, rebalance moves).

use super::*;

impl World {
    /// Folds a sent plan's bookkeeping in.
    pub(super) fn plan_sent(&mut self, b: Bookkeeping, now: Millis) {
        if let Some(disruption) = b.disruption {
            self.link.disruption = disruption;
        }
        for id in &b.forget_workers {
            self.workers.remove(id);
        }
        for id in &b.forget_proxies {
            self.proxies.remove(id);
        }
        for h in b.worker_health {
            if let Some(w) = self.workers.get_mut(&h.worker) {
                w.announced_up = h.up;
            }
        }
        for change in b.records {
            match change {
                RecordChange::Upsert(id, record) => {
                    self.records.insert(id, record);
                }
                RecordChange::Remove(id) => {
                    self.records.remove(&id);
                }
            }
        }
        for d in b.desired {
            let st = self.services.entry(d.service).or_default();
            if st.desired.is_some_and(|was| was != d.desired) {
                st.last_change = Some(now);
            }
            st.desired = Some(d.desired);
            if let Some(r) = d.recommendation {
                st.history.push_back((now, r));
                // Bound the history even with very long windows.
                while st.history.len() > 4096 {
                    st.history.pop_front();
                }
            }
            // Drop recommendations that no window can use any more.
            policy::prune(&mut st.history, d.history_keep_ms, now);
        }
        for p in b.published {
            let st = self.services.entry(p.service).or_default();
            st.version = p.version;
            st.published_digest = crate::plan::backends_digest(p.backends.values());
            st.published = p.backends;
            if p.reset {
                st.last_reset = Some(now);
                st.reset_requested = false;
            }
        }
        for blocked in b.blocked {
            self.services.entry(blocked.service).or_default().blocked = blocked.reason;
        }
        for lc in b.lifecycle {
            let st = self.services.entry(lc.service).or_default();
            (st.lifecycle, st.ever_ready) = (lc.lifecycle, lc.ever_ready);
        }
        for (service, step) in &b.crash {
            self.services
                .entry(service.clone())
                .or_default()
                .crash
                .step(step);
        }
        for (service, moving) in b.rebalance {
            let st = self.services.entry(service).or_default();
            if moving.is_none() {
                st.replacing = None;
            } else if st.replacing.is_none() {
                st.rebalance_moves.push_back(now);
                while st.rebalance_moves.len() > 64 {
                    st.rebalance_moves.pop_front();
                }
            }
            st.rebalancing = moving;
        }
        self.next_seq = b.next_seq;
    }
}
