//! `acsctl top`: a live table of hosts (workers) and services, redrawn every `--interval`, like
//! Dragonfly's `cbmon` or `top`. It asks the brain for `acs.status` each round and listens to
//! the workers' and proxies' metrics for CPU, memory, network, requests/s and latency.
//! [`render`] draws one frame from plain data; the loop only gathers it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use acs_events::{
    decode, MetricsAssembler, ProxyId, ProxyMetrics, ProxyMetricsMsg, StatusReply, Subjects,
    WorkerHealth, WorkerId, WorkerMetrics,
};
use futures::StreamExt;

use crate::client;
use crate::error::{Error, Result};
use crate::stats::bytes;
use crate::status::{lifecycle_cell, Table};

/// Metrics older than this are shown as stale (`-`): the sender has stopped.
const STALE: Duration = Duration::from_secs(5);

/// What one frame shows.
#[derive(Debug, Default)]
pub struct View {
    pub status: Option<StatusReply>,
    /// Why the last status request failed, if it did (shown instead of exiting).
    pub status_error: Option<String>,
    pub workers: BTreeMap<WorkerId, WorkerMetrics>,
    pub proxies: BTreeMap<ProxyId, ProxyMetrics>,
    /// Messages that did not decode (counted, shown in the footer).
    pub bad: u64,
    /// Split proxy reports given up on before they were whole (shown in the footer).
    pub parts_dropped: u64,
}

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    interval: Duration,
    once: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let sub = |s: String| {
        let nc = nc.clone();
        async move {
            nc.subscribe(s.clone()).await.map_err(|e| Error::Request {
                subject: s,
                reason: e.to_string(),
            })
        }
    };
    let mut workers = sub(subjects.worker_metrics_all()).await?;
    let mut proxies = sub(subjects.proxy_metrics_all()).await?;
    let mut view = View::default();
    // When each sender last reported, to forget the ones that stopped.
    let mut seen_workers: BTreeMap<WorkerId, Instant> = BTreeMap::new();
    let mut seen_proxies: BTreeMap<ProxyId, Instant> = BTreeMap::new();
    // A big proxy's report comes in parts; it is shown once whole.
    let mut parts = MetricsAssembler::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `--once`: one status and a little more than a metrics second, then a single frame.
    let first = Instant::now();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            Some(m) = workers.next() => match decode::<WorkerMetrics>(&m.payload) {
                Ok(w) => {
                    seen_workers.insert(w.worker.clone(), Instant::now());
                    view.workers.insert(w.worker.clone(), w);
                }
                Err(_) => view.bad += 1,
            },
            Some(m) = proxies.next() => match decode::<ProxyMetricsMsg>(&m.payload) {
                Ok(p) => {
                    if let Some(p) = parts.push(p, first.elapsed().as_millis() as u64) {
                        seen_proxies.insert(p.proxy.clone(), Instant::now());
                        view.proxies.insert(p.proxy.clone(), p);
                    }
                    view.parts_dropped = parts.dropped().total();
                }
                Err(_) => view.bad += 1,
            },
            _ = tick.tick() => {
                match client::unless_refused(&refusals, client::status(&nc, subjects, timeout)).await {
                    Ok(s) => (view.status, view.status_error) = (Some(s), None),
                    Err(e @ Error::Denied(_)) => return Err(e),
                    Err(e) => view.status_error = Some(e.to_string()),
                }
                // Forget what stopped reporting, so a dead worker's last figures do not linger.
                seen_workers.retain(|_, t| t.elapsed() < STALE);
                seen_proxies.retain(|_, t| t.elapsed() < STALE);
                view.workers.retain(|w, _| seen_workers.contains_key(w));
                view.proxies.retain(|p, _| seen_proxies.contains_key(p));
                if once {
                    if first.elapsed() >= Duration::from_millis(1200) || (view.status.is_some() && !view.workers.is_empty()) {
                        print!("{}", render(&view));
                        return Ok(());
                    }
                } else {
                    // Home, clear, frame: redrawn in place.
                    print!("\x1b[H\x1b[2J{}", render(&view));
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }
}

