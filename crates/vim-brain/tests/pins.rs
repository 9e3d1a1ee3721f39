//! Manual pins against a real nats-server, with the fake worker and proxy of `common`: a pin
//! holds against the policy, `auto` hands the service back, and a restarted brain restores its
//! pins from the state file and places nothing twice.

mod common;

use std::time::Duration;

use acs_events::*;
use acs_testkit::NatsServer;
use common::*;
use futures::StreamExt;

/// The scale decisions published on `web` within `window`.
async fn scale_decisions(decisions: &mut async_nats::Subscriber, window: Duration) -> Vec<DecisionAction> {
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
        try_status(&client).await.is_some_and(|s| s.services[0].running == 1)
    })
    .await;

    scale(&client, r#"{"service":"web","replicas":3}"#).await;
    eventually("3 running", || async { status(&client).await.services[0].running == 3 }).await;
    // Idle load and a 1 s scale-down window: the policy would step down. The pin holds.
    let mut decisions = client.subscribe("acs.events.decision.web").await.unwrap();
    let during_pin = scale_decisions(&mut decisions, Duration::from_secs(4)).await;
    assert_eq!(during_pin, [], "no scale decision while pinned");
    let s = status(&client).await;
    assert_eq!((s.services[0].mode, s.services[0].desired, s.services[0].running), (ScaleMode::Manual, 3, 3));
    assert_eq!(worker.running.lock().unwrap().len(), 3);

    // Handed back: the policy steps down to min_replicas, one step at a time.
    let reply = scale(&client, r#"{"service":"web","auto":true}"#).await;
    assert_eq!(reply["mode"], "auto", "{reply}");
    assert!(reply["note"].as_str().unwrap().contains("back under its policy"), "{reply}");
    eventually("back to min_replicas under the policy", || async {
        let s = status(&client).await;
        s.services[0].mode == ScaleMode::Auto && s.services[0].desired == 1 && s.services[0].running == 1
    })
    .await;
    let after_auto = scale_decisions(&mut decisions, Duration::from_millis(500)).await;
    let steps = [
        DecisionAction::Scale { from: 3, to: 2, manual: false },
        DecisionAction::Scale { from: 2, to: 1, manual: false },
    ];
    assert_eq!(after_auto, steps, "the policy's own steps (max_step_down 1)");
    eventually("the worker stopped the extra replicas", || async { worker.running.lock().unwrap().len() == 1 }).await;

    // And it answers load again: 70 rps over a target of 20 per replica.
    *load.lock().unwrap() = 70.0;
    eventually("scaled out by the policy", || async { status(&client).await.services[0].running == 4 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_brain_restores_its_pins_and_places_nothing_twice() {
    let dir = std::env::temp_dir().join(format!("acs-brain-restart-{}", std::process::id()));
    let state_file = dir.join("brain-state.json");
    let _ = std::fs::remove_dir_all(&dir);
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let worker = fake_worker(client.clone());
    let _load = fake_proxy(client.clone()); // idle: without the pin, the policy would want 1

    let brain = Brain::start_with(&nats.url(), Some(state_file.clone()));
    eventually("brain answers", || async { try_status(&client).await.is_some() }).await;
    scale(&client, r#"{"service":"web","replicas":2}"#).await;
    eventually("2 running", || async {
        status(&client).await.services[0].running == 2 && worker.running.lock().unwrap().len() == 2
    })
    .await;
    brain.stop().await;
    let saved = std::fs::read_to_string(&state_file).expect("state file kept");
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["manual"]["web"], 2, "{saved}");
    let before = worker.running_ids();
    let starts_before = worker.start_count();

    let _brain = Brain::start_with(&nats.url(), Some(state_file.clone()));
    eventually("the new brain answers", || async { try_status(&client).await.is_some() }).await;
    assert_eq!(status(&client).await.services[0].mode, ScaleMode::Manual, "pin restored");
    // Past warm-up (300 ms) and many ticks: it adopts what runs, and starts or stops nothing.
    eventually("the running replicas are routed again", || async { status(&client).await.services[0].running == 2 })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(worker.start_count(), starts_before, "no start after the restart");
    assert_eq!(worker.running_ids(), before, "the same replicas, none stopped, none added");
    let s = status(&client).await;
    assert_eq!((s.services[0].mode, s.services[0].desired, s.services[0].running), (ScaleMode::Manual, 2, 2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_the_start_and_is_kept() {
    let dir = std::env::temp_dir().join(format!("acs-brain-corrupt-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state_file = dir.join("brain-state.json");
    std::fs::write(&state_file, br#"{"v":1,"manual":{"web":3"#).unwrap(); // cut short
    let nats = NatsServer::start();
    let config = vim_brain::Config {
        nats: acs_node::NatsOptions::new(nats.url()),
        state_file: Some(state_file.clone()),
        ..vim_brain::Config::default()
    };
    let services = vim_brain::Services::parse(SERVICES).unwrap();
    let run = vim_brain::run(config, services, std::future::pending());
    let err = tokio::time::timeout(Duration::from_secs(10), run).await.expect("refuses at once").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&state_file.display().to_string()), "names the file: {msg}");
    assert!(msg.contains("corrupt") && msg.contains("repair it") && msg.contains("remove it"), "{msg}");
    let kept = std::fs::read(&state_file).unwrap();
    assert_eq!(kept, br#"{"v":1,"manual":{"web":3"#, "the file is left for the operator");
    let _ = std::fs::remove_dir_all(&dir);
}
