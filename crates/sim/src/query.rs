//! `acs-sim query`: open-loop stats queries on `acs.monitor.stats` for random workers, replicas,
//! metrics and windows of the simulated fleet, with latency percentiles, errors, and how fresh
//! the newest sample the monitor answers is.
//!
//! Open loop: request `k` leaves at `k / rate` whatever the earlier ones are doing, so a slow
//! monitor shows as latency, not as a lower send rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acs_events::{
    decode, encode, ServiceName, StatsReply, StatsRequest, StatsScope, Subjects, SCHEMA_VERSION,
};
use rand::Rng;
use serde_json::json;
use tokio::task::JoinSet;

use crate::fleet::{replica_id, worker_id};
use crate::publish::wall_ms;
use crate::schedule::Schedule;
use crate::stats::{ms, Samples};

/// The metrics the monitor answers per scope (crates/monitor/src/store.rs).
pub const WORKER_METRICS: &[&str] = &[
    "cpu",
    "memory",
    "net_rx",
    "net_tx",
    "disk_read",
    "disk_write",
    "disk_used",
    "replicas",
];
pub const REPLICA_METRICS: &[&str] = &["cpu", "memory"];
/// Windows a query asks for, from the last 10 s to the last hour.
pub const WINDOWS_MS: &[u64] = &[10_000, 60_000, 300_000, 900_000, 3_600_000];
/// Every `PROBE_EVERY`-th request asks a worker's CPU over the last 5 s at 1 s steps; its newest
/// point tells how fresh the monitor's data is.
pub const PROBE_EVERY: u64 = 10;

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub rate: f64,
    pub duration: Duration,
    pub timeout: Duration,
    pub workers: usize,
    pub replicas: usize,
    pub services: Vec<ServiceName>,
    pub subjects: Subjects,
}

/// A random query about the simulated fleet; `probe` asks for the freshness probe instead.
pub fn random_request(rng: &mut impl Rng, cfg: &QueryConfig, probe: bool) -> StatsRequest {
    let w = worker_id(rng.random_range(0..cfg.workers.max(1)));
    let mut req = StatsRequest {
        v: SCHEMA_VERSION,
        scope: StatsScope::Worker,
        id: w.clone(),
        metric: "cpu".into(),
        from_ms: None,
        to_ms: None,
        last_ms: Some(5_000),
        step_ms: Some(1_000),
    };
    if probe {
        return req;
    }
    if cfg.replicas > 0 && !cfg.services.is_empty() && rng.random_bool(0.3) {
        let j = rng.random_range(0..cfg.replicas);
        req.scope = StatsScope::Replica;
        req.id = replica_id(&w, cfg.services[j % cfg.services.len()].as_str(), j);
        req.metric = REPLICA_METRICS[rng.random_range(0..REPLICA_METRICS.len())].into();
    } else {
        req.metric = WORKER_METRICS[rng.random_range(0..WORKER_METRICS.len())].into();
    }
    let window = WINDOWS_MS[rng.random_range(0..WINDOWS_MS.len())];
    req.last_ms = Some(window);
    // Half the queries want a series of about 60 points, the others only the summary.
    req.step_ms = rng.random_bool(0.5).then(|| (window / 60).max(1_000));
    req
}

/// What one request came back with.
#[derive(Debug)]
enum Outcome {
    Answered {
        latency: Duration,
        reply: StatsReply,
        probe: bool,
        received_ms: u64,
    },
    Failed {
        latency: Duration,
        error: String,
    },
}

#[derive(Debug, Default)]
pub struct QueryReport {
    pub sent: u64,
    pub answered: u64,
    /// Replies with `ok: false`, timeouts, no responders, undecodable replies.
    pub errors: u64,
    /// Error messages by count, the first ones seen.
    pub error_kinds: BTreeMap<String, u64>,
    pub latency: Samples,
    /// Age of the newest 1 s point in probe replies: wall clock at receipt minus the start of
    /// that point's bucket. With no ingestion lag this is up to one interval plus one bucket.
    pub age: Samples,
    pub elapsed: Duration,
}

