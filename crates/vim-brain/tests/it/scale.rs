//! The brain's answers and messages at the target scale, with plain data: a status for
//! thousands of workers fits in the payload limit and pages; backend snapshots of 10,000
//! backends are split and reassemble; a sync reply stays under the limit and has the rest
//! republished.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::*;
use vim_brain::control;
use vim_brain::{plan, Event, Now, Services, Settings, World};

const WORKERS: usize = 2_000;
const PER_WORKER: usize = 10;

fn now(ms: u64) -> Now {
    Now {
        mono: ms,
        unix_ms: 1_700_000_000_000 + ms,
    }
}

/// Two services of 10,000 replicas each (min = max = what runs), on 2,000 workers.
fn cluster() -> (World, Services) {
    let per_service = WORKERS * PER_WORKER / 2;
    let services = Services::parse(&format!(
        r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{{port}}"]
route = {{ path_prefix = "/" }}
policy = {{ min_replicas = {per_service}, max_replicas = {per_service}, target_cpu_pct = 70 }}

[[service]]
name = "api"
command = ["demo-web", "--port", "{{port}}"]
route = {{ path_prefix = "/api" }}
policy = {{ min_replicas = {per_service}, max_replicas = {per_service}, target_cpu_pct = 70 }}
"#
    ))
    .unwrap();
    let settings = Settings {
        warmup_ms: 0,
        reset_every_ms: u64::MAX,
        ..Settings::default()
    };
    let mut world = World::new(settings, now(0));
    for w in 0..WORKERS {
        let worker = format!("w{w:05}");
        let replicas = (0..PER_WORKER)
            .map(|j| ReplicaStatus {
                id: format!("{worker}-r{j}").parse().unwrap(),
                service: if j % 2 == 0 { "web" } else { "api" }.parse().unwrap(),
                addr: format!("10.0.{}.{}:{}", w / 256, w % 256, 20_000 + j),
                state: ReplicaState::Healthy,
                cpu_pct: 10.0,
                mem_bytes: 0,
                started_ms: 0,
                restarts: 0,
            })
            .collect();
        let m = WorkerMetrics {
            v: 1,
            worker: worker.parse().unwrap(),
            seq: 1,
            ts_ms: 0,
            started_ms: 0,
            instance: String::new(),
            interval_ms: 1000,
            runtime: RuntimeKind::Process,
            host: HostMetrics {
                cpu_pct: 30.0,
                cpus: 4,
                ..Default::default()
            },
            capacity: Capacity {
                max_replicas: 16,
                running: PER_WORKER as u32,
            },
            replicas,
            rejected: 0,
        };
        world.apply(Event::WorkerMetrics(m), 0);
    }
    (world, services)
}

