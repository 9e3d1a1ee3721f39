//! `acsctl status` / `scale` / `watch` run as the real binary against a real nats-server, with
//! the test itself playing the brain.

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{decode, encode, ScaleMode, ScaleReply, ScaleRequest, ServiceName};
use acs_testkit::NatsServer;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

// `-o json|wide`, completions, top when piped; `drain --wait` and `replace --wait`.
mod output;
mod wait;

const STATUS: &str = r#"{"v":1,"ok":true,"ts_ms":1,"services":[{"name":"web","mode":"auto","desired":2,"running":2,"lifecycle":{"state":"running"},"version":42,
 "replicas":[{"id":"web-a","worker":"w1","state":"healthy","addr":"127.0.0.1:40001"},
             {"id":"web-b","worker":"w2","state":"healthy","addr":"127.0.0.1:40002","draining":true}],
 "backends":[{"id":"web-a","addr":"127.0.0.1:40001","worker":"w1"},{"id":"web-b","addr":"127.0.0.1:40002","worker":"w2","draining":true}]}],
 "workers":[{"id":"w1","health":"up","last_seen_ms_ago":300,"replicas":1,"max_replicas":4,"cpu_pct":21.5},
            {"id":"w2","health":"down","last_seen_ms_ago":5000,"replicas":1,"max_replicas":4,"cpu_pct":0.0}]}"#;

async fn connect(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url())
        .await
        .expect("connect to test nats-server")
}

/// Answers every request on `subject` with `answer(payload)` (or not at all for `None`);
/// returns the received payloads.
async fn responder(
    nc: &async_nats::Client,
    subject: &str,
    answer: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sub = nc.subscribe(subject.to_string()).await.unwrap();
    nc.flush().await.unwrap();
    let nc = nc.clone();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            seen2.lock().unwrap().push(msg.payload.to_vec());
            if let (Some(reply), Some(body)) = (msg.reply, answer(&msg.payload)) {
                let _ = nc.publish(reply, body.into()).await;
                let _ = nc.flush().await;
            }
        }
    });
    seen
}

