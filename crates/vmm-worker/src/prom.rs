//! The worker's Prometheus metrics (`GET /metrics`, served by `acs_node::metrics`).
//!
//! Read at scrape time from the table snapshot the loop already shares with the heartbeat:
//! `acs_worker_replicas{state}`, `acs_worker_starts_in_flight`, `acs_worker_max_replicas`,
//! `acs_worker_rejected_messages_total`. Counted by the loop as things happen (a few per
//! command, never per request): `acs_worker_commands_total{result}`,
//! `acs_worker_starts_total{result}`, `acs_worker_runtime_errors_total{runtime,op}`. Plus
//! `acs_worker_info{worker,instance,runtime}`.

use std::sync::Arc;

use acs_events::{ReplicaState, RuntimeKind};
use acs_node::metrics::{counter, gauge, prometheus_client};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];
type RuntimeLabels = [(&'static str, &'static str); 2];

/// Every replica state, so each scrape lists all of them (zeros included).
const STATES: [(ReplicaState, &str); 5] = [
    (ReplicaState::Starting, "starting"),
    (ReplicaState::Healthy, "healthy"),
    (ReplicaState::Unhealthy, "unhealthy"),
    (ReplicaState::Stopping, "stopping"),
    (ReplicaState::Exited, "exited"),
];

/// What a command came to.
#[derive(Debug, Clone, Copy)]
pub enum CommandResult {
    /// Answered ok at once (a stop, a duplicate of an answered start).
    Ok,
    /// A start handed to the runtime (its answer follows when it is done).
    Launched,
    /// Joined a start of the same replica already in flight.
    Joined,
    /// Refused by policy, capacity, staleness or fencing.
    Refused,
    /// Malformed, or sent without a reply subject.
    Rejected,
    /// Answered with another error.
    Error,
}

impl CommandResult {
    fn label(self) -> &'static str {
        match self {
            CommandResult::Ok => "ok",
            CommandResult::Launched => "launched",
            CommandResult::Joined => "joined",
            CommandResult::Refused => "refused",
            CommandResult::Rejected => "rejected",
            CommandResult::Error => "error",
        }
    }
}

/// The counters the loop bumps; cheap to clone (the metrics are shared handles).
#[derive(Debug, Clone)]
pub struct WorkerProm {
    runtime: &'static str,
    commands: Family<Labels, Counter>,
    starts: Family<Labels, Counter>,
    runtime_errors: Family<RuntimeLabels, Counter>,
}

impl WorkerProm {
    pub fn new(runtime: RuntimeKind) -> Self {
        Self {
            runtime: runtime_label(runtime),
            commands: Family::default(),
            starts: Family::default(),
            runtime_errors: Family::default(),
        }
    }

    pub fn command(&self, result: CommandResult) {
        self.commands
            .get_or_create(&[("result", result.label())])
            .inc();
    }

    /// A start finished: `started`, `failed` or `timed_out`.
    pub fn start_done(&self, result: &'static str) {
        self.starts.get_or_create(&[("result", result)]).inc();
    }

    /// The runtime (Docker engine or process spawner) failed at `op` (`start`, `stop`, `cleanup`).
    pub fn runtime_error(&self, op: &'static str) {
        self.runtime_errors
            .get_or_create(&[("runtime", self.runtime), ("op", op)])
            .inc();
    }

