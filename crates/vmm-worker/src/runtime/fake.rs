//! A runtime that runs nothing and records every call, for unit tests of the command logic.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use acs_events::{ReplicaId, ReplicaSpec, RuntimeKind};
use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Result, RunningReplica, Runtime, RuntimeError, RuntimeEvent};

#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Start {
        replica: ReplicaId,
        spec: ReplicaSpec,
    },
    Stop {
        replica: ReplicaId,
        grace: Duration,
    },
    Adopt,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    running: BTreeMap<ReplicaId, RunningReplica>,
    /// Returned by the next `adopt`.
    leftovers: Vec<RunningReplica>,
    fail_next_start: Option<String>,
    next_port: u16,
    /// Every `start` takes this long before it does anything.
    start_delay: Duration,
    /// Starts under way now, and the most there ever were at once.
    active_starts: usize,
    peak_starts: usize,
    /// `ping` answers false: an engine that stopped answering.
    silent: bool,
}

/// Counts a start as under way until dropped (also when its future is dropped mid-way).
struct Active<'a>(&'a Mutex<State>);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.active_starts -= 1;
    }
}

pub struct FakeRuntime {
    state: Mutex<State>,
    events_tx: mpsc::UnboundedSender<RuntimeEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<RuntimeEvent>>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            state: Mutex::new(State {
                next_port: 20000,
                ..State::default()
            }),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
        }
    }

    /// Everything the worker asked for, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn starts(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Start { .. }))
            .count()
    }

    pub fn stops(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Stop { .. }))
            .count()
    }

    /// The next `start` fails with `message`.
    pub fn fail_next_start(&self, message: &str) {
        self.state.lock().unwrap().fail_next_start = Some(message.to_string());
    }

    /// Every later `start` waits `delay` (a slow engine) before it records and does anything.
    /// Whether `ping` goes unanswered from now on.
    pub fn set_silent(&self, silent: bool) {
        self.state.lock().unwrap().silent = silent;
    }

    pub fn set_start_delay(&self, delay: Duration) {
        self.state.lock().unwrap().start_delay = delay;
    }

    /// The most starts that were under way at the same time.
    pub fn peak_concurrent_starts(&self) -> usize {
        self.state.lock().unwrap().peak_starts
    }

    /// Replicas it runs now.
    pub fn running(&self) -> Vec<ReplicaId> {
        self.state.lock().unwrap().running.keys().cloned().collect()
    }

    /// Replicas the next `adopt` reports as already running.
    pub fn leave_running(&self, replicas: Vec<RunningReplica>) {
        self.state.lock().unwrap().leftovers = replicas;
    }

    /// Simulates a crash: forgets the replica and reports the exit.
    pub fn exit(&self, replica: &ReplicaId, code: i32) {
        self.state.lock().unwrap().running.remove(replica);
        let _ = self.events_tx.send(RuntimeEvent::Exited {
            replica: replica.clone(),
            code: Some(code),
            reason: format!("exited with status {code}"),
        });
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    async fn ping(&self) -> bool {
        !self.state.lock().unwrap().silent
    }

    async fn start(&self, replica: &ReplicaId, spec: &ReplicaSpec) -> Result<RunningReplica> {
        let delay = {
            let mut st = self.state.lock().unwrap();
            st.active_starts += 1;
            st.peak_starts = st.peak_starts.max(st.active_starts);
            st.start_delay
        };
        let _active = Active(&self.state);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.state.lock().unwrap();
        st.calls.push(Call::Start {
            replica: replica.clone(),
            spec: spec.clone(),
        });
        if let Some(message) = st.fail_next_start.take() {
            return Err(RuntimeError::Start {
                replica: replica.clone(),
                message,
            });
        }
        st.next_port += 1;
        let port = st.next_port;
        let r = RunningReplica {
            id: replica.clone(),
            service: spec.service.clone(),
            addr: format!("127.0.0.1:{port}"),
            health_addr: format!("127.0.0.1:{port}"),
            health_path: spec.health_path.clone(),
            pid: None,
            container_id: None,
            started_ms: 1,
            adopted: false,
        };
        st.running.insert(replica.clone(), r.clone());
        Ok(r)
    }

    async fn stop(&self, replica: &ReplicaId, grace: Duration) -> Result<()> {
        let was_running = {
            let mut st = self.state.lock().unwrap();
            st.calls.push(Call::Stop {
                replica: replica.clone(),
                grace,
            });
            st.running.remove(replica).is_some()
        };
        if was_running {
            let _ = self.events_tx.send(RuntimeEvent::Exited {
                replica: replica.clone(),
                code: Some(0),
                reason: "stopped".into(),
            });
        }
        Ok(())
    }

    async fn adopt(&self) -> Result<Vec<RunningReplica>> {
        let mut st = self.state.lock().unwrap();
        st.calls.push(Call::Adopt);
        let left = std::mem::take(&mut st.leftovers);
        for r in &left {
            st.running.insert(r.id.clone(), r.clone());
        }
        Ok(left)
    }

    async fn list(&self) -> Vec<RunningReplica> {
        self.state
            .lock()
            .unwrap()
            .running
            .values()
            .cloned()
            .collect()
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<RuntimeEvent>> {
        self.events_rx.lock().unwrap().take()
    }
}
