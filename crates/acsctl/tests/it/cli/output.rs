//! `-o json|wide` on the commands that print, `completions`, and `top` when stdout is not a
//! terminal, against a test brain and a test monitor.

use acs_events::{AlarmReply, HistoryReply, StatsReply};

use super::*;

fn json(o: &Output) -> serde_json::Value {
    let (stdout, stderr) = text(o);
    assert!(o.status.success(), "{stdout}{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: not one JSON document:\n{stdout}"))
}

#[tokio::test]
async fn commands_that_steer_print_json() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.cmd.scale", scale_ok).await;
    let cordoned =
        r#"{"v":1,"ok":true,"worker":"w1","action":"cordon","replicas":2,"note":"w1 cordoned"}"#;
    responder(&nc, "acs.cmd.maintenance", |_| Some(cordoned.into())).await;
    let replaced = r#"{"v":1,"ok":true,"replica":"web-1","service":"web","note":"replacing"}"#;
    responder(&nc, "acs.cmd.replica", |_| Some(replaced.into())).await;
    let url = nats.url();
    let v = json(&acsctl(&["scale", "web", "3", "-o", "json", "--nats", &url]).await);
    assert_eq!(
        (v["previous"].as_u64(), v["replicas"].as_u64()),
        (Some(2), Some(3))
    );
    for cmd in ["cordon", "uncordon", "drain"] {
        let v = json(&acsctl(&[cmd, "w1", "--json", "--nats", &url]).await);
        assert_eq!(v["note"], "w1 cordoned", "{cmd}");
    }
    let v = json(&acsctl(&["replace", "web-1", "-o", "json", "--nats", &url]).await);
    assert_eq!(v["service"], "web");
}

#[tokio::test]
async fn monitor_commands_print_json_and_take_relative_windows() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let history = HistoryReply {
        v: 1,
        ok: true,
        error: None,
        from_ms: 1,
        to_ms: 2,
        truncated: false,
        events: vec![],
    };
    let seen = responder(&nc, "acs.monitor.history", move |_| Some(encode(&history))).await;
    let mut stats = StatsReply::error("");
    (stats.ok, stats.error, stats.metric) = (true, None, "cpu".into());
    responder(&nc, "acs.monitor.stats", move |_| Some(encode(&stats))).await;
    responder(&nc, "acs.monitor.alarms", |_| {
        Some(encode(&AlarmReply::ok(vec![])))
    })
    .await;
    let url = nats.url();
    let args = [
        "history", "--from", "-2h", "--to", "now", "-o", "json", "--nats", &url,
    ];
    let v = json(&acsctl(&args).await);
    assert_eq!(v["ok"], true);
    let req: serde_json::Value = serde_json::from_slice(&seen.lock().unwrap()[0]).unwrap();
    let (from, to) = (
        req["from_ms"].as_u64().unwrap(),
        req["to_ms"].as_u64().unwrap(),
    );
    assert!((7_190_000..=7_210_000).contains(&(to - from)), "{req}");
    let args = ["history", "--last", "7d", "--nats", &url];
    let out = acsctl(&args).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let stats_args = [
        "stats",
        "worker",
        "w1",
        "cpu",
        "--from",
        "2025-12-07T18:00:00Z",
        "-o",
        "json",
    ];
    let v = json(&acsctl(&[&stats_args[..], &["--nats", &url]].concat()).await);
    assert_eq!(v["metric"], "cpu");
    let v = json(&acsctl(&["alarms", "-o", "json", "--nats", &url]).await);
    assert_eq!(v["alarms"], serde_json::json!([]));
}

#[tokio::test]
async fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef acsctl"),
        ("fish", "complete -c acsctl"),
    ] {
        let out = acsctl(&["completions", shell]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: no {marker:?}");
        assert!(
            stdout.contains("drain") && stdout.contains("output"),
            "{shell}"
        );
    }
}

#[tokio::test]
async fn top_prints_plain_frames_when_not_on_a_terminal() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.status", |_| Some(STATUS.as_bytes().to_vec())).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_acsctl"))
        .args(["top", "--interval", "200ms", "--nats", &nats.url()])
        .env("ACS_NATS_INSECURE", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut frames, mut all) = (0, String::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while frames < 3 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("three frames within 30 s")
            .unwrap()
            .expect("top runs until killed");
        frames += usize::from(line.starts_with("acs top: brain answered"));
        all.push_str(&line);
        all.push('\n');
    }
    // A reader that goes away (`acsctl top | head`) ends top quietly, not with a panic.
    drop(lines);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("top stops once its stdout is closed")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!all.contains('\x1b'), "no escape codes when piped:\n{all}");
    assert!(all.contains("web      Running"), "{all}");

    let v = json(&acsctl(&["top", "-o", "json", "--nats", &nats.url()]).await);
    assert_eq!(v["status"]["services"][0]["name"], "web", "{v}");
}