impl QueryReport {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        // Ids differ from query to query; the kind of error is what matters.
        let kind: String = error
            .split('"')
            .next()
            .unwrap_or(&error)
            .chars()
            .take(80)
            .collect();
        if self.error_kinds.len() < 20 || self.error_kinds.contains_key(&kind) {
            *self.error_kinds.entry(kind).or_default() += 1;
        }
    }

    fn record(&mut self, o: Outcome) {
        match o {
            Outcome::Answered {
                latency,
                reply,
                probe,
                received_ms,
            } => {
                self.latency.push(latency);
                if !reply.ok {
                    self.fail(reply.error.unwrap_or_default());
                    return;
                }
                self.answered += 1;
                if probe {
                    if let Some(p) = reply.series.last() {
                        self.age
                            .push(Duration::from_millis(received_ms.saturating_sub(p.ts_ms)));
                    }
                }
            }
            Outcome::Failed { latency, error } => {
                self.latency.push(latency);
                self.fail(error);
            }
        }
    }

    pub fn text(&self) -> String {
        let f = |d: Option<Duration>| ms(d).map_or("-".to_string(), |x| format!("{x:.2}"));
        let mut s = format!(
            "query: sent={} in {:.1}s ({:.1}/s) answered={} errors={}\n\
             query latency ms: p50={} p99={} max={}\n\
             newest sample age ms ({} probes): p50={} max={}",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.answered,
            self.errors,
            f(self.latency.percentile(0.5)),
            f(self.latency.percentile(0.99)),
            f(self.latency.max()),
            self.age.len(),
            f(self.age.percentile(0.5)),
            f(self.age.max()),
        );
        for (kind, n) in &self.error_kinds {
            s.push_str(&format!("\n  error x{n}: {kind}"));
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "sent": self.sent,
            "answered": self.answered,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "p50_ms": ms(self.latency.percentile(0.5)),
            "p99_ms": ms(self.latency.percentile(0.99)),
            "max_ms": ms(self.latency.max()),
            "probes": self.age.len(),
            "age_p50_ms": ms(self.age.percentile(0.5)),
            "age_max_ms": ms(self.age.max()),
            "error_kinds": self.error_kinds,
        })
    }
}

