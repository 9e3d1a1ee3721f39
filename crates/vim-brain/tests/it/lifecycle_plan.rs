//! Lifecycle states and the crash-loop backoff through the whole decision, with plain data and
//! a clock moved by hand (no NATS, no tokio).

use acs_events::*;
use vim_brain::control;
use vim_brain::{plan, Event, Now, Plan, Services, Settings, World};

const WEB: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 4 }
"#;

fn now(ms: u64) -> Now {
    Now {
        mono: ms,
        unix_ms: 1_700_000_000_000 + ms,
    }
}

struct Cluster {
    world: World,
    services: Services,
}

impl Cluster {
    fn new() -> Self {
        let settings = Settings {
            warmup_ms: 0,
            reset_every_ms: u64::MAX,
            ..Settings::default()
        };
        Self {
            world: World::new(settings, now(0)),
            services: Services::parse(WEB).unwrap(),
        }
    }

    fn report(&mut self, at: u64, replicas: Vec<ReplicaStatus>) {
        let m = WorkerMetrics {
            v: 1,
            worker: "w1".parse().unwrap(),
            seq: 1,
            ts_ms: 0,
            started_ms: 0,
            instance: String::new(),
            interval_ms: 1000,
            runtime: RuntimeKind::Process,
            host: HostMetrics {
                cpus: 2,
                ..Default::default()
            },
            capacity: Capacity {
                max_replicas: 4,
                running: replicas.len() as u32,
            },
            replicas,
            rejected: 0,
        };
        self.world.apply(Event::WorkerMetrics(m), at);
    }

    fn step(&mut self, at: u64) -> Plan {
        self.report(at, self.world.reported(&"w1".parse().unwrap()).to_vec());
        let p = plan(&self.world, &self.services, now(at));
        self.world.apply(Event::PlanSent(p.bookkeeping.clone()), at);
        p
    }

    fn exit(&mut self, at: u64, replica: &str) {
        let ev = ReplicaEvent {
            v: 1,
            worker: "w1".parse().unwrap(),
            ts_ms: 1_700_000_000_000 + at,
            replica: status(replica, ReplicaState::Exited, at),
            reason: "exited with status 1".into(),
        };
        self.world.apply(Event::Replica(ev), at);
    }

    fn lifecycle(&self, at: u64) -> Lifecycle {
        control::status(&self.world, &self.services, now(at)).services[0]
            .lifecycle
            .clone()
    }
}

fn status(id: &str, state: ReplicaState, at: u64) -> ReplicaStatus {
    ReplicaStatus {
        id: id.parse().unwrap(),
        service: "web".parse().unwrap(),
        addr: "127.0.0.1:40001".into(),
        state,
        cpu_pct: 0.0,
        mem_bytes: 0,
        started_ms: 1_700_000_000_000 + at.saturating_sub(100),
        restarts: 0,
    }
}

fn started(p: &Plan) -> Vec<String> {
    p.commands
        .iter()
        .filter(|c| c.is_start())
        .map(|c| c.replica.to_string())
        .collect()
}

fn changes(p: &Plan) -> Vec<(LifecycleState, LifecycleState)> {
    let f = |d: &Decision| match d.action {
        DecisionAction::Lifecycle { from, to } => Some((from, to)),
        _ => None,
    };
    p.decisions.iter().filter_map(f).collect()
}

#[test]
fn a_healthy_service_goes_creating_then_running() {
    let mut c = Cluster::new();
    let p = c.step(0);
    let r = started(&p).remove(0);
    assert_eq!(changes(&p), [], "Creating from the start");
    assert_eq!(c.lifecycle(0).state, LifecycleState::Creating);
    assert!(p
        .decisions
        .iter()
        .all(|d| d.lifecycle.as_ref().map(|l| l.state) == Some(LifecycleState::Creating)));

    c.report(500, vec![status(&r, ReplicaState::Healthy, 500)]);
    let p = c.step(600);
    assert_eq!(
        changes(&p),
        [(LifecycleState::Creating, LifecycleState::Running)]
    );
    assert_eq!(
        c.lifecycle(600),
        Lifecycle {
            state: LifecycleState::Running,
            reason: None
        }
    );
    assert_eq!(changes(&c.step(700)), [], "said once");
}

#[test]
fn a_crashing_service_backs_off_and_is_failed_with_the_exit_reason() {
    let mut c = Cluster::new();
    let mut starts = vec![];
    let mut blocked = 0;
    let mut failed_at = None;
    // 40 s of ticks every 100 ms; every replica exits 100 ms after it was started.
    let mut pending: Option<(String, u64)> = None;
    for tick in 0..400u64 {
        let t = tick * 100;
        if let Some((r, at)) = pending.take_if(|(_, at)| t >= *at + 100) {
            c.report(at + 50, vec![status(&r, ReplicaState::Starting, at + 50)]);
            c.exit(t, &r);
        }
        let p = c.step(t);
        blocked += p
            .decisions
            .iter()
            .filter(|d| d.action == DecisionAction::Blocked)
            .count();
        if failed_at.is_none()
            && changes(&p)
                .iter()
                .any(|(_, to)| *to == LifecycleState::Failed)
        {
            failed_at = Some(t);
        }
        for r in started(&p) {
            assert!(pending.is_none(), "one at a time");
            starts.push(t);
            pending = Some((r, t));
        }
    }
    // The first crash is replaced at once, then waits of 1, 2, 4, 8, 16 s: 7 starts in 40 s, not 200.
    assert!((6..=8).contains(&starts.len()), "starts at {starts:?}");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).skip(1).all(|g| g[1] > g[0]),
        "waits grow: {gaps:?}"
    );
    assert_eq!(
        blocked,
        starts.len() - 1,
        "one explanation per backoff step (the first crash has none)"
    );
    assert!(failed_at.is_some());
    let lc = c.lifecycle(40_000);
    assert_eq!(lc.state, LifecycleState::Failed);
    let reason = lc.reason.unwrap();
    assert!(
        reason.starts_with("crash loop: web-")
            && reason.contains("exited with status 1; next start in"),
        "{reason}"
    );
}
