//! `acsctl status`: a `StatusReply` as readable tables. Pure.
//!
//! A large cluster's reply is a summary (no lists) or a page of one list; the tables then say
//! how many there are and how to ask for the next page.

use std::fmt::Write as _;

use acs_events::{
    Lifecycle, LifecycleState, ReplicaState, ScaleMode, ServiceStatus, StatusDetail, StatusReply,
    WorkerHealth,
};

use crate::output::Table;

/// Renders the services table (with each service's replicas and backends) and the workers table.
pub fn render(s: &StatusReply) -> String {
    render_as(s, false)
}

/// [`render`], and with `wide` more columns (replica and backend counts, cordon and drain, free slots), the
/// backends with their workers' addresses, and the brain's instance and term.
pub fn render_as(s: &StatusReply, wide: bool) -> String {
    let mut out = String::new();
    if wide {
        if let Some(b) = &s.brain {
            let _ = writeln!(out, "BRAIN: {} (term {})\n", b.instance, b.term);
        }
    }
    if s.services.is_empty() {
        out.push_str("SERVICES: none (is the services file empty?)\n");
    } else {
        services(&mut out, s, wide);
    }
    out.push('\n');
    workers(&mut out, s, wide);
    page_footer(&mut out, s);
    if s.rejected > 0 {
        let _ = writeln!(
            out,
            "\nThe brain has refused {} malformed message(s) since it started.",
            s.rejected
        );
    }
    out
}

fn mode_name(m: ScaleMode) -> &'static str {
    match m {
        ScaleMode::Auto => "auto",
        ScaleMode::Manual => "manual",
    }
}

