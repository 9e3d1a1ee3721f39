//! Manual pins against a real nats-server, with the fake worker and proxy of `common`: a pin
//! holds against the policy, `auto` hands the service back, and a restarted brain restores its
//! pins from the brains' JetStream KV bucket and places nothing twice.

use std::time::Duration;

use acs_events::*;
use acs_testkit::NatsServer;
use futures::StreamExt;

use crate::common::*;

/// The scale decisions published on `web` within `window`.
async fn scale_decisions(
    decisions: &mut async_nats::Subscriber,
    window: Duration,
) -> Vec<DecisionAction> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Some(m) = decisions.next().await {
            let d: Decision = decode(&m.payload).unwrap();
            if matches!(d.action, DecisionAction::Scale { .. }) {
                seen.push(d.action);
            }
        }
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_holds_past_the_scale_down_window_and_auto_hands_it_back() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let worker = fake_worker(client.clone());
    let load = fake_proxy(client.clone()); // 0 rps: the policy wants min_replicas (1)
    let _brain = Brain::start(&nats.url());
    eventually("min_replicas placed", || async {
        try_status(&client)
            .await
            .is_some_and(|s| s.services[0].running == 1)
    })
    .await;

    scale(&client, r#"{"service":"web","replicas":3}"#).await;
    eventually("3 running", || async {
        status(&client).await.services[0].running == 3
    })
    .await;
    // Idle load and a 1 s scale-down window: the policy would step down. The pin holds.
    let mut decisions = client.subscribe("acs.events.decision.web").await.unwrap();
    let during_pin = scale_decisions(&mut decisions, Duration::from_secs(4)).await;
    assert_eq!(during_pin, [], "no scale decision while pinned");
    let s = status(&client).await;
    assert_eq!(
        (
            s.services[0].mode,
            s.services[0].desired,
            s.services[0].running
        ),
        (ScaleMode::Manual, 3, 3)
    );
    assert_eq!(worker.running.lock().unwrap().len(), 3);

    // Handed back: the policy steps down to min_replicas, one step at a time.
    let reply = scale(&client, r#"{"service":"web","auto":true}"#).await;
    assert_eq!(reply["mode"], "auto", "{reply}");
    assert!(
        reply["note"]
            .as_str()
            .unwrap()
            .contains("back under its policy"),
        "{reply}"
    );
    eventually("back to min_replicas under the policy", || async {
        let s = status(&client).await;
        s.services[0].mode == ScaleMode::Auto
            && s.services[0].desired == 1
            && s.services[0].running == 1
    })
    .await;
    let after_auto = scale_decisions(&mut decisions, Duration::from_millis(500)).await;
    let steps = [
        DecisionAction::Scale {
            from: 3,
            to: 2,
            manual: false,
        },
        DecisionAction::Scale {
            from: 2,
            to: 1,
            manual: false,
        },
    ];
    assert_eq!(
        after_auto, steps,
        "the policy's own steps (max_step_down 1)"
    );
    eventually("the worker stopped the extra replicas", || async {
        worker.running.lock().unwrap().len() == 1
    })
    .await;

    // And it answers load again: 70 rps over a target of 20 per replica.
    *load.lock().unwrap() = 70.0;
    eventually("scaled out by the policy", || async {
        status(&client).await.services[0].running == 4
    })
    .await;
}

/// The brains' KV bucket, as the tests see it.
async fn bucket(client: &async_nats::Client) -> async_nats::jetstream::kv::Store {
    async_nats::jetstream::new(client.clone())
        .get_key_value("acs_brain")
        .await
        .expect("the brain made its bucket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_brain_restores_its_pins_from_kv_and_places_nothing_twice() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let worker = fake_worker(client.clone());
    let _load = fake_proxy(client.clone()); // idle: without the pin, the policy would want 1

    let brain = Brain::start(&nats.url());
    eventually("brain answers", || async {
        try_status(&client).await.is_some()
    })
    .await;
    scale(&client, r#"{"service":"web","replicas":2}"#).await;
    eventually("2 running", || async {
        status(&client).await.services[0].running == 2 && worker.running.lock().unwrap().len() == 2
    })
    .await;
    let term_before = status(&client)
        .await
        .brain
        .expect("the leader says who it is")
        .term;
    brain.stop().await;
    let kept = bucket(&client)
        .await
        .get("pin.web")
        .await
        .unwrap()
        .expect("pin kept in KV");
    assert_eq!(&kept[..], b"2");
    let before = worker.running_ids();
    let starts_before = worker.start_count();

    let _brain = Brain::start_as(&nats.url(), "brain-2", 1500);
    eventually("the new brain answers", || async {
        try_status(&client).await.is_some()
    })
    .await;
    let s = status(&client).await;
    assert_eq!(s.services[0].mode, ScaleMode::Manual, "pin restored");
    let info = s.brain.expect("brain info");
    assert_eq!(info.instance, "brain-2");
    assert!(
        info.term > term_before,
        "a new leader has a higher term: {} then {}",
        term_before,
        info.term
    );
    // Past warm-up (300 ms) and many ticks: it adopts what runs, and starts or stops nothing.
    eventually("the running replicas are routed again", || async {
        status(&client).await.services[0].running == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        worker.start_count(),
        starts_before,
        "no start after the restart"
    );
    assert_eq!(
        worker.running_ids(),
        before,
        "the same replicas, none stopped, none added"
    );
    let s = status(&client).await;
    assert_eq!(
        (
            s.services[0].mode,
            s.services[0].desired,
            s.services[0].running
        ),
        (ScaleMode::Manual, 2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_pin_in_kv_is_reported_and_counted_not_taken_as_auto() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let worker = fake_worker(client.clone());
    let _load = fake_proxy(client.clone());
    let brain = Brain::start(&nats.url());
    eventually("brain answers", || async {
        try_status(&client).await.is_some()
    })
    .await;
    scale(&client, r#"{"service":"web","replicas":2}"#).await;
    eventually("2 running", || async {
        worker.running.lock().unwrap().len() == 2
    })
    .await;
    brain.stop().await;
    bucket(&client)
        .await
        .put("pin.web", "two".into())
        .await
        .unwrap();

    let _brain = Brain::start_as(&nats.url(), "brain-2", 1500);
    eventually("the new brain answers", || async {
        try_status(&client).await.is_some()
    })
    .await;
    let s = status(&client).await;
    assert!(s.rejected >= 1, "the unreadable pin is counted: {s:?}");
    // Held as if pinned: no load (0 req/s) would take it to min 1 within the 1 s scale-down
    // window if it were handed to its policy.
    eventually("held at what runs", || async {
        let s = status(&client).await;
        (s.services[0].mode, s.services[0].desired) == (ScaleMode::Manual, 2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        worker.running.lock().unwrap().len(),
        2,
        "nothing was stopped on a pin it could not read"
    );
    assert_eq!(status(&client).await.services[0].mode, ScaleMode::Manual);
    // The operator's next scale ends the hold: back under the policy, it goes to min 1.
    scale(&client, r#"{"service":"web","auto":true}"#).await;
    eventually("scaled in by the policy", || async {
        worker.running.lock().unwrap().len() == 1
    })
    .await;
}
