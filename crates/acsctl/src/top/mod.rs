//! `acsctl top`: hosts (workers) and services, refreshed every `--interval`, like Dragonfly's
//! `cbmon` or `top`. It asks the brain for `acs.status` each round and listens to the
//! workers' and proxies' metrics for CPU, memory, network, requests/s and latency.
//!
//! - `frame.rs`: one [`frame::Frame`] from a [`View`] and its plain-text layout (pure);
//! - `tui.rs`: the full-screen view when stdout is a terminal (ratatui);
//! - here: the loop that gathers the [`View`], and how each round is shown: redrawn on a
//!   terminal, printed as plain text once per interval when piped, one frame with `--once`,
//!   one JSON document with `-o json`.

mod frame;
mod tui;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use acs_events::{
    decode, MetricsAssembler, ProxyId, ProxyMetrics, ProxyMetricsMsg, StatusReply, Subjects,
    WorkerId, WorkerMetrics,
};
use futures::StreamExt;
use serde::Serialize;

pub use frame::{frame, render, Frame};

use crate::client;
use crate::error::{Error, Result};
use crate::output::{print_json, Format};

/// Metrics older than this are shown as stale (`-`): the sender has stopped.
const STALE: Duration = Duration::from_secs(5);

/// What one frame shows.
#[derive(Debug, Default, Serialize)]
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

/// How each round is shown.
enum Screen {
    /// One frame (text or JSON) once the view has something to show, then exit.
    Once(Format),
    /// Plain text, one frame per interval (stdout is not a terminal).
    Lines,
    Tui(Box<tui::Tui>),
}

pub struct TopArgs {
    pub interval: Duration,
    pub once: bool,
    pub format: Format,
}

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    args: TopArgs,
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
    let mut screen = match (args.once, args.format) {
        (true, f) | (false, f @ Format::Json) => Screen::Once(f),
        _ if std::io::stdout().is_terminal() => {
            Screen::Tui(Box::new(tui::Tui::start(args.interval)?))
        }
        _ => Screen::Lines,
    };
    let mut view = View::default();
    // When each sender last reported, to forget the ones that stopped.
    let mut seen_workers: BTreeMap<WorkerId, Instant> = BTreeMap::new();
    let mut seen_proxies: BTreeMap<ProxyId, Instant> = BTreeMap::new();
    // A big proxy's report comes in parts; it is shown once whole.
    let mut parts = MetricsAssembler::default();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `--once`: one status and a little more than a metrics second, then a single frame.
    let first = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let key = async {
            match &mut screen {
                Screen::Tui(t) => t.key().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            k = key => match k {
                tui::Key::Quit => return Ok(()),
                tui::Key::Redraw => {
                    show(&mut screen, &view)?;
                }
            },
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
                if let Screen::Once(_) = screen {
                    let ready = view.status.is_some() && !view.workers.is_empty();
                    if !ready && first.elapsed() < Duration::from_millis(1200) {
                        continue;
                    }
                }
                let open = show(&mut screen, &view)?;
                if !open || matches!(screen, Screen::Once(_)) {
                    return Ok(());
                }
            }
        }
    }
}

/// Shows one round. `Ok(false)`: stdout is closed (`acsctl top | head`), so stop quietly.
fn show(screen: &mut Screen, view: &View) -> Result<bool> {
    let text = match screen {
        Screen::Once(Format::Json) => {
            print_json(view);
            return Ok(true);
        }
        Screen::Once(_) => render(view),
        // A blank line between frames; no escape codes, so a log or a pipe reads plainly.
        Screen::Lines => render(view) + "\n",
        Screen::Tui(t) => {
            t.draw(&frame(view))?;
            return Ok(true);
        }
    };
    let mut out = std::io::stdout().lock();
    Ok(out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_ok())
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