/// Applies updates as a proxy does: a reset replaces, a delta must be exactly the next version.
fn apply(
    table: &mut BTreeMap<ServiceName, (u64, BTreeMap<ReplicaId, Backend>)>,
    u: &BackendUpdate,
) {
    match &u.change {
        BackendChange::Reset { backends, .. } => {
            let entry = table.entry(u.service.clone()).or_default();
            if entry.0 < u.version || entry.1.is_empty() {
                *entry = (
                    u.version,
                    backends.iter().map(|b| (b.id.clone(), b.clone())).collect(),
                );
            }
        }
        BackendChange::Add { backends } => {
            let entry = table.get_mut(&u.service).expect("a reset first");
            assert_eq!(u.version, entry.0 + 1, "consecutive versions");
            entry.0 = u.version;
            entry
                .1
                .extend(backends.iter().map(|b| (b.id.clone(), b.clone())));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn snapshots_of_10000_backends_are_split_under_the_limit_and_reassemble() {
    let (mut world, services) = cluster();
    let p = plan(&world, &services, now(10));
    assert!(
        p.commands.is_empty(),
        "min = max = running: nothing to place or stop"
    );
    let mut table = BTreeMap::new();
    for u in &p.updates {
        let bytes = encode(u);
        assert!(
            bytes.len() <= MAX_PAYLOAD,
            "{} v{} is {} bytes",
            u.service,
            u.version,
            bytes.len()
        );
        apply(&mut table, &decode::<BackendUpdate>(&bytes).unwrap());
    }
    assert!(p.updates.len() > 4, "{} updates", p.updates.len());
    for name in ["web", "api"] {
        assert_eq!(
            table[&name.parse::<ServiceName>().unwrap()].1.len(),
            10_000,
            "{name}"
        );
    }
    world.apply(Event::PlanSent(p.bookkeeping), 10);

    // A proxy's sync: one reply under the limit, naming both services, each cut to its share
    // at its current version; the brain republishes both as fresh split resets.
    let sync = control::sync(&world, &services, &SyncRequest::default(), now(20));
    let bytes = encode(&sync.reply);
    assert!(
        bytes.len() <= MAX_PAYLOAD,
        "sync reply is {} bytes",
        bytes.len()
    );
    let named: BTreeSet<&str> = sync
        .reply
        .updates
        .iter()
        .map(|u| u.service.as_str())
        .collect();
    assert_eq!(named, BTreeSet::from(["api", "web"]));
    for u in &sync.reply.updates {
        assert_eq!(
            u.version,
            world.service(&u.service).unwrap().routing.version
        );
    }
    assert_eq!(sync.resend.len(), 2);
    let mut synced = BTreeMap::new();
    for u in &sync.reply.updates {
        apply(&mut synced, u);
    }
    world.apply(Event::ResetDue(sync.resend), 20);
    let p = plan(&world, &services, now(30));
    assert!(p.updates.iter().all(|u| encode(u).len() <= MAX_PAYLOAD));
    for u in &p.updates {
        apply(&mut synced, u);
    }
    for (service, (_, backends)) in &table {
        assert_eq!(
            &synced[service].1, backends,
            "{service} whole again after the fresh reset"
        );
    }
    world.apply(Event::PlanSent(p.bookkeeping), 30);
    assert!(
        plan(&world, &services, now(40)).updates.is_empty(),
        "the requested resets were sent once"
    );
}

#[test]
fn a_status_of_2000_workers_is_a_summary_under_the_limit_and_its_lists_page() {
    let (mut world, services) = cluster();
    let p = plan(&world, &services, now(10));
    world.apply(Event::PlanSent(p.bookkeeping), 10);

    let s = control::status(&world, &services, now(20));
    assert!(
        encode(&s).len() + 1024 <= MAX_PAYLOAD,
        "{} bytes",
        encode(&s).len()
    );
    assert_eq!(
        s.page.as_ref().map(|p| p.detail),
        Some(StatusDetail::Summary)
    );
    assert!(
        s.workers.is_empty()
            && s.services
                .iter()
                .all(|v| v.replicas.is_empty() && v.backends.is_empty())
    );
    let sum = s.summary.as_ref().unwrap();
    assert_eq!(
        (sum.workers_up, sum.workers_down, sum.replicas),
        (WORKERS as u32, 0, (WORKERS * PER_WORKER) as u64)
    );
    assert!(s
        .services
        .iter()
        .all(|v| v.replicas_total == 10_000 && v.backends_total == 10_000 && v.running == 10_000));

    // The workers, page by page: every one, once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let req = StatusRequest {
            workers: true,
            offset,
            ..Default::default()
        };
        let r = control::status_page(&world, &services, &req, now(20)).unwrap();
        assert!(encode(&r).len() + 1024 <= MAX_PAYLOAD);
        let page = r.page.unwrap();
        assert_eq!(
            (page.detail, page.offset, page.total),
            (StatusDetail::Workers, offset, WORKERS as u32)
        );
        assert!(page.count as usize == r.workers.len() && page.count <= STATUS_PAGE_MAX);
        seen.extend(r.workers.into_iter().map(|w| w.id));
        match page.next {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), WORKERS);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), WORKERS);

    // One service's replicas and backends, a page of them; a smaller limit is honoured.
    let req = StatusRequest {
        service: Some("web".parse().unwrap()),
        offset: 9_990,
        ..Default::default()
    };
    let r = control::status_page(&world, &services, &req, now(20)).unwrap();
    let web = r
        .services
        .iter()
        .find(|v| v.name.as_str() == "web")
        .unwrap();
    assert_eq!((web.replicas.len(), web.backends.len()), (10, 10));
    assert!(r
        .services
        .iter()
        .filter(|v| v.name.as_str() != "web")
        .all(|v| v.replicas.is_empty()));
    assert_eq!(
        r.page.as_ref().map(|p| (p.total, p.next)),
        Some((10_000, None))
    );
    let req = StatusRequest {
        service: Some("api".parse().unwrap()),
        limit: Some(7),
        ..Default::default()
    };
    let r = control::status_page(&world, &services, &req, now(20)).unwrap();
    assert_eq!(r.page.map(|p| (p.count, p.next)), Some((7, Some(7))));

    let req = StatusRequest {
        service: Some("nope".parse().unwrap()),
        ..Default::default()
    };
    let err = control::status_page(&world, &services, &req, now(20)).unwrap_err();
    assert!(
        err.contains("unknown service \"nope\"") && err.contains("web"),
        "{err}"
    );
}
