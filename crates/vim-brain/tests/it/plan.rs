//! The whole decision, driven with plain data: no NATS, no clock, no tokio.

use acs_events::*;
use vim_brain::control;
use vim_brain::{plan, Event, Now, Plan, Services, Settings, World};

const WEB: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 4, target_rps_per_replica = 20, scale_down_window_s = 10, max_step_down = 1, drain_timeout_s = 5 }
"#;

/// A test cluster: a world, its services, and a clock we move by hand.
struct Cluster {
    world: World,
    services: Services,
    now: u64,
}

fn now(ms: u64) -> Now {
    Now {
        mono: ms,
        unix_ms: 1_700_000_000_000 + ms,
    }
}

impl Cluster {
    fn new(services: &str) -> Self {
        Self::with_settings(services, |_| {})
    }

    fn with_settings(services: &str, change: impl FnOnce(&mut Settings)) -> Self {
        // Periodic resets off by default so that tests see deltas; one test turns them on.
        let mut settings = Settings {
            warmup_ms: 0,
            reset_every_ms: u64::MAX,
            ..Settings::default()
        };
        change(&mut settings);
        Self {
            world: World::new(settings, now(0)),
            services: Services::parse(services).unwrap(),
            now: 0,
        }
    }

    fn at(mut self, ms: u64) -> Self {
        self.now = ms;
        self
    }

    fn metrics(id: &str, max: u32, cpu: f64, replicas: Vec<ReplicaStatus>) -> WorkerMetrics {
        WorkerMetrics {
            v: 1,
            worker: id.parse().unwrap(),
            seq: 1,
            ts_ms: 0,
            started_ms: 0,
            instance: String::new(),
            interval_ms: 1000,
            runtime: RuntimeKind::Process,
            host: HostMetrics {
                cpu_pct: cpu,
                cpus: 2,
                ..Default::default()
            },
            capacity: Capacity {
                max_replicas: max,
                running: replicas.len() as u32,
            },
            replicas,
            rejected: 0,
        }
    }

    /// A worker reporting `replicas` as (id, service, state).
    fn worker(
        mut self,
        id: &str,
        max: u32,
        cpu: f64,
        replicas: &[(&str, &str, ReplicaState)],
    ) -> Self {
        let rs = replicas
            .iter()
            .enumerate()
            .map(|(i, (rid, svc, st))| ReplicaStatus {
                id: rid.parse().unwrap(),
                service: svc.parse().unwrap(),
                addr: format!("127.0.0.1:{}", 40000 + i + 100 * id.len()),
                state: *st,
                cpu_pct: 10.0,
                mem_bytes: 0,
                started_ms: i as u64,
                restarts: 0,
            })
            .collect();
        let m = Self::metrics(id, max, cpu, rs);
        self.world.apply(Event::WorkerMetrics(m), self.now);
        self
    }

    /// A proxy that applied `version` of `web`, with `rps` and per-backend in-flight counts.
    fn proxy(mut self, version: u64, rps: f64, in_flight: &[(&str, u64)]) -> Self {
        let backends = in_flight
            .iter()
            .map(|(id, n)| BackendTraffic {
                id: id.parse().unwrap(),
                traffic: Traffic {
                    in_flight: *n,
                    ..Default::default()
                },
                draining: false,
                ejected: false,
            })
            .collect();
        let m = ProxyMetrics {
            v: 1,
            proxy: "p1".parse().unwrap(),
            ts_ms: 0,
            interval_ms: 1000,
            services: vec![ServiceTraffic {
                service: "web".parse().unwrap(),
                version,
                totals: Traffic {
                    rps,
                    in_flight: in_flight.iter().map(|x| x.1).sum(),
                    ..Default::default()
                },
                backends,
            }],
            unrouted: 0,
            rejected: 0,
        };
        self.world.apply(Event::Proxy(m), self.now);
        self
    }

    fn plan(&self) -> Plan {
        plan(&self.world, &self.services, now(self.now))
    }

    /// Plans and records the plan as sent.
    fn step(&mut self) -> Plan {
        let p = self.plan();
        self.world
            .apply(Event::PlanSent(p.bookkeeping.clone()), self.now);
        p
    }

    /// Folds a control answer's events in, as the reconciler does, and returns its reply.
    fn answer<R>(&mut self, (reply, events): control::Answer<R>) -> R {
        for event in events {
            self.world.apply(event, self.now);
        }
        reply
    }

    fn version(&self) -> u64 {
        self.world.services()[&"web".parse::<ServiceName>().unwrap()]
            .routing
            .version
    }
}

