//! Two processes under one worker id, over a real nats-server: the second is refused, counted
//! and reported once on `acs.events.worker.<id>`; the first keeps the id.

use std::time::Duration;

use acs_events::*;
use acs_testkit::NatsServer;
use futures::StreamExt;

use crate::common::*;

fn report(instance: &str, started_ms: u64, seq: u64) -> Vec<u8> {
    let mut m = metrics(seq, vec![]);
    m.instance = instance.into();
    m.started_ms = started_ms;
    m.ts_ms = started_ms + seq * 200;
    encode(&m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_under_a_live_worker_id_is_refused_and_reported_once() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = client.subscribe("acs.events.worker.w1").await.unwrap();
    let _brain = Brain::start(&nats.url());
    eventually("brain answers", || async {
        try_status(&client).await.is_some()
    })
    .await;

    // Both publish, interleaved, for 3 s: "first" started earlier and never goes silent.
    for seq in 1..=15u64 {
        client
            .publish("acs.metrics.worker.w1", report("first", 1_000, seq).into())
            .await
            .unwrap();
        if seq > 2 {
            client
                .publish(
                    "acs.metrics.worker.w1",
                    report("second", 50_000, seq).into(),
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut duplicates = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        let ev: WorkerEvent = decode(&m.payload).unwrap();
        if ev.health == WorkerHealth::Duplicate {
            duplicates.push(ev.reason);
        }
    }
    assert_eq!(duplicates.len(), 1, "announced once: {duplicates:?}");
    assert!(
        duplicates[0].contains("second") && duplicates[0].contains("first"),
        "{}",
        duplicates[0]
    );
    let s = status(&client).await;
    assert!(
        s.rejected >= 10,
        "every refused report is counted: {}",
        s.rejected
    );
    let w1 = s
        .workers
        .iter()
        .find(|w| w.id.as_str() == "w1")
        .expect("w1 known");
    assert_eq!(
        w1.health,
        WorkerHealth::Up,
        "the first instance keeps the id"
    );
}
