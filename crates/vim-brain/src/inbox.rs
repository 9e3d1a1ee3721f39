//! The brain's subscriptions, each one kept alive: if its stream ends (the client dropped it,
//! the server closed it), the loop logs it and resubscribes with backoff, instead of silently
//! no longer receiving that subject. [`Sub::try_next`] takes what is already queued without
//! waiting, so the loop can fold queued events in before it plans.

use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use futures::{FutureExt, StreamExt};
use tracing::{info, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One subscription that comes back after it ends.
pub(crate) struct Sub {
    subject: String,
    sub: Option<Subscriber>,
    backoff: Duration,
    retry_at: Instant,
}

impl Sub {
    pub(crate) async fn new(
        client: &Client,
        subject: String,
    ) -> Result<Self, async_nats::SubscribeError> {
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
    pub(crate) async fn recv(&mut self) -> Message {
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
    pub(crate) fn try_next(&mut self) -> Option<Message> {
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
    pub(crate) async fn revive(&mut self, client: &Client) {
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