fn starts(p: &Plan) -> Vec<(String, String)> {
    p.commands
        .iter()
        .filter(|c| c.is_start())
        .map(|c| (c.worker.to_string(), c.replica.to_string()))
        .collect()
}

fn stops(p: &Plan) -> Vec<String> {
    p.commands
        .iter()
        .filter_map(|c| match &c.cmd.action {
            Action::Stop { replica, .. } => Some(replica.to_string()),
            _ => None,
        })
        .collect()
}

fn changes(p: &Plan) -> Vec<String> {
    p.updates
        .iter()
        .map(|u| match &u.change {
            BackendChange::Reset { backends, .. } => {
                format!(
                    "reset[{}]",
                    backends
                        .iter()
                        .map(|b| format!("{}{}", b.id, if b.draining { "~" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            BackendChange::Add { backends } => {
                format!(
                    "add[{}]",
                    backends
                        .iter()
                        .map(|b| b.id.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            BackendChange::Drain { ids } => format!(
                "drain[{}]",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            BackendChange::Remove { ids } => format!(
                "remove[{}]",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            BackendChange::Withdraw => "withdraw".to_string(),
        })
        .collect()
}

fn healthy(id: &str) -> (&str, &str, ReplicaState) {
    (id, "web", ReplicaState::Healthy)
}

#[test]
fn waits_for_warm_up_before_acting() {
    let c = Cluster::with_settings(WEB, |s| s.warmup_ms = 2_500);
    let mut c = c.at(1000).worker("w1", 4, 5.0, &[]);
    let p = c.step();
    assert!(p.commands.is_empty() && p.updates.is_empty());
    assert_eq!(p.worker_events.len(), 1, "worker up is announced at once");
    let mut c = c.at(2600).worker("w1", 4, 5.0, &[]);
    assert_eq!(starts(&c.step()).len(), 1, "min_replicas 1 after warm-up");
}

#[test]
fn places_min_replicas_spread_over_workers() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 3");
    let mut c = Cluster::new(&svc)
        .worker("w1", 4, 5.0, &[])
        .worker("w2", 4, 50.0, &[]);
    let p = c.step();
    let s = starts(&p);
    assert_eq!(s.len(), 3);
    let on_w1 = s.iter().filter(|(w, _)| w == "w1").count();
    assert_eq!(on_w1, 2, "spread 2/1, the less loaded host first: {s:?}");
    assert_eq!(
        p.decisions
            .iter()
            .filter(|d| matches!(d.action, DecisionAction::Place { .. }))
            .count(),
        3
    );
    // The starts are remembered: nothing more is started on the next tick.
    assert!(starts(&c.at(500).step()).is_empty());
}

#[test]
fn capacity_is_respected_and_blocked_is_said_once() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 3");
    let mut c = Cluster::new(&svc)
        .worker("w1", 1, 5.0, &[])
        .worker("w2", 1, 5.0, &[]);
    let p = c.step();
    assert_eq!(starts(&p).len(), 2);
    let blocked: Vec<_> = p
        .decisions
        .iter()
        .filter(|d| d.action == DecisionAction::Blocked)
        .collect();
    assert_eq!(blocked.len(), 1);
    assert!(
        blocked[0]
            .reason
            .contains("1 of 3 replicas cannot be placed"),
        "{}",
        blocked[0].reason
    );
    let p = c.at(500).step();
    assert!(
        p.decisions
            .iter()
            .all(|d| d.action != DecisionAction::Blocked),
        "said once"
    );
}

#[test]
fn healthy_replicas_become_backends_with_growing_versions() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 2");
    let mut c = Cluster::new(&svc).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), ("web-b", "web", ReplicaState::Starting)],
    );
    let p = c.step();
    assert_eq!(
        changes(&p),
        ["reset[web-a]"],
        "a starting replica is not routable"
    );
    assert!(p.commands.is_empty());
    let v1 = c.version();
    assert!(v1 > 1_000_000, "versions are seeded from the clock: {v1}");
    let mut c = c
        .at(1000)
        .worker("w1", 4, 5.0, &[healthy("web-a"), healthy("web-b")]);
    let p = c.step();
    assert_eq!(changes(&p), ["add[web-b]"]);
    assert_eq!(p.updates[0].version, v1 + 1);
}

#[test]
fn scales_out_on_requests_per_replica() {
    let mut c = Cluster::new(WEB)
        .worker("w1", 4, 5.0, &[healthy("web-a")])
        .worker("w2", 4, 5.0, &[]);
    c.step();
    let v = c.version();
    let mut c = c.at(1000).proxy(v, 70.0, &[("web-a", 3)]);
    let p = c.step();
    let scale: Vec<_> = p
        .decisions
        .iter()
        .filter(|d| matches!(d.action, DecisionAction::Scale { .. }))
        .collect();
    assert_eq!(scale.len(), 1);
    assert_eq!(
        scale[0].action,
        DecisionAction::Scale {
            from: 1,
            to: 4,
            manual: false
        }
    );
    assert!(scale[0].reason.contains("rps 70.0"), "{}", scale[0].reason);
    assert_eq!(scale[0].inputs["rps_per_replica"], 70.0);
    let s = starts(&p);
    assert_eq!(s.len(), 3);
    assert_eq!(
        s.iter().filter(|(w, _)| w == "w2").count(),
        2,
        "spread: {s:?}"
    );
}

#[test]
fn scale_in_drains_then_stops_then_removes() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[healthy("web-a"), healthy("web-b")]);
    c.step();
    // Load gone; after the 10 s scale-down window, one step down.
    let v0 = c.version();
    let mut c =
        c.at(1000)
            .proxy(v0, 0.0, &[])
            .worker("w1", 4, 5.0, &[healthy("web-a"), healthy("web-b")]);
    assert!(c.step().commands.is_empty());
    let mut c = c.at(12_000).proxy(v0, 0.0, &[]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy("web-b")],
    );
    let p = c.step();
    assert!(p.decisions.iter().any(|d| d.action
        == DecisionAction::Scale {
            from: 2,
            to: 1,
            manual: false
        }));
    assert_eq!(changes(&p), ["drain[web-b]"], "newest replica drains first");
    assert!(stops(&p).is_empty(), "no stop before the drain completes");
    let drain_v = p.updates[0].version;

    // The proxy has not applied the drain yet: wait, even with nothing in flight.
    let mut c = c.at(12_500).proxy(drain_v - 1, 0.0, &[]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy("web-b")],
    );
    assert!(stops(&c.step()).is_empty());
    // Applied, but two requests still in flight: wait.
    let mut c = c.at(13_000).proxy(drain_v, 0.0, &[("web-b", 2)]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy("web-b")],
    );
    assert!(stops(&c.step()).is_empty());
    // Drained: stop, and remove it from the proxies.
    let mut c = c.at(13_500).proxy(drain_v, 0.0, &[("web-b", 0)]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy("web-b")],
    );
    let p = c.step();
    assert_eq!(stops(&p), ["web-b"]);
    assert_eq!(changes(&p), ["remove[web-b]"]);
    assert!(p.decisions.iter().any(|d| d.reason.starts_with("drained")));
    // The worker stops it; nothing else happens.
    let mut c = c.at(14_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert!(p.commands.is_empty() && p.updates.is_empty(), "{p:?}");
    assert!(c.world.records().is_empty());
}

