//! Everything the loop waits on, as one [`Inbox::next`] that returns an [`Input`]: the tick, a
//! deferred plan, the subscriptions, command results and elections.
//!
//! Each subscription is kept alive: if its stream ends (the client dropped it, the server
//! closed it), the loop logs it and resubscribes with backoff, instead of silently no longer
//! receiving that subject. [`Inbox::queued`] takes reports and results already queued without
//! waiting, so the loop can fold them in before it plans.

use std::time::{Duration, Instant};

use acs_events::Subjects;
use async_nats::{Client, Message, Subscriber};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Error;
use crate::lease::Transition;
use crate::world::Event;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One thing for the loop to handle.
#[derive(Debug)]
pub(super) enum Input {
    /// The periodic tick: revive ended subscriptions, then plan.
    Tick,
    /// A plan put off after an expensive one is due.
    Deferred,
    WorkerMetrics(Message),
    ReplicaEvent(Message),
    ProxyMetrics(Message),
    /// A proxy's draining backend has nothing in flight.
    Drained(Message),
    Scale(Message),
    Maintenance(Message),
    /// `acs.cmd.replica`.
    Replace(Message),
    Status(Message),
    Sync(Message),
    /// A worker's answer to a command (or the failure to get one).
    CommandResult(Event),
    Election(Transition),
}

/// The brain's subscriptions, the tick, the channel command results come back on, and the
/// lease's elections.
pub(super) struct Inbox {
    metrics: Sub,
    replica_events: Sub,
    proxies: Sub,
    drained: Sub,
    scale: Sub,
    maintenance: Sub,
    replica_cmd: Sub,
    status: Sub,
    sync: Sub,
    pub(super) results_tx: mpsc::UnboundedSender<Event>,
    results: mpsc::UnboundedReceiver<Event>,
    tick: tokio::time::Interval,
    elections: mpsc::UnboundedReceiver<Transition>,
}

impl Inbox {
    pub(super) async fn subscribe(
        client: &Client,
        s: &Subjects,
        tick: Duration,
    ) -> Result<Self, Error> {
        let sub = |subject: String| async move {
            Sub::new(client, subject.clone())
                .await
                .map_err(|source| Error::Subscribe { subject, source })
        };
        let (results_tx, results) = mpsc::unbounded_channel::<Event>();
        let mut tick = tokio::time::interval(tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // None until the lease is started (`listen_to`).
        let (_, elections) = mpsc::unbounded_channel();
        Ok(Self {
            metrics: sub(s.worker_metrics_all()).await?,
            replica_events: sub(s.replica_events_all()).await?,
            proxies: sub(s.proxy_metrics_all()).await?,
            drained: sub(s.backend_drained_all()).await?,
            scale: sub(s.scale()).await?,
            maintenance: sub(s.maintenance()).await?,
            replica_cmd: sub(s.replica_command()).await?,
            status: sub(s.status()).await?,
            sync: sub(s.backends_sync()).await?,
            results_tx,
            results,
            tick,
            elections,
        })
    }

    /// Elections come from the lease, which starts once the brain is subscribed.
    pub(super) fn listen_to(&mut self, elections: mpsc::UnboundedReceiver<Transition>) {
        self.elections = elections;
    }

    /// The next input; `deferred`: when a put-off plan is due. In this order when several are
    /// ready: the deferred plan, the tick, then each subscription, elections, results.
    pub(super) async fn next(&mut self, deferred: Option<Instant>) -> Input {
        let due = deferred.unwrap_or_else(Instant::now);
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(due.into()), if deferred.is_some() => Input::Deferred,
            _ = self.tick.tick() => Input::Tick,
            m = self.metrics.recv() => Input::WorkerMetrics(m),
            m = self.replica_events.recv() => Input::ReplicaEvent(m),
            m = self.proxies.recv() => Input::ProxyMetrics(m),
            m = self.drained.recv() => Input::Drained(m),
            m = self.scale.recv() => Input::Scale(m),
            m = self.maintenance.recv() => Input::Maintenance(m),
            m = self.replica_cmd.recv() => Input::Replace(m),
            Some(t) = self.elections.recv() => Input::Election(t),
            m = self.status.recv() => Input::Status(m),
            m = self.sync.recv() => Input::Sync(m),
            Some(ev) = self.results.recv() => Input::CommandResult(ev),
        }
    }

    /// A report or command result already queued, without waiting; requests wait for the loop.
    pub(super) fn queued(&mut self) -> Option<Input> {
        if let Some(m) = self.metrics.try_next() {
            Some(Input::WorkerMetrics(m))
        } else if let Some(m) = self.replica_events.try_next() {
            Some(Input::ReplicaEvent(m))
        } else if let Some(m) = self.proxies.try_next() {
            Some(Input::ProxyMetrics(m))
        } else if let Some(m) = self.drained.try_next() {
            Some(Input::Drained(m))
        } else {
            self.results.try_recv().ok().map(Input::CommandResult)
        }
    }

