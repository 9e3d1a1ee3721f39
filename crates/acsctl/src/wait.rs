//! `--wait` for `drain` and `replace`: the brain is polled until the work is done; the wait
//! fails with a clear error when the brain publishes a `blocked` decision that names what we
//! wait for, or when the deadline (`--timeout`) passes.

use std::future::Future;
use std::time::Duration;

use acs_events::{
    decode, Decision, DecisionAction, ServiceName, StatusReply, StatusRequest, Subjects, WorkerId,
    WorkerStatus,
};
use async_nats::{Client, Subscriber};
use futures::StreamExt;
use tokio::time::Instant;

use crate::client;
use crate::error::{Error, Result};
use crate::output::{print_json, Format};

/// How long `--wait` waits when `--timeout` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

pub struct Waiter {
    deadline: Instant,
    limit: Duration,
    /// Every decision of every service: a `blocked` one may name what we wait for.
    decisions: Subscriber,
    /// The text a `blocked` decision's reason holds when it is about us.
    needle: String,
    /// What we wait for, in words, for the errors.
    what: String,
}

impl Waiter {
    /// Subscribes to the decisions first, so a `blocked` published right after the request
    /// is seen.
    pub async fn start(
        nc: &Client,
        subjects: &Subjects,
        limit: Duration,
        needle: String,
        what: String,
    ) -> Result<Self> {
        let subject = subjects.decisions_all();
        let decisions = nc
            .subscribe(subject.clone())
            .await
            .map_err(|e| Error::Subscribe {
                subject,
                reason: e.to_string(),
            })?;
        // The subscription must reach the server before the request that may block.
        nc.flush().await.map_err(|e| Error::Request {
            subject: "flush".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            deadline: Instant::now() + limit,
            limit,
            decisions,
            needle,
            what,
        })
    }

    /// Runs `fut` (a status request), failing early when blocked or out of time.
    pub async fn within<T>(&mut self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                m = self.decisions.next() => self.check(m.as_ref().map(|m| &m.payload[..]))?,
                _ = tokio::time::sleep_until(self.deadline) => return Err(self.timed_out()),
            }
        }
    }

    /// Sleeps `every` between polls, failing early when blocked or out of time.
    pub async fn pause(&mut self, every: Duration) -> Result<()> {
        self.within(async {
            tokio::time::sleep(every).await;
            Ok(())
        })
        .await
    }

    fn check(&self, payload: Option<&[u8]>) -> Result<()> {
        let Some(payload) = payload else {
            return Err(Error::Failed(format!(
                "lost the decisions subscription while waiting for {}",
                self.what
            )));
        };
        // Undecodable decisions are not ours to judge here: `acsctl watch` shows them.
        match decode::<Decision>(payload) {
            Ok(d) if blocks(&d, &self.needle) => Err(Error::Failed(format!(
                "{} is blocked: {} (service {}); the wait gives up",
                self.what, d.reason, d.service
            ))),
            _ => Ok(()),
        }
    }

    fn timed_out(&self) -> Error {
        Error::Failed(format!(
            "{} not done after {} (--timeout); it goes on in the brain, `acsctl status` shows where it stands",
            self.what,
            humantime::format_duration(self.limit)
        ))
    }
}

/// Says what the brain answered: its note (tables), or the reply itself (`-o json`) when no
/// wait follows (a wait prints one document at its end). Returns the waiter, if any.
pub fn announce(
    note: Option<&str>,
    reply: &impl serde::Serialize,
    format: Format,
    waiter: Option<Waiter>,
) -> Option<Waiter> {
    match (format, &waiter) {
        (Format::Json, None) => print_json(reply),
        (Format::Json, Some(_)) => {}
        _ => println!("{}", note.unwrap_or("ok")),
    }
    waiter
}

/// A `blocked` decision whose reason names `needle`.
pub fn blocks(d: &Decision, needle: &str) -> bool {
    matches!(d.action, DecisionAction::Blocked) && d.reason.contains(needle)
}

/// The worker's own row, from the workers pages: the page it was last found on first
/// (`hint`), then every page from the start. Works whatever the cluster's size, where the
/// whole status is only a summary. `None`: the brain does not know the worker.
pub async fn find_worker(
    nc: &Client,
    subjects: &Subjects,
    worker: &WorkerId,
    timeout: Duration,
    hint: &mut Option<u32>,
) -> Result<Option<WorkerStatus>> {
    let page = |offset| StatusRequest {
        workers: true,
        offset,
        ..Default::default()
    };
    if let Some(offset) = *hint {
        let s = client::status_page(nc, subjects, &page(offset), timeout).await?;
        if let Some(w) = s.workers.into_iter().find(|w| &w.id == worker) {
            return Ok(Some(w));
        }
    }
    let mut offset = 0;
    loop {
        let s = client::status_page(nc, subjects, &page(offset), timeout).await?;
        let next = s.page.as_ref().and_then(|p| p.next);
        if let Some(w) = s.workers.into_iter().find(|w| &w.id == worker) {
            *hint = Some(offset);
            return Ok(Some(w));
        }
        match next {
            Some(n) if n > offset => offset = n,
            _ => return Ok(None),
        }
    }
}

/// The replica's state, from its service's pages (or the whole status when the service is
/// not known). `None`: the replica is gone.
pub async fn find_replica(
    nc: &Client,
    subjects: &Subjects,
    service: Option<&ServiceName>,
    replica: &str,
    timeout: Duration,
) -> Result<Option<acs_events::ReplicaInfo>> {
    let mut offset = 0;
    loop {
        let req = StatusRequest {
            service: service.cloned(),
            offset,
            ..Default::default()
        };
        let s: StatusReply = client::status_page(nc, subjects, &req, timeout).await?;
        let next = s.page.as_ref().and_then(|p| p.next);
        let summary = matches!(&s.page, Some(p) if p.detail == acs_events::StatusDetail::Summary);
        if service.is_none() && summary {
            return Err(Error::Failed(format!(
                "cannot follow {replica}: the brain's status is a summary and its reply named no service to page through"
            )));
        }
        let found = s
            .services
            .into_iter()
            .flat_map(|s| s.replicas)
            .find(|r| r.id.as_str() == replica);
        if found.is_some() {
            return Ok(found);
        }
        match next {
            Some(n) if n > offset && service.is_some() => offset = n,
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(action: &str, reason: &str) -> Decision {
        serde_json::from_value(serde_json::json!({
            "service": "web", "ts_ms": 1, "action": action, "reason": reason
        }))
        .unwrap()
    }

    #[test]
    fn only_a_blocked_decision_naming_us_blocks() {
        let reason = "cannot move web-1 off draining worker w2: no other worker can take it";
        assert!(blocks(&decision("blocked", reason), "draining worker w2:"));
        assert!(!blocks(&decision("blocked", reason), "draining worker w1:"));
        assert!(!blocks(
            &decision("blocked", "no capacity"),
            "draining worker w2:"
        ));
        let scale: Decision = serde_json::from_value(serde_json::json!({
            "service": "web", "ts_ms": 1, "action": "scale", "from": 1, "to": 2,
            "manual": false, "reason": reason
        }))
        .unwrap();
        assert!(!blocks(&scale, "draining worker w2:"));
    }
}
