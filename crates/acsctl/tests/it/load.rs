//! The load generator against a tiny local HTTP server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acsctl::load::{self, LoadOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every request with `status` and a whoami-like body, alternating two instances.
async fn server(status: u16) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let hits2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let hits = hits2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = Vec::new();
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have.extend_from_slice(&buf[..n]);
                    while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                        have.drain(..end + 4);
                        let n = hits.fetch_add(1, Ordering::Relaxed);
                        let body = format!(r#"{{"instance":"inst-{}"}}"#, n % 2);
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn counts_ok_and_instances() {
    let (addr, hits) = server(200).await;
    let opts = LoadOptions::new(
        format!("http://{addr}/whoami"),
        40.0,
        Duration::from_secs(2),
    );
    let mut ticks = Vec::new();
    let report = load::run(&opts, std::future::pending(), |t| ticks.push(t.clone()))
        .await
        .unwrap();
    assert!(report.sent >= 20, "{report}");
    assert_eq!(report.ok, report.sent, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(hits.load(Ordering::Relaxed), report.sent);
    assert_eq!(report.counts.instances.len(), 2, "{report}");
    assert!(!ticks.is_empty());
    assert_eq!(
        ticks.iter().map(|t| t.counts.done).sum::<u64>(),
        report.counts.done
    );
    assert!(report.to_string().contains("instances inst-0:"), "{report}");
}

#[tokio::test]
async fn counts_failures() {
    let (addr, _) = server(503).await;
    let opts = LoadOptions::new(format!("http://{addr}/"), 20.0, Duration::from_secs(1));
    let report = load::run(&opts, std::future::pending(), |_| {})
        .await
        .unwrap();
    assert!(report.sent > 0);
    assert_eq!(report.ok, 0);
    assert_eq!(
        report.counts.statuses.get(&503).copied(),
        Some(report.sent),
        "{report}"
    );

    // Nothing listening: connect failures.
    let port = acs_testkit::free_port();
    let opts = LoadOptions::new(
        format!("http://127.0.0.1:{port}/"),
        20.0,
        Duration::from_secs(1),
    );
    let report = load::run(&opts, std::future::pending(), |_| {})
        .await
        .unwrap();
    assert!(report.sent > 0);
    assert_eq!(report.failed, report.sent, "{report}");
    assert_eq!(
        report.counts.errors.get("connect").copied(),
        Some(report.sent),
        "{report}"
    );
}

#[tokio::test]
async fn stops_on_shutdown() {
    let (addr, _) = server(200).await;
    let opts = LoadOptions::new(format!("http://{addr}/"), 10.0, Duration::from_secs(3600));
    let started = std::time::Instant::now();
    let report = load::run(
        &opts,
        tokio::time::sleep(Duration::from_millis(500)),
        |_| {},
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(report.sent >= 1, "{report}");
}