/// One frame: a header, the hosts table, the services table.
pub fn render(v: &View) -> String {
    let mut out = String::new();
    let brain = match (&v.status, &v.status_error) {
        (_, Some(e)) => format!("brain: no answer ({e})"),
        (Some(s), None) => match &s.brain {
            Some(b) => format!("leader {} (term {})", b.instance, b.term),
            None => "brain answered".into(),
        },
        (None, None) => "waiting for the brain".into(),
    };
    let _ = writeln!(
        out,
        "acs top: {brain}; {} workers, {} proxies reporting",
        v.workers.len(),
        v.proxies.len()
    );
    out.push('\n');

    let mut hosts = Table::new([
        "HOST",
        "HEALTH",
        "CPU",
        "MEM",
        "LOAD1",
        "NET RX/TX",
        "REPLICAS",
        "NOTE",
    ]);
    let status_workers = v
        .status
        .as_ref()
        .map(|s| s.workers.as_slice())
        .unwrap_or_default();
    let mut ids: Vec<&WorkerId> = v.workers.keys().collect();
    ids.extend(
        status_workers
            .iter()
            .map(|w| &w.id)
            .filter(|id| !v.workers.contains_key(*id)),
    );
    ids.sort();
    for id in ids {
        let st = status_workers.iter().find(|w| &w.id == id);
        let health = st.map_or("?", |w| match w.health {
            WorkerHealth::Up => "up",
            WorkerHealth::Down => "down",
            WorkerHealth::Duplicate => "duplicate",
        });
        let mut note = Vec::new();
        if st.is_some_and(|w| w.draining) {
            note.push("draining");
        } else if st.is_some_and(|w| w.cordoned) {
            note.push("cordoned");
        }
        let row = match v.workers.get(id) {
            Some(m) => {
                let h = &m.host;
                let mem = if h.mem_total_bytes > 0 {
                    format!(
                        "{} / {}",
                        bytes(h.mem_used_bytes as f64),
                        bytes(h.mem_total_bytes as f64)
                    )
                } else {
                    bytes(h.mem_used_bytes as f64)
                };
                [
                    id.to_string(),
                    health.to_string(),
                    format!("{:.1}%", h.cpu_pct),
                    mem,
                    format!("{:.2}", h.load1),
                    format!(
                        "{}/s / {}/s",
                        bytes(h.net_rx_bytes_per_s),
                        bytes(h.net_tx_bytes_per_s)
                    ),
                    format!("{}/{}", m.capacity.running, m.capacity.max_replicas),
                    note.join(" "),
                ]
            }
            None => {
                note.push("no metrics");
                let reps = st.map_or("-".into(), |w| format!("{}/{}", w.replicas, w.max_replicas));
                [
                    id.to_string(),
                    health.to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    reps,
                    note.join(" "),
                ]
            }
        };
        hosts.row(row);
    }
    out.push_str(&hosts.render());
    out.push('\n');

    let mut svcs = Table::new([
        "SERVICE",
        "STATE",
        "MODE",
        "DESIRED",
        "RUNNING",
        "REQ/S",
        "P50",
        "P99",
        "IN-FLIGHT",
        "ERRORS",
    ]);
    for s in v
        .status
        .as_ref()
        .map(|s| s.services.as_slice())
        .unwrap_or_default()
    {
        let traffic: Vec<_> = v
            .proxies
            .values()
            .flat_map(|p| &p.services)
            .filter(|t| t.service == s.name)
            .map(|t| &t.totals)
            .collect();
        let (rps, inflight, errors) = traffic.iter().fold((0.0, 0, 0), |(r, i, e), t| {
            (r + t.rps, i + t.in_flight, e + t.errors)
        });
        // The slowest proxy's figure: a percentile cannot be averaged across proxies.
        let worst = |f: fn(&acs_events::Traffic) -> f64| {
            traffic
                .iter()
                .map(|t| f(t))
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        let ms = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.1}ms"));
        let mode = match s.mode {
            acs_events::ScaleMode::Auto => "auto",
            acs_events::ScaleMode::Manual => "manual",
        };
        let has = !traffic.is_empty();
        svcs.row([
            s.name.to_string(),
            lifecycle_cell(s),
            mode.into(),
            s.desired.to_string(),
            s.running.to_string(),
            if has { format!("{rps:.1}") } else { "-".into() },
            ms(worst(|t| t.p50_ms)),
            ms(worst(|t| t.p99_ms)),
            if has {
                inflight.to_string()
            } else {
                "-".into()
            },
            if has { errors.to_string() } else { "-".into() },
        ]);
    }
    out.push_str(&svcs.render());
    if v.bad > 0 {
        let _ = writeln!(
            out,
            "\n{} metrics messages did not decode (see `acsctl watch`)",
            v.bad
        );
    }
    if v.parts_dropped > 0 {
        let _ = writeln!(
            out,
            "\n{} split proxy reports were dropped before all their parts came",
            v.parts_dropped
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> StatusReply {
        serde_json::from_value(serde_json::json!({
            "v": 1, "ok": true, "ts_ms": 1,
            "brain": {"instance": "brain-a", "term": 4, "leader": true},
            "services": [{"name": "web", "mode": "manual", "desired": 3, "running": 3, "replicas": [], "version": 1, "backends": [],
                          "lifecycle": {"state": "running"}}],
            "workers": [
                {"id": "w1", "health": "up", "last_seen_ms_ago": 100, "replicas": 2, "max_replicas": 4, "cpu_pct": 10.0},
                {"id": "w2", "health": "down", "cordoned": true, "last_seen_ms_ago": 9000, "replicas": 1, "max_replicas": 4, "cpu_pct": 0.0}
            ],
            "rejected": 0
        }))
        .unwrap()
    }

    fn worker(id: &str) -> WorkerMetrics {
        serde_json::from_value(serde_json::json!({
            "v": 1, "worker": id, "seq": 1, "ts_ms": 1, "started_ms": 1, "interval_ms": 1000, "runtime": "process",
            "host": {"cpu_pct": 37.5, "cpus": 2, "mem_used_bytes": 1073741824u64, "mem_total_bytes": 4294967296u64, "load1": 0.5, "load5": 0.4, "load15": 0.3,
                     "net_rx_bytes_per_s": 2048.0, "net_tx_bytes_per_s": 1024.0, "disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 0.0,
                     "disk_used_bytes": 0, "disk_total_bytes": 0},
            "capacity": {"max_replicas": 4, "running": 2}, "replicas": []
        }))
        .unwrap()
    }

    fn proxy(id: &str, rps: f64, p99: f64) -> ProxyMetrics {
        serde_json::from_value(serde_json::json!({
            "v": 1, "proxy": id, "ts_ms": 1, "interval_ms": 1000,
            "services": [{"service": "web", "version": 1, "requests": 10, "rps": rps, "in_flight": 2, "p50_ms": 1.0, "p99_ms": p99, "errors": 1}]
        }))
        .unwrap()
    }

    #[test]
    fn a_frame_joins_status_and_metrics() {
        let mut v = View {
            status: Some(status()),
            ..View::default()
        };
        v.workers.insert("w1".parse().unwrap(), worker("w1"));
        v.proxies
            .insert("p1".parse().unwrap(), proxy("p1", 40.0, 3.0));
        v.proxies
            .insert("p2".parse().unwrap(), proxy("p2", 60.0, 8.5));
        let out = render(&v);
        assert!(
            out.starts_with("acs top: leader brain-a (term 4); 1 workers, 2 proxies reporting"),
            "{out}"
        );
        let line = |p: &str| {
            out.lines()
                .find(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("no {p} in\n{out}"))
                .to_string()
        };
        let w1 = line("w1");
        assert!(
            w1.contains("up")
                && w1.contains("37.5%")
                && w1.contains("1.0GiB / 4.0GiB")
                && w1.contains("2.0KiB/s / 1.0KiB/s")
                && w1.contains("2/4"),
            "{w1}"
        );
        let w2 = line("w2");
        assert!(
            w2.contains("down") && w2.contains("1/4") && w2.contains("cordoned no metrics"),
            "{w2}"
        );
        let web = line("web");
        assert!(
            web.contains("Running")
                && web.contains("manual")
                && web.contains("100.0")
                && web.contains("8.5ms")
                && web.contains("  4  "),
            "{web}"
        );
    }

    #[test]
    fn a_silent_brain_is_said_not_fatal() {
        let v = View {
            status_error: Some("no responders".into()),
            ..View::default()
        };
        let out = render(&v);
        assert!(
            out.starts_with("acs top: brain: no answer (no responders)"),
            "{out}"
        );
        assert!(out.contains("SERVICE"), "{out}");
    }
}
