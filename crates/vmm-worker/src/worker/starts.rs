//! Starts in the background: each command's launch runs in its own task, at most
//! `--max-concurrent-starts` at once (a semaphore), each within `--start-deadline` counted
//! from its arrival (waiting for a slot included). A launch past its deadline is given up: once
//! the runtime calls under way have returned (or as long again, at least 30 s, has passed), what it left is
//! removed ([`Runtime::abandon`]), then it is answered. The loop keeps the start in
//! [`InFlight`](crate::commands::InFlight), where it takes its slot, until the task reports.

use std::sync::Arc;
use std::time::Duration;

use acs_events::{encode, CommandAck};
use tokio::sync::Semaphore;
use tracing::{error, warn};

use super::Worker;
use crate::commands::{Launch, LaunchResult, Starting, Waiter};
use crate::runtime::{Runtime, RuntimeError};

/// How long a start cut short has at least to return, and removing what it left may take.
const CLEANUP: Duration = Duration::from_secs(30);

pub(super) type Launches = tokio::task::JoinSet<(Launch, LaunchResult)>;

impl Worker {
    /// Launches `l` in the background; its answer goes to `reply` when it is done.
    pub(super) fn spawn_launch(&mut self, l: Launch, reply: String) {
        self.in_flight.insert(
            l.replica.clone(),
            Starting {
                id: l.id.clone(),
                service: l.spec.service.clone(),
                reply,
                waiters: vec![],
                stop_after: None,
            },
        );
        let runtime = self.runtime.clone();
        let slots = self.start_slots.clone();
        let deadline = self.config.start_deadline;
        self.launches.spawn(async move {
            let res = launch(runtime, &l, slots, deadline).await;
            (l, res)
        });
    }

    /// A later command waits for the start of the replica in flight.
    pub(super) fn join_launch(&mut self, l: &acs_events::ReplicaId, waiter: Waiter) {
        match self.in_flight.get_mut(l) {
            Some(s) => s.waiters.push(waiter),
            None => {
                let ack = CommandAck::error(Some(waiter.id), "start no longer in flight; retry");
                self.publisher.send(waiter.reply, encode(&ack), false);
            }
        }
    }

    /// A launch task finished: answer everyone waiting, take the replica into the table.
    pub(super) fn on_launch_done(
        &mut self,
        done: Result<(Launch, LaunchResult), tokio::task::JoinError>,
    ) {
        let (l, res) = match done {
            Ok(d) => d,
            Err(e) => return error!(error = %e, "start task failed"),
        };
        let replica = l.replica.clone();
        self.count_launch(&res);
        let Some(starting) = self.in_flight.remove(&l.replica) else {
            return warn!(replica = %l.replica, "a start finished that was not in flight");
        };
        let out = self
            .commands
            .launched(l, res, starting.stop_after, &mut self.replicas);
        self.publisher.send(starting.reply, encode(&out.ack), false);
        for w in starting.waiters {
            let ack = self.commands.joined(&out.ack, w.id, w.duplicate);
            self.publisher.send(w.reply, encode(&ack), false);
        }
        self.apply(out.effects);
        if let Some(exit) = self.early_exits.remove(&replica) {
            self.on_runtime_event(exit);
        }
    }

    fn count_launch(&self, res: &LaunchResult) {
        match res {
            LaunchResult::Started(_) => self.prom.start_done("started"),
            LaunchResult::Failed(_) => {
                self.prom.start_done("failed");
                self.prom.runtime_error("start");
            }
            LaunchResult::TimedOut { cleanup, .. } => {
                self.prom.start_done("timed_out");
                if cleanup.is_err() {
                    self.prom.runtime_error("cleanup");
                }
            }
        }
    }

    /// Shutdown: starts still in flight are given up and what they left removed.
    pub(super) async fn abandon_launches(&mut self) {
        self.launches.abort_all();
        while self.launches.join_next().await.is_some() {}
        let left: Vec<_> = self.in_flight.drain().collect();
        let cleanups = left.iter().map(|(replica, _)| {
            let rt = self.runtime.clone();
            async move { tokio::time::timeout(CLEANUP, rt.abandon(replica)).await }
        });
        futures::future::join_all(cleanups).await;
        for (replica, s) in left {
            let msg = format!(
                "worker {}: shutting down; the start of {replica} was abandoned",
                self.config.worker_id
            );
            let waiters = s.waiters.into_iter().map(|w| (w.reply, w.id));
            for (reply, id) in std::iter::once((s.reply, s.id)).chain(waiters) {
                let ack = CommandAck::error(Some(id), msg.clone());
                self.publisher.send(reply, encode(&ack), false);
            }
        }
    }
}

/// One start: wait for a slot, run it, all within `deadline`. Past it, the runtime's calls
/// already under way are given as long again (at least [`CLEANUP`]) to return (cut off mid-way, the engine could still
/// create a container after the cleanup), then whatever the start left is removed.
async fn launch(
    runtime: Arc<dyn Runtime>,
    l: &Launch,
    slots: Arc<Semaphore>,
    deadline: Duration,
) -> LaunchResult {
    let until = tokio::time::Instant::now() + deadline;
    let timed_out = |cleanup| LaunchResult::TimedOut { deadline, cleanup };
    let Ok(Ok(slot)) = tokio::time::timeout_at(until, slots.acquire_owned()).await else {
        // Nothing began.
        return timed_out(Ok(()));
    };
    let rt = runtime.clone();
    let (replica, spec) = (l.replica.clone(), l.spec.clone());
    let mut run = tokio::spawn(async move {
        let _slot = slot;
        rt.start(&replica, &spec).await
    });
    let failed = |message: String| {
        LaunchResult::Failed(RuntimeError::Start {
            replica: l.replica.clone(),
            message,
        })
    };
    match tokio::time::timeout_at(until, &mut run).await {
        Ok(Ok(Ok(info))) => LaunchResult::Started(info),
        Ok(Ok(Err(e))) => LaunchResult::Failed(e),
        Ok(Err(e)) => failed(format!("the start task failed: {e}")),
        Err(_) => {
            if tokio::time::timeout(deadline.max(CLEANUP), &mut run)
                .await
                .is_err()
            {
                warn!(replica = %l.replica, "the runtime still has not returned; removing what the start left anyway");
                run.abort();
            }
            let cleanup = match tokio::time::timeout(CLEANUP, runtime.abandon(&l.replica)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", CLEANUP.as_secs())),
            };
            timed_out(cleanup)
        }
    }
}
