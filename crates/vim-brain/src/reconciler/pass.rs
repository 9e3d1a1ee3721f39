//! One pass of the loop: tell the world about the link, fold in what is already queued, plan,
//! stamp the term, send, and record what was sent. Also what a new leader reads first.

use std::time::Instant;

use tracing::{info, warn};

use super::inbox::Inbox;
use super::{Brain, Clock, MAX_QUEUED_PER_PLAN};
use crate::plan::plan;
use crate::world::{Event, Now};

impl Brain {
    /// Plans now, or, right after an expensive plan, a little later (`pace::Pace::admit`): a
    /// stream of events must not keep the loop planning while reports pile up in its inbox.
    /// The deferred plan still measures from the first event that asked for it.
    pub(super) async fn prompt(&mut self, clock: &Clock, inbox: &mut Inbox, taken: Instant) {
        if let Some(taken) = self.pace.admit(taken, Instant::now()) {
            self.reconcile(clock, inbox, taken).await;
        }
    }

    /// Tells the world about the link, folds in what is already queued, then plans and sends.
    /// `taken`: when the event that prompted this pass was taken off the inbox.
    async fn reconcile(&mut self, clock: &Clock, inbox: &mut Inbox, taken: Instant) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if connected != self.world.link().connected {
            if connected {
                info!(
                    grace_ms = self.world.settings().worker_timeout_ms,
                    "NATS link back; no worker is marked down during the grace"
                );
            } else {
                warn!("NATS link lost; no worker is marked down while the brain cannot hear");
            }
            self.fold([Event::Connection { connected }], clock.now());
        }
        self.drain_queued(clock, inbox).await;
        self.pace.report_inbox(&self.prom);
        self.report_standing(clock.now());
        // A standby keeps its world warm and sends nothing.
        let Some(term) = self.lease.acting() else {
            return;
        };
        // The lease may be won between two turns of the loop: whichever plan comes first after
        // an election stamps the new term (versions, replica ids) and reads the KV state first.
        if self.world.term() < term {
            self.take_over(term, clock.now()).await;
        }
        let now = clock.now();
        let planning = Instant::now();
        let mut plan = plan(&self.world, &self.services, now);
        let took = planning.elapsed();
        for c in &mut plan.commands {
            c.cmd.term = term;
            // Stops too are for the instance the brain accepted under that worker id.
            if c.cmd.instance.is_none() {
                c.cmd.instance = self.world.instance_of(&c.worker);
            }
        }
        for d in &mut plan.decisions {
            d.term = term;
        }
        match &plan.disruption {
            Some((true, reason)) => warn!(%reason, "full disruption"),
            Some((false, reason)) => info!(%reason, "full disruption over"),
            None => {}
        }
        let b = &plan.bookkeeping;
        if !b.forget_workers.is_empty() || !b.forget_proxies.is_empty() {
            let forget_after_ms = self.world.settings().forget_after_ms;
            info!(workers = ?b.forget_workers, proxies = ?b.forget_proxies, forget_after_ms, "forgotten: silent too long");
        }
        for service in &plan.withdrawn {
            info!(%service, "withdrawn from the proxies: no longer declared in the services file");
        }
        // The lease may have lapsed while planning; a plan not sent is not recorded.
        if self.lease.acting() != Some(term) {
            return;
        }
        self.send(&plan, &inbox.results_tx).await;
        self.prom.plan_sent(&plan, took);
        self.fold([Event::PlanSent(plan.bookkeeping)], now);
        self.pace.pass(&self.prom, taken.elapsed(), took);
    }

    /// Leader or not, term, workers up and down, refusals: for `GET /metrics`.
    fn report_standing(&self, now: Now) {
        let settings = self.world.settings();
        let up = self
            .world
            .workers()
            .values()
            .filter(|w| w.is_up(now.mono, settings))
            .count();
        let down = self.world.workers().len() - up;
        self.prom.standing(
            self.lease.acting().is_some(),
            self.world.term(),
            up,
            down,
            self.rejected,
        );
    }

    /// Elected: stamp the new term, and read what the previous leader kept in KV (pins and
    /// maintenance) before the first plan.
    async fn take_over(&mut self, term: acs_events::Term, now: Now) {
        self.fold([Event::Term(term)], now);
        let loaded =
            crate::lease::load_pins(&self.kv, self.services.iter().map(|(name, _)| name)).await;
        for (service, replicas) in loaded.pins {
            if let Some(n) = replicas {
                info!(%service, replicas = n, term, "manual pin taken over");
            }
            self.fold([Event::Pin { service, replicas }], now);
        }
        for (service, error) in loaded.errors {
            self.rejected += 1;
            warn!(
                %service, %error, total = self.rejected,
                "cannot read the manual pin kept in KV; the service holds its current count as if pinned until `acsctl scale` sets it again"
            );
            self.fold([Event::PinUnreadable { service }], now);
        }
        let maintenance = crate::lease::load_maintenance(&self.kv).await;
        for (worker, state) in maintenance.states {
            info!(%worker, ?state, term, "maintenance taken over");
            self.fold([Event::Maintenance { worker, state }], now);
        }
        for (key, error) in maintenance.errors {
            self.rejected += 1;
            warn!(%key, %error, total = self.rejected, "cannot read a maintenance entry kept in KV");
        }
    }

    /// Reports and command results already queued, folded in without waiting, so that a plan
    /// after a stall does not run on a stale world. Requests wait for the loop.
    async fn drain_queued(&mut self, clock: &Clock, inbox: &mut Inbox) {
        for n in 0..MAX_QUEUED_PER_PLAN {
            let Some(input) = inbox.queued() else {
                self.pace.drained(n as u64, false);
                return;
            };
            // A report or a result: it asks for a plan, and this is that plan.
            self.handle(input, clock, inbox).await;
        }
        // Said by the pace's throttled warning: the rest comes after this plan.
        self.pace.drained(MAX_QUEUED_PER_PLAN as u64, true);
    }
}