#[test]
fn drain_deadline_stops_anyway() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[healthy("web-a"), healthy("web-b")]);
    c.step();
    c.world.apply(
        Event::Pin {
            service: "web".parse().unwrap(),
            replicas: Some(1),
        },
        c.now,
    );
    let p = c.step();
    assert_eq!(changes(&p), ["drain[web-b]"]);
    let v = p.updates[0].version;
    let mut c = c.at(4_000).proxy(v, 0.0, &[("web-b", 1)]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy("web-b")],
    );
    assert!(stops(&c.step()).is_empty());
    let mut c = c.at(5_100).proxy(v, 0.0, &[("web-b", 1)]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy("web-b")],
    );
    let p = c.step();
    assert_eq!(stops(&p), ["web-b"]);
    assert!(p.decisions.iter().any(|d| d.reason.contains("deadline")));
}

#[test]
fn dead_worker_replicas_are_lost_and_replaced() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 2");
    let mut c = Cluster::new(&svc)
        .worker("w1", 4, 5.0, &[healthy("web-a")])
        .worker("w2", 4, 5.0, &[healthy("web-b")]);
    c.step();
    // w1 keeps reporting; w2 goes silent.
    let mut c = c.at(4_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert_eq!(p.worker_events.len(), 1);
    assert_eq!(p.worker_events[0].health, WorkerHealth::Down);
    assert!(p.decisions.iter().any(
        |d| matches!(&d.action, DecisionAction::Lost { replica, .. } if replica.as_str() == "web-b")
    ));
    assert_eq!(changes(&p), ["remove[web-b]"]);
    assert_eq!(
        starts(&p).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["w1"]
    );
}

#[test]
fn refused_start_is_placed_elsewhere() {
    let mut c = Cluster::new(WEB)
        .worker("w1", 4, 5.0, &[])
        .worker("w2", 4, 50.0, &[]);
    let p = c.step();
    let (w, r) = starts(&p)[0].clone();
    assert_eq!(w, "w1");
    c.world.apply(
        Event::CommandResult {
            worker: w.parse().unwrap(),
            replica: r.parse().unwrap(),
            start: true,
            result: Ok(CommandAck::error(None, "worker w1 is full")),
        },
        100,
    );
    let p = c.at(200).step();
    assert_eq!(starts(&p)[0].0, "w2");
}

