//! Helpers shared by the integration tests: a worker run in-process, a NATS client that sends
//! commands and watches events and metrics, plain HTTP GETs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use acs_events::{CommandAck, ReplicaEvent, ReplicaState, Subjects, WorkerId, WorkerMetrics};
use acs_testkit::NatsServer;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vmm_worker::runtime::process::{read_record, signal_group};
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

    pub async fn event_where(
        &mut self,
        what: &str,
        f: impl Fn(&ReplicaEvent) -> bool,
    ) -> ReplicaEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("no replica event: {what}"))
                .unwrap();
            let ev: ReplicaEvent = acs_events::decode(&msg.payload).expect("valid replica event");
            if f(&ev) {
                return ev;
            }
        }
    }

    pub async fn metrics_where(
        &mut self,
        what: &str,
        f: impl Fn(&WorkerMetrics) -> bool,
    ) -> WorkerMetrics {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.metrics.next())
                .await
                .unwrap_or_else(|_| panic!("no metrics: {what}"))
                .unwrap();
            let m: WorkerMetrics = acs_events::decode(&msg.payload).expect("valid worker metrics");
            if f(&m) {
                return m;
            }
        }
    }
}

pub fn is(ev: &ReplicaEvent, replica: &str, state: ReplicaState) -> bool {
    ev.replica.id.as_str() == replica && ev.replica.state == state
}

/// `GET path` on `addr`; (status, body).
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

pub async fn whoami(addr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, "/whoami").await.expect("replica answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