/// Sends `rate` queries a second for `duration`, then waits for the last answers (each at most
/// `timeout`).
pub async fn run(client: &async_nats::Client, cfg: &QueryConfig) -> anyhow::Result<QueryReport> {
    anyhow::ensure!(
        cfg.rate > 0.0 && cfg.rate.is_finite(),
        "--rate must be a positive number"
    );
    anyhow::ensure!(cfg.workers > 0, "--workers must be at least 1");
    // The wheel with one sender and a 1/rate interval: request k is due at k / rate.
    let schedule = Schedule::new(1, Duration::from_secs_f64(1.0 / cfg.rate))?;
    let subject = cfg.subjects.monitor_stats();
    let mut rng = rand::rng();
    let mut report = QueryReport::default();
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    let start = Instant::now();
    let mut k = 0u64;
    while schedule.due(k) < cfg.duration {
        tokio::select! {
            _ = tokio::time::sleep_until((start + schedule.due(k)).into()) => {
                let probe = k.is_multiple_of(PROBE_EVERY);
                let req = random_request(&mut rng, cfg, probe);
                let (client, subject, timeout) = (client.clone(), subject.clone(), cfg.timeout);
                inflight.spawn(async move { ask(&client, subject, &req, probe, timeout).await });
                report.sent += 1;
                k += 1;
            }
            Some(done) = inflight.join_next() => record_joined(&mut report, done),
        }
    }
    while let Some(done) = inflight.join_next().await {
        record_joined(&mut report, done);
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

fn record_joined(report: &mut QueryReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(o) => report.record(o),
        Err(e) => report.fail(format!("query task failed: {e}")),
    }
}

async fn ask(
    client: &async_nats::Client,
    subject: String,
    req: &StatsRequest,
    probe: bool,
    timeout: Duration,
) -> Outcome {
    let t0 = Instant::now();
    let res = tokio::time::timeout(timeout, client.request(subject, encode(req).into())).await;
    let latency = t0.elapsed();
    match res {
        Err(_) => Outcome::Failed {
            latency,
            error: format!("timeout after {timeout:?}"),
        },
        Ok(Err(e)) => Outcome::Failed {
            latency,
            error: format!("request failed: {e}"),
        },
        Ok(Ok(msg)) => match decode::<StatsReply>(&msg.payload) {
            Ok(reply) => Outcome::Answered {
                latency,
                reply,
                probe,
                received_ms: wall_ms(),
            },
            Err(e) => Outcome::Failed {
                latency,
                error: format!("undecodable reply: {e}"),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cfg() -> QueryConfig {
        QueryConfig {
            rate: 50.0,
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            workers: 100,
            replicas: 4,
            services: vec![
                ServiceName::new("web").unwrap(),
                ServiceName::new("api").unwrap(),
            ],
            subjects: Subjects::default(),
        }
    }

    #[test]
    fn random_requests_are_valid_and_name_the_simulated_fleet() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let cfg = cfg();
        let mut scopes = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let req = random_request(&mut rng, &cfg, false);
            let back: StatsRequest = decode(&encode(&req)).expect("a valid request");
            scopes.insert(back.scope);
            match back.scope {
                StatsScope::Worker => {
                    assert!(WORKER_METRICS.contains(&back.metric.as_str()));
                    let i: usize = back.id.trim_start_matches("sim").parse().unwrap();
                    assert!(i < 100);
                }
                StatsScope::Replica => {
                    assert!(REPLICA_METRICS.contains(&back.metric.as_str()));
                    let j: usize = back.id.rsplit('-').next().unwrap().parse().unwrap();
                    let svc = if j.is_multiple_of(2) {
                        "-web-"
                    } else {
                        "-api-"
                    };
                    assert!(j < 4 && back.id.contains(svc), "{}", back.id);
                }
                s => panic!("unexpected scope {s:?}"),
            }
            if let (Some(step), Some(last)) = (back.step_ms, back.last_ms) {
                assert!(last / step <= 60);
            }
        }
        assert_eq!(scopes.len(), 2);
        let probe = random_request(&mut rng, &cfg, true);
        assert_eq!(
            (probe.scope, probe.metric.as_str(), probe.step_ms),
            (StatsScope::Worker, "cpu", Some(1_000))
        );
    }

    #[test]
    fn report_counts_errors_by_kind_and_ages_from_probes() {
        let mut r = QueryReport::default();
        let ok = |ts| StatsReply {
            series: vec![acs_events::StatsPoint {
                ts_ms: ts,
                count: 1,
                min: 1.0,
                max: 1.0,
                avg: 1.0,
                last: 1.0,
            }],
            ..StatsReply {
                ok: true,
                error: None,
                ..StatsReply::error("")
            }
        };
        r.record(Outcome::Answered {
            latency: Duration::from_millis(2),
            reply: ok(9_000),
            probe: true,
            received_ms: 10_000,
        });
        r.record(Outcome::Answered {
            latency: Duration::from_millis(4),
            reply: ok(1),
            probe: false,
            received_ms: 10_000,
        });
        r.record(Outcome::Answered {
            latency: Duration::from_millis(3),
            reply: StatsReply::error("unknown worker \"sim00001\": no metrics seen for it"),
            probe: false,
            received_ms: 0,
        });
        r.record(Outcome::Answered {
            latency: Duration::from_millis(3),
            reply: StatsReply::error("unknown worker \"sim00002\": no metrics seen for it"),
            probe: false,
            received_ms: 0,
        });
        r.record(Outcome::Failed {
            latency: Duration::from_secs(1),
            error: "timeout after 1s".into(),
        });
        assert_eq!((r.answered, r.errors), (2, 3));
        assert_eq!(r.error_kinds.get("unknown worker "), Some(&2));
        assert_eq!(r.error_kinds.get("timeout after 1s"), Some(&1));
        assert_eq!(r.age.max(), Some(Duration::from_secs(1)));
        assert_eq!(r.latency.max(), Some(Duration::from_secs(1)));
        assert_eq!(r.json()["errors"], 3);
    }
}