async fn acsctl(args: &[&str]) -> Output {
    let fut = tokio::process::Command::new(env!("CARGO_BIN_EXE_acsctl"))
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("ACS_PREFIX")
        .env_remove("ACS_TIMEOUT")
        // These tests talk to a plain nats-server; the secured set-up has tests of its own.
        .env("ACS_NATS_INSECURE", "true")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("acsctl did not finish within 60 s")
        .expect("run acsctl")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every one of `wants` is in `out`.
fn assert_has(out: &str, wants: &[&str]) {
    for want in wants {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[tokio::test]
async fn status_prints_tables() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let seen = responder(&nc, "acs.status", |_| Some(STATUS.as_bytes().to_vec())).await;

    let out = acsctl(&["status", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_has(
        &stdout,
        &[
            "SERVICE",
            "web      Running  auto",
            "web-a@127.0.0.1:40001, web-b@127.0.0.1:40002 (draining)",
            "healthy (draining)",
            "w1      up      1/4       22%  0.3s ago",
            "w2      DOWN",
        ],
    );
    assert_eq!(seen.lock().unwrap().as_slice(), &[b"{}".to_vec()]);

    let out = acsctl(&["status", "--json", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(v["services"][0]["name"], "web");

    let out = acsctl(&["status", "-o", "wide", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_has(
        &stdout,
        &[
            "REPLICAS  BACKENDS",
            "  BACKEND  SERVICE  WORKER  ADDR             DRAINING",
            "  web-b    web      w2      127.0.0.1:40002  yes",
            "WORKER  HEALTH  CORDONED  DRAINING  REPLICAS  FREE  CPU    LAST SEEN",
        ],
    );
    let out = acsctl(&["status", "-o", "json", "--nats", &nats.url()]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json prints JSON");
    assert_eq!(v["workers"][1]["id"], "w2");
}

#[tokio::test]
async fn status_with_custom_prefix() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "t7.status", |_| Some(STATUS.as_bytes().to_vec())).await;
    let out = acsctl(&["--prefix", "t7", "status", "--nats", &nats.url()]).await;
    assert!(out.status.success(), "{:?}", text(&out));
}

#[tokio::test]
async fn status_without_brain_says_so() {
    let nats = NatsServer::start();
    let out = acsctl(&["status", "--nats", &nats.url()]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no vim-brain is running"), "{stderr}");
    assert!(stderr.contains("acs.status"), "{stderr}");
}

#[tokio::test]
async fn status_without_nats_says_so() {
    let port = acs_testkit::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = acsctl(&["status", "--nats", &url, "--timeout", "2s"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

#[tokio::test]
async fn status_error_and_garbage_replies() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.status", |_| {
        Some(br#"{"ok":false,"error":"world not loaded"}"#.to_vec())
    })
    .await;
    let out = acsctl(&["status", "--nats", &nats.url()]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the brain refused: world not loaded"),
        "{stderr}"
    );

    let nats2 = NatsServer::start();
    let nc2 = connect(&nats2).await;
    responder(&nc2, "acs.status", |_| Some(b"<html>".to_vec())).await;
    let out = acsctl(&["status", "--nats", &nats2.url()]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unreadable reply on acs.status"),
        "{stderr}"
    );
    assert!(stderr.contains("<html>"), "{stderr}");
}

#[tokio::test]
async fn status_times_out_when_brain_is_silent() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.status", |_| None).await;
    let out = acsctl(&["status", "--nats", &nats.url(), "--timeout", "500ms"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no reply on acs.status within 500ms"),
        "{stderr}"
    );
}

fn scale_ok(payload: &[u8]) -> Option<Vec<u8>> {
    let req: ScaleRequest = match decode(payload) {
        Ok(r) => r,
        Err(e) => return Some(encode(&ScaleReply::error(e.to_string()))),
    };
    let mut reply = ScaleReply::error("");
    reply.ok = true;
    reply.error = None;
    reply.service = Some(req.service.clone());
    reply.previous = Some(2);
    reply.replicas = Some(req.replicas.map_or(1, |n| n as u32));
    reply.mode = Some(if req.auto {
        ScaleMode::Auto
    } else {
        ScaleMode::Manual
    });
    reply.note = Some("noted".into());
    Some(encode(&reply))
}

#[tokio::test]
async fn scale_sends_request_and_prints_reply() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let seen = responder(&nc, "acs.cmd.scale", scale_ok).await;

    let out = acsctl(&["scale", "web", "3", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("web: 2 → 3 (manual)"), "{stdout}");
    assert!(stdout.contains("noted"), "{stdout}");

    let out = acsctl(&["scale", "web", "auto", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("web: 2 → 1 (auto)"), "{stdout}");

    let reqs: Vec<ScaleRequest> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|p| decode(p).expect("valid ScaleRequest"))
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].service, ServiceName::new("web").unwrap());
    assert_eq!((reqs[0].replicas, reqs[0].auto), (Some(3), false));
    assert_eq!((reqs[1].replicas, reqs[1].auto), (None, true));
}

#[tokio::test]
async fn scale_error_reply_exits_1() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.cmd.scale", |_| {
        Some(encode(&ScaleReply::error(
            "unknown service \"nope\"; known: web",
        )))
    })
    .await;
    let out = acsctl(&["scale", "nope", "2", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the brain refused: unknown service \"nope\"; known: web"),
        "{stderr}"
    );
}

#[tokio::test]
async fn scale_validates_locally() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let seen = responder(&nc, "acs.cmd.scale", scale_ok).await;
    for (args, want) in [
        (vec!["scale", "web", "-1"], "replicas must be >= 0"),
        (vec!["scale", "web", "10001"], "replicas must be <= 10000"),
        (vec!["scale", "web", "many"], "or `auto`"),
        (vec!["scale", "we.b", "2"], "service name"),
    ] {
        let mut args = args.clone();
        let url = nats.url();
        args.extend(["--nats", &url]);
        let out = acsctl(&args).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "invalid requests must not be sent"
    );
}

#[tokio::test]
async fn scale_without_brain_says_so() {
    let nats = NatsServer::start();
    let out = acsctl(&["scale", "web", "2", "--nats", &nats.url()]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no vim-brain is running"), "{stderr}");
}

/// `acsctl watch <flags>` on `nats`, running until killed (or dropped): the child and the
/// lines it prints.
fn watch(nats: &NatsServer, flags: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_acsctl"))
        .arg("watch")
        .args(flags)
        .args(["--nats", &nats.url()])
        .env("ACS_NATS_INSECURE", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[tokio::test]
async fn watch_prints_readable_lines() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let (mut child, mut lines) = watch(&nats, &[]);

    let decision = br#"{"service":"web","ts_ms":1,"action":"scale","from":2,"to":4,"manual":false,"reason":"cpu high"}"#;
    let wanted = [
        "decision web scale 2→4: cpu high",
        "acs.metrics.worker.w1 (undecodable: invalid JSON",
        "acs.strange.thing hello there",
    ];
    let mut found = [false; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // The watcher subscribes asynchronously: publish until every line has shown up.
    while found.iter().any(|f| !f) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch printed only {found:?}"
        );
        nc.publish("acs.events.decision.web", decision.to_vec().into())
            .await
            .unwrap();
        nc.publish("acs.metrics.worker.w1", "not json{".into())
            .await
            .unwrap();
        nc.publish("acs.strange.thing", "hello\nthere".into())
            .await
            .unwrap();
        nc.publish("other.subject", "ignored".into()).await.unwrap();
        nc.flush().await.unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(until, lines.next_line()).await {
            assert!(!line.contains("ignored"), "{line}");
            for (i, w) in wanted.iter().enumerate() {
                let body = line.split_once(' ').map(|x| x.1).unwrap_or("");
                if body.starts_with(w) || (i == 2 && body == "acs.strange.thing hello\\nthere") {
                    found[i] = true;
                }
            }
        }
    }
    child.kill().await.unwrap();
}

#[tokio::test]
async fn watch_json_and_no_metrics() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let (mut child, mut lines) = watch(&nats, &["--json", "--no-metrics"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no JSON line printed"
        );
        nc.publish("acs.metrics.proxy.p1", "{}".into())
            .await
            .unwrap();
        nc.publish("acs.events.worker.w1", r#"{"x":1}"#.into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        if let Ok(Ok(Some(line))) = tokio::time::timeout_at(until, lines.next_line()).await {
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            assert_eq!(
                v["subject"], "acs.events.worker.w1",
                "metrics must be hidden: {line}"
            );
            assert_eq!(v["payload"]["x"], 1);
            break;
        }
    }
    child.kill().await.unwrap();
}
