//! Helpers shared by the integration tests: a worker run in-process, a NATS client that sends
//! commands and watches events and metrics; plain HTTP GETs and polling come from acs-testkit.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acs_events::codec::Versioned;
use acs_events::{
    CommandAck, ReplicaEvent, ReplicaState, Subjects, Validate, WorkerId, WorkerMetrics,
};
pub use acs_testkit::http::get as http_get;
use acs_testkit::NatsServer;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vmm_worker::runtime::process::{read_record, signal_group};
use vmm_worker::runtime::Runtime;
use vmm_worker::Config;

pub const WAIT: Duration = Duration::from_secs(30);

/// A state dir that is removed, and whose replicas are killed, on drop (also when a test fails).
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "vmm-worker-it-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn pids(&self) -> Vec<u32> {
        let Ok(rd) = std::fs::read_dir(self.0.join("replicas")) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| read_record(&e.path()).ok())
            .map(|r| r.pid)
            .collect()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        for pid in self.pids() {
            signal_group(pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Worker {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), vmm_worker::Error>>,
}

impl Worker {
    pub fn spawn(config: Config) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(vmm_worker::run(config, async move {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            task,
        }
    }

    /// A worker with a given runtime (the fake).
    pub fn spawn_with(config: Config, runtime: Arc<dyn Runtime>) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(vmm_worker::run_with_runtime(config, runtime, shutdown));
        Self {
            stop: Some(tx),
            task,
        }
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let res = tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("worker stops in time");
        res.expect("worker task").expect("worker ran without error");
    }
}

pub struct Bus {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub worker: WorkerId,
    events: async_nats::Subscriber,
    metrics: async_nats::Subscriber,
}

impl Bus {
    pub async fn connect(nats: &NatsServer, worker: &str) -> Self {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(nats.url())
            .await
            .unwrap();
        let subjects = Subjects::default();
        let w = WorkerId::new(worker).unwrap();
        let events = client.subscribe(subjects.replica_events(&w)).await.unwrap();
        let metrics = client.subscribe(subjects.worker_metrics(&w)).await.unwrap();
        client.flush().await.unwrap();
        Self {
            client,
            subjects,
            worker: w,
            events,
            metrics,
        }
    }

    pub async fn raw_request(&self, payload: Vec<u8>) -> CommandAck {
        let subject = self.subjects.worker_command(&self.worker);
        let deadline = Instant::now() + WAIT;
        loop {
            // The worker may not be subscribed yet right after it starts: retry on "no responders".
            match tokio::time::timeout(
                Duration::from_secs(10),
                self.client.request(subject.clone(), payload.clone().into()),
            )
            .await
            {
                Ok(Ok(msg)) => {
                    return serde_json::from_slice(&msg.payload).expect("ack is a CommandAck")
                }
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "no answer to the command: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    pub async fn request(&self, cmd: serde_json::Value) -> CommandAck {
        self.raw_request(serde_json::to_vec(&cmd).unwrap()).await
    }

    /// A subscription to the worker's rejections, ready before this returns.
    pub async fn watch_rejections(&self) -> async_nats::Subscriber {
        let sub = self
            .client
            .subscribe(self.subjects.rejections("vmm-worker"))
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        sub
    }

    /// Sends `cmd` from a task of its own, so the test can watch the bus meanwhile. The worker
    /// must be subscribed already (it is once it has sent a heartbeat).
    pub fn request_later(&self, cmd: serde_json::Value) -> JoinHandle<CommandAck> {
        let client = self.client.clone();
        let subject = self.subjects.worker_command(&self.worker);
        tokio::spawn(async move {
            let payload = serde_json::to_vec(&cmd).unwrap();
            let msg = tokio::time::timeout(WAIT, client.request(subject, payload.into()))
                .await
                .expect("an answer in time")
                .expect("an answer");
            serde_json::from_slice(&msg.payload).expect("ack is a CommandAck")
        })
    }

    /// Sends `start` (a start command) and waits until its replica is healthy; its address.
    pub async fn start_healthy(&mut self, start: serde_json::Value) -> String {
        let replica = start["replica"]
            .as_str()
            .expect("a start command names its replica")
            .to_string();
        let ack = self.request(start).await;
        assert!(ack.ok, "{ack:?}");
        let addr = ack.replica.expect("status in the ack").addr;
        self.event_where(&format!("{replica} healthy"), |e| {
            is(e, &replica, ReplicaState::Healthy)
        })
        .await;
        addr
    }

    pub async fn event_where(
        &mut self,
        what: &str,
        f: impl Fn(&ReplicaEvent) -> bool,
    ) -> ReplicaEvent {
        next_where(&mut self.events, "replica event", what, f).await
    }

    pub async fn metrics_where(
        &mut self,
        what: &str,
        f: impl Fn(&WorkerMetrics) -> bool,
    ) -> WorkerMetrics {
        next_where(&mut self.metrics, "metrics", what, f).await
    }
}

/// The next message on `sub` that decodes as `T` and satisfies `f`; panics `no <kind>: <what>`
/// when none comes within [`WAIT`].
async fn next_where<T>(
    sub: &mut async_nats::Subscriber,
    kind: &str,
    what: &str,
    f: impl Fn(&T) -> bool,
) -> T
where
    T: DeserializeOwned + Validate + Versioned,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind}: {what}"))
            .unwrap();
        let m: T =
            acs_events::decode(&msg.payload).unwrap_or_else(|e| panic!("invalid {kind}: {e}"));
        if f(&m) {
            return m;
        }
    }
}

/// The next rejection on `sub` (from [`Bus::watch_rejections`]).
pub async fn next_rejection(sub: &mut async_nats::Subscriber) -> acs_events::Rejection {
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a rejection")
        .unwrap();
    acs_events::decode(&msg.payload).expect("a valid rejection")
}

pub fn is(ev: &ReplicaEvent, replica: &str, state: ReplicaState) -> bool {
    ev.replica.id.as_str() == replica && ev.replica.state == state
}

pub async fn whoami(addr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, "/whoami").await.expect("replica answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the synchronous `f` until it holds; panics after [`WAIT`].
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    acs_testkit::poll::until(what, WAIT, || std::future::ready(f())).await
}