#[test]
fn undeclared_service_replicas_are_stopped() {
    let mut c = Cluster::new(WEB).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), ("old-1", "old", ReplicaState::Healthy)],
    );
    let p = c.step();
    assert_eq!(stops(&p), ["old-1"]);
    assert!(c.at(500).step().commands.is_empty(), "not stopped twice");
}

#[test]
fn manual_scale_overrides_and_explains() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[healthy("web-a")]);
    c.step();
    let req = ScaleRequest {
        v: 1,
        service: "web".parse().unwrap(),
        replicas: Some(6),
        auto: false,
    };
    let r = c.answer(control::manual_scale(&c.world, &c.services, &req, now(0)));
    assert!(r.ok);
    assert_eq!(r.mode, Some(ScaleMode::Manual));
    assert_eq!((r.previous, r.replicas), (Some(1), Some(6)));
    let note = r.note.unwrap();
    assert!(
        note.contains("overridden") && note.contains("only 4 can run now"),
        "{note}"
    );
    let p = c.step();
    assert!(p.decisions.iter().any(|d| d.action
        == DecisionAction::Scale {
            from: 1,
            to: 6,
            manual: true
        }));
    assert_eq!(
        starts(&p).len(),
        3,
        "beyond max_replicas 4, limited by the worker's room"
    );

    let req = ScaleRequest {
        v: 1,
        service: "nope".parse().unwrap(),
        replicas: Some(1),
        auto: false,
    };
    let r = c.answer(control::manual_scale(&c.world, &c.services, &req, now(0)));
    assert!(!r.ok);
    assert!(r
        .error
        .unwrap()
        .contains("unknown service \"nope\"; known services: web"));
}

#[test]
fn status_reports_services_and_workers() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[healthy("web-a")]);
    c.step();
    let s = control::status(&c.world, &c.services, now(100));
    assert_eq!(s.services.len(), 1);
    assert_eq!((s.services[0].desired, s.services[0].running), (1, 1));
    assert_eq!(s.services[0].backends[0].id.as_str(), "web-a");
    assert_eq!(s.workers[0].health, WorkerHealth::Up);
    let sync = control::sync(&c.world, &c.services, &SyncRequest::default(), now(100)).reply;
    assert_eq!(sync.updates.len(), 1);
    assert_eq!(sync.updates[0].version, c.version());
}

#[test]
fn plans_are_deterministic() {
    let build = || {
        Cluster::new(&WEB.replace("min_replicas = 1", "min_replicas = 4"))
            .worker("w3", 4, 5.0, &[])
            .worker("w1", 4, 5.0, &[])
            .worker("w2", 4, 5.0, &[])
    };
    assert_eq!(build().plan(), build().plan());
}