/// The services table, the lifecycle reasons below it, then the replicas (and, wide, the
/// backends) tables.
fn services(out: &mut String, s: &StatusReply, wide: bool) {
    let mut t = if wide {
        Table::new([
            "SERVICE", "STATE", "MODE", "DESIRED", "RUNNING", "VERSION", "REPLICAS", "BACKENDS",
        ])
    } else {
        Table::new([
            "SERVICE", "STATE", "MODE", "DESIRED", "RUNNING", "VERSION", "BACKENDS",
        ])
    };
    for svc in &s.services {
        let backends = if svc.backends.is_empty() && svc.backends_total > 0 {
            format!(
                "{} (list: acsctl status --service {})",
                svc.backends_total, svc.name
            )
        } else if svc.backends.is_empty() {
            "-".to_string()
        } else if wide {
            svc.backends
                .len()
                .max(svc.backends_total as usize)
                .to_string()
        } else {
            svc.backends
                .iter()
                .map(|b| {
                    let drain = if b.draining { " (draining)" } else { "" };
                    format!("{}@{}{drain}", b.id, b.addr)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let head = [
            svc.name.to_string(),
            lifecycle_cell(svc),
            mode_name(svc.mode).to_string(),
            svc.desired.to_string(),
            svc.running.to_string(),
            svc.version.to_string(),
        ];
        if wide {
            let reps = svc.replicas.len().max(svc.replicas_total as usize);
            let [a, b, c, d, e, f] = head;
            t.row([a, b, c, d, e, f, reps.to_string(), backends]);
        } else {
            let [a, b, c, d, e, f] = head;
            t.row([a, b, c, d, e, f, backends]);
        }
    }
    out.push_str(&t.render());
    for svc in &s.services {
        let lc = &svc.lifecycle;
        if let (Some(reason), false) = (&lc.reason, lc.state == LifecycleState::Failed) {
            let _ = writeln!(out, "  {}: {}: {reason}", svc.name, lc.state.name());
        }
    }

    let mut r = Table::new(["  REPLICA", "SERVICE", "WORKER", "STATE", "ADDR"]);
    let mut any = false;
    for svc in &s.services {
        for rep in &svc.replicas {
            any = true;
            let mut state = state_name(rep.state).to_string();
            if rep.draining {
                state.push_str(" (draining)");
            }
            r.row([
                format!("  {}", rep.id),
                svc.name.to_string(),
                rep.worker.to_string(),
                state,
                rep.addr.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    if any {
        out.push('\n');
        out.push_str(&r.render());
    }
    if wide {
        backends(out, s);
    }
}

/// Wide only: what the proxies route to, one row per backend with its worker and address.
fn backends(out: &mut String, s: &StatusReply) {
    let mut t = Table::new(["  BACKEND", "SERVICE", "WORKER", "ADDR", "DRAINING"]);
    let mut any = false;
    for svc in &s.services {
        for b in &svc.backends {
            any = true;
            t.row([
                format!("  {}", b.id),
                svc.name.to_string(),
                b.worker.to_string(),
                b.addr.clone(),
                if b.draining { "yes" } else { "no" }.to_string(),
            ]);
        }
    }
    if any {
        out.push('\n');
        out.push_str(&t.render());
    }
}

/// The workers table, or the summary line when the reply is a summary.
fn workers(out: &mut String, s: &StatusReply, wide: bool) {
    let paged = s.page.as_ref().map(|p| p.detail);
    if let (Some(sum), Some(StatusDetail::Summary | StatusDetail::Service)) = (&s.summary, paged) {
        let _ = writeln!(
            out,
            "WORKERS: {} up, {} down, {} cordoned, {} draining; {}/{} replica slots used (list: acsctl status --workers)",
            sum.workers_up, sum.workers_down, sum.cordoned, sum.draining, sum.replicas, sum.max_replicas
        );
        return;
    }
    if s.workers.is_empty() {
        out.push_str("WORKERS: none seen yet (no vmm-worker is publishing metrics)\n");
        return;
    }
    let mut t = if wide {
        Table::new([
            "WORKER",
            "HEALTH",
            "CORDONED",
            "DRAINING",
            "REPLICAS",
            "FREE",
            "CPU",
            "LAST SEEN",
        ])
    } else {
        Table::new(["WORKER", "HEALTH", "REPLICAS", "CPU", "LAST SEEN"])
    };
    for w in &s.workers {
        let health = match w.health {
            WorkerHealth::Up => "up",
            WorkerHealth::Down => "DOWN",
            WorkerHealth::Duplicate => "DUPLICATE",
        };
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        if wide {
            t.row([
                w.id.to_string(),
                health.to_string(),
                yes(w.cordoned),
                yes(w.draining),
                format!("{}/{}", w.replicas, w.max_replicas),
                w.max_replicas.saturating_sub(w.replicas).to_string(),
                format!("{:.1}%", w.cpu_pct),
                format!("{} ms ago", w.last_seen_ms_ago),
            ]);
            continue;
        }
        // Maintenance rides in the health column: `up, draining` / `up, cordoned`.
        let health = match (w.draining, w.cordoned) {
            (true, _) => format!("{health}, draining"),
            (false, true) => format!("{health}, cordoned"),
            _ => health.to_string(),
        };
        t.row([
            w.id.to_string(),
            health,
            format!("{}/{}", w.replicas, w.max_replicas),
            format!("{:.0}%", w.cpu_pct),
            ago(w.last_seen_ms_ago),
        ]);
    }
    out.push_str(&t.render());
}

/// For a summary or a page: how many there are and how to ask for the next page.
fn page_footer(out: &mut String, s: &StatusReply) {
    let Some(p) = &s.page else { return };
    let what = match p.detail {
        StatusDetail::Summary => {
            let _ = writeln!(
                out,
                "\nA summary: {} replicas, backends and workers in all, too many to list at once.",
                p.total
            );
            return;
        }
        StatusDetail::Service => {
            let svc = s
                .services
                .iter()
                .find(|v| !v.replicas.is_empty() || !v.backends.is_empty());
            format!(
                "--service {}",
                svc.map_or("SERVICE".to_string(), |v| v.name.to_string())
            )
        }
        StatusDetail::Workers => "--workers".to_string(),
    };
    let end = p.offset + p.count;
    let _ = write!(out, "\nItems {}..{} of {}", p.offset, end, p.total);
    match p.next {
        Some(next) => {
            let _ = writeln!(out, "; next page: acsctl status {what} --offset {next}");
        }
        None => out.push_str(" (the last page)\n"),
    }
}

/// `Running`, `Partial-Running 2/3`, `Scaling 2/3`, `Suspended`, `Failed: <reason>`, `Creating`.
/// The reasons of other states follow the table, one line per service.
pub(crate) fn lifecycle_cell(svc: &ServiceStatus) -> String {
    let Lifecycle { state, reason } = &svc.lifecycle;
    match state {
        LifecycleState::PartialRunning | LifecycleState::Scaling => {
            // The brain's reason opens with its `ready/desired`; else the routed count.
            let frac = reason
                .as_deref()
                .and_then(|r| r.split_once(':'))
                .map(|(f, _)| f.to_string());
            let frac = frac
                .filter(|f| f.contains('/'))
                .unwrap_or_else(|| format!("{}/{}", svc.running, svc.desired));
            format!("{} {frac}", state.name())
        }
        LifecycleState::Failed => match reason {
            Some(r) => format!("Failed: {r}"),
            None => "Failed".to_string(),
        },
        _ => state.name().to_string(),
    }
}

pub fn state_name(s: ReplicaState) -> &'static str {
    match s {
        ReplicaState::Starting => "starting",
        ReplicaState::Healthy => "healthy",
        ReplicaState::Unhealthy => "unhealthy",
        ReplicaState::Stopping => "stopping",
        ReplicaState::Exited => "exited",
    }
}

/// `0.4s ago`, `12s ago`, `3m ago`, `2h ago`.
pub fn ago(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s ago", ms as f64 / 1000.0)
    } else if ms < 120_000 {
        format!("{}s ago", ms / 1000)
    } else if ms < 7_200_000 {
        format!("{}m ago", ms / 60_000)
    } else {
        format!("{}h ago", ms / 3_600_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatusReply {
        serde_json::from_value(serde_json::json!({
            "ok": true, "ts_ms": 1, "rejected": 2,
            "services": [{
                "name": "web", "mode": "manual", "desired": 3, "running": 2, "version": 17,
                "lifecycle": {"state": "partial_running", "reason": "2/3: no worker has a free slot"},
                "replicas": [
                    {"id": "web-a", "worker": "w1", "state": "healthy", "addr": "127.0.0.1:40001"},
                    {"id": "web-b", "worker": "w2", "state": "healthy", "addr": "127.0.0.1:40002", "draining": true},
                    {"id": "web-c", "worker": "w2", "state": "starting"}
                ],
                "backends": [
                    {"id": "web-a", "addr": "127.0.0.1:40001", "worker": "w1"},
                    {"id": "web-b", "addr": "127.0.0.1:40002", "worker": "w2", "draining": true}
                ]
            }],
            "workers": [
                {"id": "w1", "health": "up", "last_seen_ms_ago": 400, "replicas": 1, "max_replicas": 4, "cpu_pct": 12.34},
                {"id": "w2", "health": "down", "last_seen_ms_ago": 65000, "replicas": 2, "max_replicas": 4, "cpu_pct": 0.0}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn renders_tables() {
        let out = render(&sample());
        let expected = "\
SERVICE  STATE                MODE    DESIRED  RUNNING  VERSION  BACKENDS
web      Partial-Running 2/3  manual  3        2        17       web-a@127.0.0.1:40001, web-b@127.0.0.1:40002 (draining)
  web: Partial-Running: 2/3: no worker has a free slot

  REPLICA  SERVICE  WORKER  STATE               ADDR
  web-a    web      w1      healthy             127.0.0.1:40001
  web-b    web      w2      healthy (draining)  127.0.0.1:40002
  web-c    web      w2      starting            -

WORKER  HEALTH  REPLICAS  CPU  LAST SEEN
w1      up      1/4       12%  0.4s ago
w2      DOWN    2/4       0%   65s ago

The brain has refused 2 malformed message(s) since it started.
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn wide_adds_columns_backends_and_the_brain() {
        let mut s = sample();
        s.brain = serde_json::from_value(
            serde_json::json!({"instance": "brain-a", "term": 4, "leader": true}),
        )
        .unwrap();
        let out = render_as(&s, true);
        assert!(out.starts_with("BRAIN: brain-a (term 4)\n"), "{out}");
        for want in [
            "SERVICE  STATE                MODE    DESIRED  RUNNING  VERSION  REPLICAS  BACKENDS\n",
            "web      Partial-Running 2/3  manual  3        2        17       3         2\n",
            "  BACKEND  SERVICE  WORKER  ADDR             DRAINING\n",
            "  web-b    web      w2      127.0.0.1:40002  yes\n",
            "WORKER  HEALTH  CORDONED  DRAINING  REPLICAS  FREE  CPU    LAST SEEN\n",
            "w1      up      no        no        1/4       3     12.3%  400 ms ago\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn a_summary_and_a_page_say_how_to_ask_for_more() {
        let mut s: StatusReply = serde_json::from_value(serde_json::json!({
            "ok": true, "ts_ms": 1,
            "services": [{"name": "web", "mode": "auto", "desired": 3000, "running": 3000, "version": 17,
                          "lifecycle": {"state": "running"}, "replicas": [], "backends": [],
                          "replicas_total": 3000, "backends_total": 3000}],
            "workers": [],
            "summary": {"workers_up": 300, "workers_down": 2, "cordoned": 1, "draining": 0, "replicas": 3000, "max_replicas": 4000},
            "page": {"detail": "summary", "offset": 0, "count": 0, "total": 6302}
        }))
        .unwrap();
        let out = render(&s);
        assert!(
            out.contains("3000 (list: acsctl status --service web)"),
            "{out}"
        );
        assert!(
            out.contains(
                "WORKERS: 300 up, 2 down, 1 cordoned, 0 draining; 3000/4000 replica slots used"
            ),
            "{out}"
        );
        assert!(
            out.contains("6302 replicas, backends and workers in all"),
            "{out}"
        );

        s.services[0].backends = sample().services[0].backends.clone();
        s.page = Some(acs_events::StatusPage {
            detail: StatusDetail::Service,
            offset: 500,
            count: 500,
            total: 3000,
            next: Some(1000),
        });
        let out = render(&s);
        assert!(
            out.contains(
                "Items 500..1000 of 3000; next page: acsctl status --service web --offset 1000"
            ),
            "{out}"
        );
        s.workers = sample().workers;
        s.services[0].backends.clear();
        s.page = Some(acs_events::StatusPage {
            detail: StatusDetail::Workers,
            offset: 300,
            count: 2,
            total: 302,
            next: None,
        });
        let out = render(&s);
        assert!(out.contains("w2      DOWN"), "{out}");
        assert!(
            out.contains("Items 300..302 of 302 (the last page)"),
            "{out}"
        );
    }

    #[test]
    fn lifecycle_cells() {
        let mut svc = sample().services.remove(0);
        let mut cell = |state, reason: Option<&str>| {
            svc.lifecycle = Lifecycle {
                state,
                reason: reason.map(str::to_string),
            };
            lifecycle_cell(&svc)
        };
        assert_eq!(cell(LifecycleState::Running, None), "Running");
        assert_eq!(
            cell(LifecycleState::Scaling, Some("1/3: 2 starting")),
            "Scaling 1/3"
        );
        assert_eq!(
            cell(LifecycleState::PartialRunning, None),
            "Partial-Running 2/3",
            "routed/desired"
        );
        assert_eq!(
            cell(LifecycleState::Suspended, Some("pinned at 0")),
            "Suspended"
        );
        let crash = "crash loop: web-7 exited with status 1; next start in 8 s";
        assert_eq!(
            cell(LifecycleState::Failed, Some(crash)),
            format!("Failed: {crash}")
        );
    }

    #[test]
    fn empty_cluster_says_so() {
        let s: StatusReply =
            serde_json::from_str(r#"{"ts_ms":1,"services":[],"workers":[]}"#).unwrap();
        let out = render(&s);
        assert!(out.contains("SERVICES: none"), "{out}");
        assert!(out.contains("WORKERS: none seen yet"), "{out}");
    }

    #[test]
    fn ages() {
        assert_eq!(ago(0), "0.0s ago");
        assert_eq!(ago(9_940), "9.9s ago");
        assert_eq!(ago(61_000), "61s ago");
        assert_eq!(ago(600_000), "10m ago");
        assert_eq!(ago(10_800_000), "3h ago");
    }
}
