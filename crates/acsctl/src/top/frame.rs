//! One frame of `acsctl top` as plain data ([`Frame`]: a title, the hosts and services rows,
//! notes), built from a [`View`]; [`render`] lays it out as text. The terminal view draws the
//! same [`Frame`]. Pure.

use std::fmt::Write as _;

use acs_events::{WorkerHealth, WorkerId};

use super::View;
use crate::output::Table;
use crate::stats::bytes;
use crate::status::lifecycle_cell;

pub const HOSTS: [&str; 8] = [
    "HOST",
    "HEALTH",
    "CPU",
    "MEM",
    "LOAD1",
    "NET RX/TX",
    "REPLICAS",
    "NOTE",
];

pub const SERVICES: [&str; 10] = [
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
];

/// What one frame shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub title: String,
    pub hosts: Vec<[String; 8]>,
    pub services: Vec<[String; 10]>,
    /// Counts of what went wrong (undecodable messages, dropped parts), one sentence each.
    pub notes: Vec<String>,
}

/// A frame as text: the title, the hosts table, the services table, the notes.
pub fn render(v: &View) -> String {
    let f = frame(v);
    let mut out = f.title.clone();
    out.push_str("\n\n");
    let mut hosts = Table::new(HOSTS);
    for r in f.hosts {
        hosts.row(r);
    }
    out.push_str(&hosts.render());
    out.push('\n');
    let mut svcs = Table::new(SERVICES);
    for r in f.services {
        svcs.row(r);
    }
    out.push_str(&svcs.render());
    for n in &f.notes {
        let _ = writeln!(out, "\n{n}");
    }
    out
}

pub fn frame(v: &View) -> Frame {
    let brain = match (&v.status, &v.status_error) {
        (_, Some(e)) => format!("brain: no answer ({e})"),
        (Some(s), None) => match &s.brain {
            Some(b) => format!("leader {} (term {})", b.instance, b.term),
            None => "brain answered".into(),
        },
        (None, None) => "waiting for the brain".into(),
    };
    let mut notes = Vec::new();
    if v.bad > 0 {
        notes.push(format!(
            "{} metrics messages did not decode (see `acsctl watch`)",
            v.bad
        ));
    }
    if v.parts_dropped > 0 {
        notes.push(format!(
            "{} split proxy reports were dropped before all their parts came",
            v.parts_dropped
        ));
    }
    Frame {
        title: format!(
            "acs top: {brain}; {} workers, {} proxies reporting",
            v.workers.len(),
            v.proxies.len()
        ),
        hosts: hosts(v),
        services: services(v),
        notes,
    }
}

fn hosts(v: &View) -> Vec<[String; 8]> {
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
    let mut rows = Vec::new();
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
        rows.push(row);
    }
    rows
}

fn services(v: &View) -> Vec<[String; 10]> {
    let mut rows = Vec::new();
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
        let or_dash = |s: String| if has { s } else { "-".into() };
        rows.push([
            s.name.to_string(),
            lifecycle_cell(s),
            mode.into(),
            s.desired.to_string(),
            s.running.to_string(),
            or_dash(format!("{rps:.1}")),
            ms(worst(|t| t.p50_ms)),
            ms(worst(|t| t.p99_ms)),
            or_dash(inflight.to_string()),
            or_dash(errors.to_string()),
        ]);
    }
    rows
}