#[test]
fn snapshots_are_republished_periodically() {
    let c = Cluster::with_settings(WEB, |s| s.reset_every_ms = 5_000);
    let mut c = c.worker("w1", 4, 5.0, &[healthy("web-a")]);
    assert_eq!(changes(&c.step()), ["reset[web-a]"]);
    let mut c = c.at(1_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    assert!(changes(&c.step()).is_empty());
    let v = c.version();
    let mut c = c.at(5_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert_eq!(changes(&p), ["reset[web-a]"]);
    assert_eq!(p.updates[0].version, v + 1);
}

fn scale_targets(p: &Plan) -> Vec<u32> {
    p.decisions
        .iter()
        .filter_map(|d| match d.action {
            DecisionAction::Scale { to, .. } => Some(to),
            _ => None,
        })
        .collect()
}

#[test]
fn restarted_brain_holds_what_runs_then_steps_down_slowly() {
    // A new brain finds 4 replicas and no load: it must not tear them down at once.
    let running = [
        healthy("web-a"),
        healthy("web-b"),
        healthy("web-c"),
        healthy("web-d"),
    ];
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &running);
    let p = c.step();
    assert!(scale_targets(&p).is_empty() && stops(&p).is_empty());
    let v = c.version();
    // Within the 10 s scale-down window: hold, tick after tick.
    for t in (500..10_000).step_by(500) {
        c = c.at(t).proxy(v, 0.0, &[]).worker("w1", 4, 5.0, &running);
        assert!(scale_targets(&c.step()).is_empty(), "held at {t} ms");
    }
    // After it: one step down (max_step_down 1), then no other before step_interval_s (3 s).
    let mut downs = Vec::new();
    for t in (10_500..17_000).step_by(500) {
        c = c.at(t).proxy(v, 0.0, &[]).worker("w1", 4, 5.0, &running);
        for to in scale_targets(&c.step()) {
            downs.push((t, to));
        }
    }
    let targets: Vec<u32> = downs.iter().map(|d| d.1).collect();
    assert_eq!(targets, [3, 2, 1], "{downs:?}");
    assert!(
        downs.windows(2).all(|w| w[1].0 - w[0].0 >= 3_000),
        "{downs:?}"
    );
}

#[test]
fn long_replica_ids_from_workers_do_not_break_commands() {
    let long = "x".repeat(64);
    let mut c = Cluster::new(WEB).worker(
        "w1",
        4,
        5.0,
        &[
            healthy("web-a"),
            (long.as_str(), "old", ReplicaState::Healthy),
        ],
    );
    let p = c.step();
    assert_eq!(stops(&p), [long]);
    assert!(p.commands.iter().all(|c| c.cmd.id.as_str().len() <= 64));
}

#[test]
fn a_replica_that_exits_while_starting_is_replaced_at_once() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[]);
    let p = c.step();
    let (w, r) = starts(&p)[0].clone();
    let exited = ReplicaEvent {
        v: 1,
        worker: w.parse().unwrap(),
        ts_ms: 0,
        replica: ReplicaStatus {
            id: r.parse().unwrap(),
            service: "web".parse().unwrap(),
            addr: "127.0.0.1:1".into(),
            state: ReplicaState::Exited,
            cpu_pct: 0.0,
            mem_bytes: 0,
            started_ms: 0,
            restarts: 0,
        },
        reason: "exited with status 1".into(),
    };
    c.world.apply(Event::Replica(exited), 300);
    let p = c.at(400).step();
    assert_eq!(
        starts(&p).len(),
        1,
        "replaced without waiting for the start timeout"
    );
}

fn downs(p: &Plan) -> Vec<String> {
    p.worker_events
        .iter()
        .filter(|e| e.health == WorkerHealth::Down)
        .map(|e| e.worker.to_string())
        .collect()
}