    /// Resubscribes every subscription that ended, once its backoff has passed.
    pub(super) async fn revive(&mut self, client: &Client) {
        for sub in [
            &mut self.metrics,
            &mut self.replica_events,
            &mut self.proxies,
            &mut self.drained,
            &mut self.scale,
            &mut self.maintenance,
            &mut self.replica_cmd,
            &mut self.status,
            &mut self.sync,
        ] {
            sub.revive(client).await;
        }
    }
}

/// One subscription that comes back after it ends.
struct Sub {
    subject: String,
    sub: Option<Subscriber>,
    backoff: Duration,
    retry_at: Instant,
}

impl Sub {
    async fn new(client: &Client, subject: String) -> Result<Self, async_nats::SubscribeError> {
        let sub = client.subscribe(subject.clone()).await?;
        Ok(Self {
            subject,
            sub: Some(sub),
            backoff: FIRST_BACKOFF,
            retry_at: Instant::now(),
        })
    }

    /// The next message. While the subscription is down this never completes; [`Self::revive`]
    /// brings it back.
    async fn recv(&mut self) -> Message {
        loop {
            let Some(sub) = self.sub.as_mut() else {
                return std::future::pending().await;
            };
            match sub.next().await {
                Some(m) => return m,
                None => self.ended(),
            }
        }
    }

    /// A message already queued, without waiting.
    fn try_next(&mut self) -> Option<Message> {
        let sub = self.sub.as_mut()?;
        match sub.next().now_or_never()? {
            Some(m) => Some(m),
            None => {
                self.ended();
                None
            }
        }
    }

    /// Whether it is subscribed now.
    #[cfg(test)]
    fn is_up(&self) -> bool {
        self.sub.is_some()
    }

    fn ended(&mut self) {
        warn!(subject = %self.subject, retry_in = ?self.backoff, "subscription ended; resubscribing");
        self.sub = None;
        self.retry_at = Instant::now() + self.backoff;
    }

    /// Resubscribes if the subscription is down and its backoff has passed; the backoff doubles
    /// after each failure (up to 5 s) and starts again after a success.
    async fn revive(&mut self, client: &Client) {
        if self.sub.is_some() || Instant::now() < self.retry_at {
            return;
        }
        match client.subscribe(self.subject.clone()).await {
            Ok(sub) => {
                info!(subject = %self.subject, "resubscribed");
                self.sub = Some(sub);
                self.backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.retry_at = Instant::now() + self.backoff;
                warn!(subject = %self.subject, error = %e, retry_in = ?self.backoff, "cannot resubscribe");
            }
        }
    }

    /// Ends the subscription as if the server had (tests).
    #[cfg(test)]
    async fn unsubscribe_for_test(&mut self) {
        if let Some(sub) = self.sub.as_mut() {
            sub.unsubscribe().await.unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ended_subscription_is_noticed_and_comes_back() {
        let nats = acs_testkit::NatsServer::start();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut sub = Sub::new(&client, "t.x".into()).await.unwrap();
        client.publish("t.x", "one".into()).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap();
        assert_eq!(&m.payload[..], b"one");
        assert!(sub.try_next().is_none(), "nothing else queued");

        sub.unsubscribe_for_test().await;
        // The stream ends: noticed, and nothing arrives until it is revived.
        let waited = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await;
        assert!(waited.is_err(), "no message from an ended subscription");
        assert!(!sub.is_up());
        tokio::time::sleep(FIRST_BACKOFF).await;
        sub.revive(&client).await;
        assert!(sub.is_up(), "resubscribed after the backoff");
        client.publish("t.x", "two".into()).await.unwrap();
        client.flush().await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap();
        assert_eq!(&m.payload[..], b"two");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn try_next_takes_only_what_is_queued() {
        let nats = acs_testkit::NatsServer::start();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut sub = Sub::new(&client, "t.y".into()).await.unwrap();
        for i in 0..3 {
            client.publish("t.y", format!("{i}").into()).await.unwrap();
        }
        client.flush().await.unwrap();
        // Let the client's reader hand them to the subscription.
        let first = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap();
        assert_eq!(&first.payload[..], b"0");
        let mut rest = Vec::new();
        for _ in 0..50 {
            while let Some(m) = sub.try_next() {
                rest.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
            if rest.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rest, ["1", "2"]);
        assert!(sub.try_next().is_none());
    }
}