    /// A registry with these metrics, the `info` labels and a collector that reads `table` on
    /// every scrape.
    pub fn registry(
        &self,
        worker: &str,
        instance: &str,
        table: impl Fn() -> TableView + Send + Sync + 'static,
    ) -> Registry {
        let mut r = Registry::default();
        // The encoder appends `_info`: acs_worker_info.
        r.register(
            "acs_worker",
            "This worker process: its id, instance and runtime",
            Info::new(vec![
                ("worker", worker.to_string()),
                ("instance", instance.to_string()),
                ("runtime", self.runtime.to_string()),
            ]),
        );
        // Every label value exists from the start, so a rate() has a zero to begin from.
        for result in ["ok", "launched", "joined", "refused", "rejected", "error"] {
            let _ = self.commands.get_or_create(&[("result", result)]);
        }
        for result in ["started", "failed", "timed_out"] {
            let _ = self.starts.get_or_create(&[("result", result)]);
        }
        for op in ["start", "stop", "cleanup"] {
            let _ = self
                .runtime_errors
                .get_or_create(&[("runtime", self.runtime), ("op", op)]);
        }
        r.register(
            "acs_worker_commands",
            "Commands received on acs.cmd.worker.<id>, by what they came to",
            self.commands.clone(),
        );
        r.register(
            "acs_worker_starts",
            "Replica starts finished, by result",
            self.starts.clone(),
        );
        r.register(
            "acs_worker_runtime_errors",
            "Runtime calls that failed (Docker engine or process spawner), by operation",
            self.runtime_errors.clone(),
        );
        r.register_collector(Box::new(TableCollector(Arc::new(table))));
        r
    }
}

fn runtime_label(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Process => "process",
        RuntimeKind::Docker => "docker",
    }
}

/// The replica table as a scrape sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableView {
    pub states: Vec<ReplicaState>,
    pub starting: u64,
    pub max_replicas: u64,
    pub rejected: u64,
}

struct TableCollector(Arc<dyn Fn() -> TableView + Send + Sync>);

impl std::fmt::Debug for TableCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableCollector")
    }
}

impl Collector for TableCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = (self.0)();
        let mut fam = encoder.encode_descriptor(
            "acs_worker_replicas",
            "Replicas in this worker's table, by state (starts in flight not included)",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (state, label) in STATES {
            let n = t.states.iter().filter(|s| **s == state).count() as i64;
            ConstGauge::new(n).encode(fam.encode_family(&[("state", label)])?)?;
        }
        let gauges = [
            (
                "acs_worker_starts_in_flight",
                "Starts handed to the runtime and not finished",
                t.starting,
            ),
            (
                "acs_worker_max_replicas",
                "Most replicas this worker runs at once (--max-replicas)",
                t.max_replicas,
            ),
        ];
        for (name, help, v) in gauges {
            gauge(&mut encoder, name, help, v as i64)?;
        }
        counter(
            &mut encoder,
            "acs_worker_rejected_messages",
            "Messages this worker refused (malformed, stale, unauthorised by policy)",
            t.rejected,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn counts_and_the_table_come_out_with_conventional_names() {
        let p = WorkerProm::new(RuntimeKind::Docker);
        let r = p.registry("w1", "abc", || TableView {
            states: vec![
                ReplicaState::Healthy,
                ReplicaState::Healthy,
                ReplicaState::Starting,
            ],
            starting: 1,
            max_replicas: 4,
            rejected: 3,
        });
        p.command(CommandResult::Launched);
        p.command(CommandResult::Refused);
        p.command(CommandResult::Refused);
        p.start_done("failed");
        p.runtime_error("start");
        let s = text(&r);
        for line in [
            "acs_worker_info{worker=\"w1\",instance=\"abc\",runtime=\"docker\"} 1",
            "acs_worker_commands_total{result=\"refused\"} 2",
            "acs_worker_commands_total{result=\"launched\"} 1",
            "acs_worker_commands_total{result=\"ok\"} 0",
            "acs_worker_starts_total{result=\"failed\"} 1",
            "acs_worker_runtime_errors_total{runtime=\"docker\",op=\"start\"} 1",
            "acs_worker_runtime_errors_total{runtime=\"docker\",op=\"stop\"} 0",
            "acs_worker_replicas{state=\"healthy\"} 2",
            "acs_worker_replicas{state=\"starting\"} 1",
            "acs_worker_replicas{state=\"exited\"} 0",
            "acs_worker_starts_in_flight 1",
            "acs_worker_max_replicas 4",
            "acs_worker_rejected_messages_total 3",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(s.contains("# TYPE acs_worker_replicas gauge"), "{s}");
        assert!(
            s.contains("# TYPE acs_worker_commands_total counter"),
            "{s}"
        );
    }
}