#[test]
fn a_brain_that_cannot_hear_marks_no_worker_down() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 2");
    let mut c = Cluster::new(&svc)
        .worker("w1", 4, 5.0, &[healthy("web-a")])
        .worker("w2", 4, 5.0, &[healthy("web-b")]);
    c.step();
    // The brain loses NATS: every worker looks silent on its clock. It acts on nothing.
    c.world.apply(Event::Connection { connected: false }, 1_000);
    let mut c = c.at(5_000);
    let p = c.step();
    assert_eq!(
        (downs(&p), p.commands.len(), p.updates.len()),
        (vec![], 0, 0),
        "{p:?}"
    );
    // Back: for one worker timeout (3 s) plus the reconnect slack (5 s) every worker has time
    // to reconnect and report again.
    c.world.apply(Event::Connection { connected: true }, 6_000);
    let mut c = c.at(6_500);
    let p = c.step();
    assert_eq!(
        (downs(&p), starts(&p), changes(&p)),
        (vec![], vec![], vec![]),
        "held after the reconnect"
    );
    let mut c = c.at(7_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    assert_eq!(downs(&c.step()), Vec::<String>::new());
    let mut c = c.at(13_500).worker("w1", 4, 5.0, &[healthy("web-a")]);
    assert_eq!(
        downs(&c.step()),
        Vec::<String>::new(),
        "still within the grace"
    );
    // w2 never reported after the grace: that is evidence about w2, and only w2.
    let mut c = c.at(14_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert_eq!(downs(&p), ["w2"]);
    assert_eq!(changes(&p), ["remove[web-b]"]);
    assert_eq!(
        starts(&p).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["w1"]
    );
}

#[test]
fn most_workers_silent_at_once_is_the_brains_own_problem() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 3");
    let mut c = Cluster::new(&svc)
        .worker("w1", 4, 5.0, &[healthy("web-a")])
        .worker("w2", 4, 5.0, &[healthy("web-b")])
        .worker("w3", 4, 5.0, &[healthy("web-c")]);
    c.step();
    // w2 and w3 fall silent together: 2 of 3. Nobody is marked down, nothing leaves rotation,
    // nothing is replaced, and it is said once.
    let mut c = c.at(4_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert_eq!(
        (downs(&p), starts(&p), changes(&p)),
        (vec![], vec![], vec![]),
        "{p:?}"
    );
    let said: Vec<&Decision> = p
        .decisions
        .iter()
        .filter(|d| d.action == DecisionAction::Blocked)
        .collect();
    assert_eq!(said.len(), 1, "{:?}", p.decisions);
    assert!(
        said[0]
            .reason
            .starts_with("full disruption: 2 of 3 workers went silent at once"),
        "{}",
        said[0].reason
    );
    assert!(p.disruption.as_ref().is_some_and(|(on, _)| *on));
    let mut c = c.at(5_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert!(
        p.decisions.is_empty() && p.disruption.is_none() && p.updates.is_empty(),
        "said once: {p:?}"
    );
    // w2 reports again: 1 of 3 silent is no longer most. w3 is down on its own evidence.
    let mut c = c
        .at(6_000)
        .worker("w1", 4, 5.0, &[healthy("web-a")])
        .worker("w2", 4, 5.0, &[healthy("web-b")]);
    let p = c.step();
    assert!(
        p.disruption.as_ref().is_some_and(|(on, _)| !*on),
        "{:?}",
        p.disruption
    );
    assert_eq!(downs(&p), ["w3"]);
    assert_eq!(changes(&p), ["remove[web-c]"]);
    assert_eq!(starts(&p).len(), 1);
}

#[test]
fn one_worker_of_two_dying_is_still_marked_down() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 2");
    let mut c = Cluster::new(&svc)
        .worker("w1", 4, 5.0, &[healthy("web-a")])
        .worker("w2", 4, 5.0, &[healthy("web-b")]);
    c.step();
    let mut c = c.at(4_000).worker("w1", 4, 5.0, &[healthy("web-a")]);
    let p = c.step();
    assert_eq!(downs(&p), ["w2"], "1 of 2 is not a disruption");
    assert!(p.disruption.is_none());
}

#[test]
fn workers_and_proxies_gone_long_ago_are_forgotten() {
    let svc = WEB.replace("min_replicas = 1", "min_replicas = 0");
    let mut c = Cluster::new(&svc)
        .worker("w1", 4, 5.0, &[])
        .worker("w2", 4, 5.0, &[])
        .proxy(0, 0.0, &[]);
    c.step();
    assert_eq!(
        c.world.settings().forget_after_ms,
        30_000,
        "10 worker timeouts"
    );
    // w2 dies: marked down at once, forgotten only after 30 s of silence.
    let mut c = c.at(4_000).worker("w1", 4, 5.0, &[]);
    assert_eq!(downs(&c.step()), ["w2"]);
    let mut c = c.at(29_000).worker("w1", 4, 5.0, &[]);
    c.step();
    assert_eq!(c.world.workers().len(), 2, "still remembered");
    assert_eq!(c.world.proxies().len(), 1);
    let mut c = c.at(30_100).worker("w1", 4, 5.0, &[]);
    let p = c.step();
    assert!(
        p.worker_events.is_empty(),
        "forgetting is not news: {:?}",
        p.worker_events
    );
    assert_eq!(
        c.world
            .workers()
            .keys()
            .map(|w| w.as_str())
            .collect::<Vec<_>>(),
        ["w1"]
    );
    assert!(c.world.proxies().is_empty(), "the proxy went silent at 0");
    // Back after all: a new worker, announced up again.
    let mut c = c.at(31_000).worker("w2", 4, 5.0, &[]);
    let p = c.step();
    assert_eq!(
        p.worker_events
            .iter()
            .map(|e| (e.worker.as_str(), e.health))
            .collect::<Vec<_>>(),
        [("w2", WorkerHealth::Up)]
    );
}

#[test]
fn distinct_ids_are_capped() {
    let c = Cluster::with_settings(WEB, |s| s.max_ids = 2);
    let c = c
        .worker("w1", 4, 5.0, &[])
        .worker("w2", 4, 5.0, &[])
        .worker("w3", 4, 5.0, &[]);
    assert_eq!(c.world.refused_ids(), 1);
    assert_eq!(
        c.world
            .workers()
            .keys()
            .map(|w| w.as_str())
            .collect::<Vec<_>>(),
        ["w1", "w2"]
    );
    // Known ids still report.
    let mut c = c.at(100).worker("w2", 4, 5.0, &[]);
    assert_eq!(
        (
            c.world.refused_ids(),
            c.world.workers()[&"w2".parse::<WorkerId>().unwrap()].last_seen
        ),
        (1, 100)
    );
    c.step();
}

#[test]
fn a_removed_service_is_withdrawn_and_left_out_of_syncs() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[healthy("web-a")]);
    // A proxy still routes `old`, from a brain that ran with another services file.
    let old = ServiceTraffic {
        service: "old".parse().unwrap(),
        version: 7,
        totals: Traffic::default(),
        backends: vec![BackendTraffic {
            id: "old-a".parse().unwrap(),
            traffic: Traffic::default(),
            draining: false,
            ejected: false,
        }],
    };
    let m = ProxyMetrics {
        v: 1,
        proxy: "p1".parse().unwrap(),
        ts_ms: 0,
        interval_ms: 1000,
        services: vec![old],
        unrouted: 0,
        rejected: 0,
    };
    c.world.apply(Event::Proxy(m), 0);
    let p = c.step();
    assert_eq!(p.withdrawn, ["old".parse::<ServiceName>().unwrap()]);
    let withdrawal = p
        .updates
        .iter()
        .find(|u| u.service.as_str() == "old")
        .expect("an explicit message for old");
    assert_eq!(
        withdrawal.change,
        BackendChange::Withdraw,
        "the proxies drop the route: no backend left to reach a reused port"
    );
    assert!(withdrawal.version > 7, "newer than what the proxy holds");
    // A full sync holds the declared services only.
    let sync = control::sync(&c.world, &c.services, &SyncRequest::default(), now(c.now)).reply;
    assert_eq!(
        sync.updates
            .iter()
            .map(|u| u.service.as_str())
            .collect::<Vec<_>>(),
        ["web"]
    );
    // Said once per reset period, not on every plan.
    let mut c = c.at(500).worker("w1", 4, 5.0, &[healthy("web-a")]);
    assert!(c.step().withdrawn.is_empty());
}

