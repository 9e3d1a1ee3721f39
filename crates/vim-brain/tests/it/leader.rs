//! Many brains, one leader, over a real nats-server with JetStream: exactly one brain answers
//! and commands; when it dies without a word (its task aborted, as `kill -9` would), the other
//! takes over with a higher term, keeps the pins, and starts nothing twice.

use std::time::{Duration, Instant};

use acs_events::*;
use acs_testkit::NatsServer;
use futures::StreamExt;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brains_one_leader_and_a_takeover_without_duplicates() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let worker = fake_worker(client.clone());
    let _load = fake_proxy(client.clone());
    let mut commands = client.subscribe("acs.cmd.worker.w1").await.unwrap();
    let mut leaders = client.subscribe("acs.events.leader").await.unwrap();

    let a = Brain::start_as(&nats.url(), "brain-a", 1000);
    eventually("a leads", || async { try_status(&client).await.is_some() }).await;
    let b = Brain::start_as(&nats.url(), "brain-b", 1000);
    scale(&client, r#"{"service":"web","replicas":3}"#).await;
    eventually("3 running", || async {
        worker.running.lock().unwrap().len() == 3
    })
    .await;
    let first = status(&client).await.brain.expect("brain info");
    assert_eq!((first.instance.as_str(), first.leader), ("brain-a", true));

    // Every command so far came from a's term, and only 3 starts for 3 replicas.
    let mut terms = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), commands.next()).await
    {
        terms.push(decode::<WorkerCommand>(&m.payload).unwrap().term);
    }
    assert!(
        !terms.is_empty() && terms.iter().all(|t| *t == first.term),
        "terms {terms:?}, leader's {}",
        first.term
    );
    assert_eq!(worker.start_count(), 3, "the standby placed nothing");
    let running = worker.running_ids();

    // a dies without releasing its lease.
    a.task.abort();
    let died = Instant::now();
    let taken = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = leaders.next().await {
            let ev: LeaderEvent = decode(&m.payload).unwrap();
            if ev.brain == "brain-b" && ev.change == LeaderChange::Elected {
                return ev;
            }
        }
        unreachable!()
    })
    .await
    .expect("b is elected");
    assert!(
        taken.term > first.term,
        "a higher term: {} after {}",
        taken.term,
        first.term
    );
    eprintln!("takeover after {:?} (lease 1000 ms)", died.elapsed());

    let s = status(&client).await;
    let info = s.brain.clone().unwrap();
    assert_eq!((info.instance.as_str(), info.term), ("brain-b", taken.term));
    assert_eq!(
        (s.services[0].mode, s.services[0].desired),
        (ScaleMode::Manual, 3),
        "the pin survived the failover"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        worker.start_count(),
        3,
        "no start after the takeover: the warm standby knew what runs"
    );
    assert_eq!(worker.running_ids(), running, "the same replicas");

    // The new leader commands in its own term.
    scale(&client, r#"{"service":"web","replicas":4}"#).await;
    eventually("4 running", || async {
        worker.running.lock().unwrap().len() == 4
    })
    .await;
    let cmd = loop {
        let m = tokio::time::timeout(Duration::from_secs(5), commands.next())
            .await
            .unwrap()
            .unwrap();
        let c: WorkerCommand = decode(&m.payload).unwrap();
        if matches!(c.action, Action::Start { .. }) {
            break c;
        }
    };
    assert_eq!(cmd.term, taken.term);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_cleanly_hands_over_at_once() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let _worker = fake_worker(client.clone());
    let _load = fake_proxy(client.clone());
    // A long lease: only the release can explain a quick handover.
    let a = Brain::start_as(&nats.url(), "brain-a", 30_000);
    eventually("a leads", || async { try_status(&client).await.is_some() }).await;
    let b = Brain::start_as(&nats.url(), "brain-b", 30_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = status(&client).await.brain.unwrap().term;
    a.stop().await;
    acs_testkit::poll::until(
        "b leads well before a 30 s lease could expire",
        Duration::from_secs(5),
        || async {
            try_status(&client)
                .await
                .and_then(|s| s.brain)
                .is_some_and(|b| b.instance == "brain-b" && b.term > t0)
        },
    )
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brain_without_jetstream_refuses_to_start_and_says_why() {
    // A server without JetStream: nats-server started by hand, no -js.
    let port = acs_testkit::free_port();
    let mut child = std::process::Command::new(acs_testkit::nats_server_bin())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    acs_testkit::wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).unwrap();
    let config = vim_brain::Config {
        nats: acs_node::NatsOptions::new(format!("nats://127.0.0.1:{port}")),
        ..vim_brain::Config::default()
    };
    let services = vim_brain::Services::parse(SERVICES).unwrap();
    let run = vim_brain::run(config, services, std::future::pending());
    let err = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("refuses")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("acs_brain") && msg.contains("JetStream"),
        "{msg}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_nats_and_the_loop() {
    let mut nats = NatsServer::start();
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], acs_testkit::free_port()));
    let config = vim_brain::Config {
        nats: acs_node::NatsOptions::new(nats.url()),
        tick: Duration::from_millis(100),
        health_listen: Some(health),
        ..vim_brain::Config::default()
    };
    let services = vim_brain::Services::parse(SERVICES).unwrap();
    let brain = tokio::spawn(vim_brain::run(config, services, std::future::pending()));
    let until = |path: &'static str, want| {
        acs_testkit::http::until_status(health, path, want, Duration::from_secs(30))
    };
    // Leader or standby, a brain whose loop turns on a live connection is ready.
    until("/readyz", 200).await.unwrap();
    nats.stop();
    until("/readyz", 503).await.unwrap();
    until("/healthz", 200).await.unwrap();
    brain.abort();
}
