//! The monitor with auth on, against a real nats-server with JetStream and the `auth.conf` that
//! `acsctl auth init` writes: the monitor role can create its stream, replay it with its ordered
//! consumer and answer; the viewer can query stats but not publish metrics.

use std::time::Duration;

use acs_auth::{AuthDir, InitOptions, Role};
use acs_events::{decode, encode, StatsReply, Subjects, WorkerId, WorkerMetrics};
use acs_testkit::msg::worker_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::{NatsServer, ServerAuth, TempDir};
use async_nats::{Client, Event, ServerError};
use tokio::sync::{mpsc, oneshot};

/// nats-server with JetStream and the `auth.conf` that `acsctl auth init` writes.
fn start_server(tmp: &TempDir) -> (NatsServer, String) {
    let server = NatsServer::with_auth(ServerAuth::dir(tmp.path().join("auth")));
    let url = server.url();
    (server, url)
}

/// Connects as `role`, handing over the server's permission errors.
async fn connect(
    dir: &AuthDir,
    role: &Role,
    url: &str,
) -> (Client, mpsc::UnboundedReceiver<String>) {
    let o = dir.nats_options(role, url);
    let (tx, rx) = mpsc::unbounded_channel();
    let client = o
        .connect_options()
        .await
        .unwrap()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(ServerError::Other(m)) = event {
                    let _ = tx.send(m);
                }
            }
        })
        .connect(&o.servers)
        .await
        .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"));
    (client, rx)
}

fn sample(ts_ms: u64, seq: u64) -> WorkerMetrics {
    worker_metrics("w1", seq, ts_ms, 50.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_role_keeps_history_and_the_viewer_only_asks() {
    let tmp = TempDir::new("monitor-auth");
    let dir = AuthDir::new(tmp.path().join("auth"), Subjects::default());
    let w1 = WorkerId::new("w1").unwrap();
    dir.init(&InitOptions {
        workers: vec![w1.clone()],
        ..Default::default()
    })
    .unwrap();
    let (_server, url) = start_server(&tmp);
    let subjects = Subjects::default();

    // The worker's samples land in the stream the monitor makes: publish once it answers.
    let (stop, rx) = oneshot::channel::<()>();
    let config = acs_monitor::Config::new(dir.nats_options(&Role::Monitor, &url));
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    let (viewer, mut violations) = connect(&dir, &Role::Viewer, &url).await;
    let (worker, _) = connect(&dir, &Role::Worker(w1.clone()), &url).await;
    let body = r#"{"v":1,"scope":"worker","id":"w1","metric":"cpu","last_ms":3600000}"#;
    let ask = || async {
        let m = viewer
            .request(subjects.monitor_stats(), body.into())
            .await
            .map_err(|e| e.to_string())?;
        decode::<StatsReply>(&m.payload).map_err(|e| e.to_string())
    };
    // Answered with an empty history first: the stream exists and the replay caught up.
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { ask().await.map(|_| ()) },
    )
    .await
    .unwrap();

    let now = acs_monitor::service::unix_ms();
    for i in 0..5u64 {
        let m = sample(now - (4 - i) * 1000, i + 1);
        worker
            .publish(subjects.worker_metrics(&w1), encode(&m).into())
            .await
            .unwrap();
    }
    worker.flush().await.unwrap();
    let reply = eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let r = ask().await?;
            match &r.summary {
                Some(s) if s.count == 5 => Ok(r),
                _ => Err(format!("not yet: {r:?}")),
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(reply.summary.unwrap().max, 50.0);

    // The viewer may not speak for a worker.
    viewer
        .publish(subjects.worker_metrics(&w1), encode(&sample(now, 9)).into())
        .await
        .unwrap();
    viewer.flush().await.unwrap();
    let wanted = "permissions violation for publish to \"acs.metrics.worker.w1\"";
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = violations.recv().await {
            if m.to_lowercase().contains(wanted) {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no violation for the viewer's metrics");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