const REBALANCED: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/" }
policy = { min_replicas = 2, max_replicas = 2, drain_timeout_s = 5 }
rebalance = { enabled = true, moves_per_minute = 1, cpu_gap_pct = 40 }
"#;

/// Rebalance, through the whole decision: one replica moves off the hot worker to the cold
/// one, make-before-break, and the budget holds a second move for a minute.
#[test]
fn rebalance_moves_one_replica_off_a_hot_worker_make_before_break_under_a_budget() {
    use ReplicaState::Healthy;
    let mut c = Cluster::new(REBALANCED)
        .worker("w1", 4, 95.0, &[("a", "web", Healthy)])
        .worker("w2", 4, 50.0, &[("b", "web", Healthy)])
        .worker("w3", 4, 5.0, &[])
        .proxy(0, 0.0, &[("a", 0), ("b", 0)]);
    let p = c.step(); // publishes a and b
    assert!(starts(&p).is_empty(), "{:?}", starts(&p));
    c = c.at(100);
    let p = c.step();
    let started = starts(&p);
    assert_eq!(started.len(), 1, "one replacement: {started:?}");
    assert_eq!(
        started[0].0, "w3",
        "to the cold worker, never back onto the hot one"
    );
    let place = p
        .decisions
        .iter()
        .find(|d| matches!(d.action, DecisionAction::Place { .. }))
        .unwrap();
    assert!(
        place.reason.contains("rebalance") && place.reason.contains("w1"),
        "{}",
        place.reason
    );
    assert!(
        stops(&p).is_empty(),
        "nothing leaves before the replacement serves"
    );
    let new = started[0].1.clone();

    // The replacement is healthy; once published, a is released (relocate), then drained.
    c = c
        .at(200)
        .worker("w3", 4, 5.0, &[(new.as_str(), "web", Healthy)]);
    let v = c.version();
    c = c.proxy(v, 0.0, &[("a", 0), ("b", 0), (new.as_str(), 0)]);
    let p1 = c.step();
    c = c.at(300);
    let p2 = c.step();
    let all: Vec<&Decision> = p1.decisions.iter().chain(&p2.decisions).collect();
    assert!(
        all.iter().any(|d| matches!(&d.action, DecisionAction::Relocate { replica, to, .. } if replica.as_str() == "a" && to.as_str() == "w3")),
        "a relocates to w3: {all:?}"
    );
    // a goes through the usual drain and stop; then the service is steady again at 2.
    let mut stopped = Vec::new();
    for t in [400, 600, 6_000, 12_000] {
        c = c
            .at(t)
            .worker("w1", 4, 95.0, &[("a", "web", Healthy)])
            .worker("w3", 4, 5.0, &[(new.as_str(), "web", Healthy)]);
        let v = c.version();
        c = c.proxy(v, 0.0, &[("b", 0), (new.as_str(), 0)]);
        stopped.extend(stops(&c.step()));
    }
    assert_eq!(
        stopped.first().map(String::as_str),
        Some("a"),
        "a is stopped after its drain: {stopped:?}"
    );

    // w1 is still the hottest, but a second move waits for the budget (1 per minute).
    c = c
        .at(20_000)
        .worker("w1", 4, 95.0, &[])
        .worker("w2", 4, 90.0, &[("b", "web", Healthy)]);
    c = c.worker("w3", 4, 5.0, &[(new.as_str(), "web", Healthy)]);
    let v = c.version();
    c = c.proxy(v, 0.0, &[("b", 0), (new.as_str(), 0)]);
    let p = c.step();
    assert!(
        starts(&p).is_empty(),
        "no second move within the minute: {:?}",
        p.decisions
    );
    // A minute after the first move, w2 (90%) vs w1 (95%, empty, so it may take one): b moves.
    c = c
        .at(70_000)
        .worker("w1", 4, 5.0, &[])
        .worker("w2", 4, 90.0, &[("b", "web", Healthy)]);
    c = c.worker("w3", 4, 5.0, &[(new.as_str(), "web", Healthy)]);
    let v = c.version();
    c = c.proxy(v, 0.0, &[("b", 0), (new.as_str(), 0)]);
    let p = c.step();
    assert_eq!(
        starts(&p).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["w1"],
        "{:?}",
        p.decisions
    );
}

