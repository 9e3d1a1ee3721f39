//! What goes out: a plan's worker events, decisions, backend updates and commands (each command
//! a request whose answer comes back to the loop as an event), and every publish, which never
//! holds the loop up.

use acs_events::{decode, encode, CommandAck};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Brain, PUBLISH_TIMEOUT};
use crate::plan::Plan;
use crate::world::Event;

impl Brain {
    pub(super) async fn send(&self, plan: &Plan, results: &mpsc::UnboundedSender<Event>) {
        for ev in &plan.worker_events {
            info!(worker = %ev.worker, health = ?ev.health, reason = %ev.reason, "worker health");
            self.publish(self.subjects.worker_events(&ev.worker), encode(ev))
                .await;
        }
        for d in &plan.decisions {
            info!(service = %d.service, action = ?d.action, reason = %d.reason, "decision");
            self.publish(self.subjects.decisions(&d.service), encode(d))
                .await;
        }
        for u in &plan.updates {
            debug!(service = %u.service, version = u.version, change = ?u.change, "backends");
            self.publish(self.subjects.backends(&u.service), encode(u))
                .await;
        }
        for c in &plan.commands {
            let client = self.client.clone();
            let subject = self.subjects.worker_command(&c.worker);
            let payload = encode(&c.cmd);
            let timeout = self.command_timeout;
            let (worker, replica, start) = (c.worker.clone(), c.replica.clone(), c.is_start());
            let results = results.clone();
            let prom = self.prom.clone();
            tokio::spawn(async move {
                let result =
                    match tokio::time::timeout(timeout, client.request(subject, payload.into()))
                        .await
                    {
                        Err(_) => Err(format!("no answer from worker {worker} within {timeout:?}")),
                        Ok(Err(e)) => Err(format!("request to worker {worker} failed: {e}")),
                        Ok(Ok(msg)) => decode::<CommandAck>(&msg.payload)
                            .map_err(|e| format!("worker {worker} sent an unreadable ack: {e}")),
                    };
                prom.command_result(start, result.as_ref().map(|ack| ack.ok).map_err(|_| ()));
                match &result {
                    Ok(ack) if ack.ok => debug!(%worker, %replica, start, "command acknowledged"),
                    Ok(ack) => {
                        warn!(%worker, %replica, start, error = ?ack.error, "command refused")
                    }
                    Err(e) => warn!(%worker, %replica, start, error = %e, "command failed"),
                }
                let _ = results.send(Event::CommandResult {
                    worker,
                    replica,
                    start,
                    result,
                });
            });
        }
    }

    /// Publishes without ever holding up the loop: during a NATS outage the client's buffer
    /// fills and a publish would wait; we drop the message instead. Nothing is lost for good:
    /// the loop is level-triggered and republishes snapshots once NATS is back.
    pub(super) async fn publish(&self, subject: String, payload: Vec<u8>) {
        self.prom.published(&subject, payload.len());
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.client.publish(subject.clone(), payload.into()),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(%subject, error = %e, "publish failed"),
            Err(_) => warn!(%subject, "publish dropped: NATS client buffer full (outage?)"),
        }
    }
}
