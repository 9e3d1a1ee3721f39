//! HTTP health checks of replicas.
//!
//! One [`watch`] task per replica. While the replica is starting it probes `GET <health_path>`
//! every [`HealthConfig::start_interval`] until a 2xx answer ([`HealthChange::Passed`]) or
//! until [`HealthConfig::start_timeout`] ([`HealthChange::StartTimedOut`], then the task ends).
//! Afterwards it probes every [`HealthConfig::interval`]; [`HealthConfig::failures`] failures in a
//! row give [`HealthChange::Unhealthy`], the next pass [`HealthChange::Passed`] again. Only
//! changes are reported; the worker owns the replica states.

use std::time::Duration;

use acs_events::ReplicaId;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub start_interval: Duration,
    pub start_timeout: Duration,
    pub interval: Duration,
    /// Failures in a row before a healthy replica counts as unhealthy.
    pub failures: u32,
    /// Timeout of one probe.
    pub request_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            // Probing a starting replica often is cheap (one loopback connect) and is what
            // bounds the time from a start command to the replica taking traffic.
            start_interval: Duration::from_millis(20),
            start_timeout: Duration::from_secs(30),
            interval: Duration::from_secs(2),
            failures: 3,
            request_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthChange {
    /// The check passes (first time, or again after `Unhealthy`).
    Passed,
    /// The check never passed within the start timeout; the watch has ended.
    StartTimedOut { last_error: String },
    /// `failures` checks in a row failed.
    Unhealthy { last_error: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub replica: ReplicaId,
    pub change: HealthChange,
}

/// Probes `addr` + `path` until aborted or the start timeout passes; reports changes on `tx`.
pub async fn watch(
    replica: ReplicaId,
    addr: String,
    path: String,
    cfg: HealthConfig,
    tx: mpsc::UnboundedSender<HealthReport>,
) {
    let send = |change| {
        tx.send(HealthReport {
            replica: replica.clone(),
            change,
        })
        .is_ok()
    };
    let deadline = Instant::now() + cfg.start_timeout;
    loop {
        match check(&addr, &path, cfg.request_timeout).await {
            Ok(_) => break,
            Err(e) => {
                if Instant::now() >= deadline {
                    send(HealthChange::StartTimedOut { last_error: e });
                    return;
                }
                debug!(replica = %replica, error = %e, "not healthy yet");
            }
        }
        tokio::time::sleep(cfg.start_interval).await;
    }
    if !send(HealthChange::Passed) {
        return;
    }
    let mut failed = 0u32;
    let mut healthy = true;
    loop {
        tokio::time::sleep(cfg.interval).await;
        match check(&addr, &path, cfg.request_timeout).await {
            Ok(_) => {
                failed = 0;
                if !healthy {
                    healthy = true;
                    if !send(HealthChange::Passed) {
                        return;
                    }
                }
            }
            Err(e) => {
                failed += 1;
                debug!(replica = %replica, failed, error = %e, "health check failed");
                if healthy && failed >= cfg.failures {
                    healthy = false;
                    if !send(HealthChange::Unhealthy { last_error: e }) {
                        return;
                    }
                }
            }
        }
    }
}

/// One `GET path` to `addr` over plain HTTP/1.1; `Ok(status)` for 2xx, else a readable error.
pub async fn check(addr: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    match tokio::time::timeout(timeout, check_inner(addr, path)).await {
        Ok(r) => r,
        Err(_) => Err(format!("GET {path} on {addr} timed out after {timeout:?}")),
    }
}

async fn check_inner(addr: &str, path: &str) -> Result<u16, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr)
        .header("user-agent", "acs-vmm-worker/health")
        .header("connection", "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad health path {path:?}: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path} on {addr}: {e}"));
    conn.abort();
    let status = res?.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(format!("GET {path} on {addr} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers every connection with `status`, while `status` is not 0; 0 closes at once.
    async fn server(status: std::sync::Arc<std::sync::atomic::AtomicU16>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let code = status.load(std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    if code != 0 {
                        let msg = format!(
                            "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = s.write_all(msg.as_bytes()).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn check_reports_status() {
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let addr = server(status.clone()).await;
        assert_eq!(
            check(&addr, "/healthz", Duration::from_secs(5)).await,
            Ok(200)
        );
        status.store(503, std::sync::atomic::Ordering::SeqCst);
        let err = check(&addr, "/healthz", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("503"), "{err}");
        let port = acs_testkit::free_port();
        let err = check(&format!("127.0.0.1:{port}"), "/", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("connect"), "{err}");
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<HealthReport>) -> HealthChange {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .change
    }

    #[tokio::test]
    async fn watch_reports_transitions() {
        use std::sync::atomic::Ordering::SeqCst;
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(503));
        let addr = server(status.clone()).await;
        let cfg = HealthConfig {
            start_interval: Duration::from_millis(10),
            start_timeout: Duration::from_secs(30),
            interval: Duration::from_millis(10),
            failures: 3,
            request_timeout: Duration::from_secs(5),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = ReplicaId::new("r1").unwrap();
        let task = tokio::spawn(watch(r.clone(), addr, "/healthz".into(), cfg, tx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "never healthy before a pass");
        status.store(200, SeqCst);
        assert_eq!(next(&mut rx).await, HealthChange::Passed);
        status.store(500, SeqCst);
        assert!(matches!(
            next(&mut rx).await,
            HealthChange::Unhealthy { .. }
        ));
        status.store(204, SeqCst);
        assert_eq!(next(&mut rx).await, HealthChange::Passed);
        task.abort();
    }

    #[tokio::test]
    async fn watch_times_out_when_never_healthy() {
        let port = acs_testkit::free_port();
        let cfg = HealthConfig {
            start_interval: Duration::from_millis(10),
            start_timeout: Duration::from_millis(200),
            ..HealthConfig::default()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = ReplicaId::new("r1").unwrap();
        watch(r, format!("127.0.0.1:{port}"), "/".into(), cfg, tx).await;
        assert!(matches!(
            rx.recv().await.unwrap().change,
            HealthChange::StartTimedOut { .. }
        ));
    }
}