fn replace(c: &mut Cluster, replica: &str) -> ReplicaReply {
    let req = ReplicaRequest {
        v: 1,
        replica: replica.into(),
        action: ReplicaAction::Replace,
    };
    let answer = control::replace(&c.world, &c.services, &req);
    c.answer(answer)
}

#[test]
fn replace_starts_a_replacement_then_drains_the_old_one() {
    let mut c = Cluster::new(WEB).worker("w1", 4, 5.0, &[healthy("web-a")]);
    c.step();
    let r = replace(&mut c, "web-a");
    assert!(r.ok, "{r:?}");
    assert_eq!(r.service.as_deref(), Some("web"));
    // Make-before-break: a replacement starts (on the only worker there is), web-a still serves.
    let p = c.step();
    let started = starts(&p);
    assert_eq!(started.len(), 1, "{p:?}");
    assert_eq!(started[0].0, "w1");
    assert!(
        stops(&p).is_empty() && !changes(&p).iter().any(|c| c.starts_with("drain")),
        "{p:?}"
    );
    assert!(
        p.decisions
            .iter()
            .any(|d| d.reason.contains("requested by an operator")),
        "{:?}",
        p.decisions
    );
    // A second replace while this one moves is refused.
    let again = replace(&mut c, "web-a");
    assert!(
        !again.ok && again.error.as_deref().unwrap().contains("already moving"),
        "{again:?}"
    );

    // The replacement is healthy: it is published, and only then web-a drains.
    let new = started[0].1.clone();
    let mut c = c
        .at(1000)
        .worker("w1", 4, 5.0, &[healthy("web-a"), healthy(&new)]);
    let p = c.step();
    assert_eq!(changes(&p), [format!("add[{new}]")]);
    let v = c.version();
    let mut c =
        c.at(1500)
            .proxy(v, 0.0, &[])
            .worker("w1", 4, 5.0, &[healthy("web-a"), healthy(&new)]);
    let p = c.step();
    assert_eq!(changes(&p), ["drain[web-a]"], "{p:?}");
    assert!(p.decisions.iter().any(|d| matches!(&d.action, DecisionAction::Relocate { replica, .. } if replica.as_str() == "web-a")));
    let drain_v = p.updates[0].version;
    let mut c = c.at(2000).proxy(drain_v, 0.0, &[("web-a", 0)]).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), healthy(&new)],
    );
    assert_eq!(stops(&c.step()), ["web-a"]);
    // Gone: the move is over, and the next replace may start.
    let mut c = c.at(2500).worker("w1", 4, 5.0, &[healthy(&new)]);
    let p = c.step();
    assert!(p.commands.is_empty(), "{p:?}");
    assert!(replace(&mut c, &new).ok);
}

#[test]
fn replace_refuses_what_it_cannot_move() {
    let mut c = Cluster::new(WEB).worker(
        "w1",
        4,
        5.0,
        &[healthy("web-a"), ("web-b", "web", ReplicaState::Starting)],
    );
    c.step();
    let unknown = replace(&mut c, "web-zz");
    assert!(
        unknown
            .error
            .as_deref()
            .unwrap()
            .contains("unknown replica web-zz"),
        "{unknown:?}"
    );
    let starting = replace(&mut c, "web-b");
    assert!(
        starting.error.as_deref().unwrap().contains("not healthy"),
        "{starting:?}"
    );
    let bad = replace(&mut c, "no spaces allowed");
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .contains("not a valid replica id"),
        "{bad:?}"
    );
    // Nothing moved.
    assert!(c.world.services()[&"web".parse::<ServiceName>().unwrap()]
        .moves
        .moving
        .is_none());
}
