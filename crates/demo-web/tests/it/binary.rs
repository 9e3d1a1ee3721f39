//! Runs the built `demo-web` binary: routes, and graceful exit on SIGTERM with a request in flight.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acs_testkit::poll::eventually;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path`: `(status, body)`; panics when the request fails.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    acs_testkit::http::get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn start(extra_env: &[(&str, &str)]) -> (KillOnDrop, SocketAddr) {
    let port = acs_testkit::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo-web"));
    cmd.args(["--bind", "127.0.0.1"])
        .env("PORT", port.to_string())
        .env_remove("ACS_REPLICA")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = KillOnDrop(cmd.spawn().expect("spawn demo-web"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    acs_testkit::wait_for_port(addr, Duration::from_secs(20)).expect("demo-web listens");
    (child, addr)
}

#[tokio::test]
async fn routes() {
    let (_child, addr) = start(&[("ACS_REPLICA", "r-7"), ("WORK_MS", "3")]);
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(
        get(addr, "/").await,
        (200, "r-7 did 3 ms of work\n".to_string())
    );
    let t = Instant::now();
    assert_eq!(
        get(addr, "/work?ms=20").await,
        (200, "r-7 did 20 ms of work\n".to_string())
    );
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert_eq!(get(addr, "/work?ms=-5").await.0, 400);
    assert_eq!(get(addr, "/nope").await.0, 404);
    let (status, body) = get(addr, "/whoami").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("whoami is JSON");
    assert_eq!(v["instance"], "r-7");
    assert_eq!(v["port"], addr.port());
    assert!(v["pid"].as_u64().unwrap() > 0);
    assert!(v["hostname"].as_str().is_some());
    assert!(v["requests"].as_u64().unwrap() >= 6, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let (mut child, addr) = start(&[]);
    let slow = tokio::spawn(async move { get(addr, "/work?ms=1500").await });
    // Wait until the request is being served (the counter includes it).
    let every = Duration::from_millis(20);
    eventually(Duration::from_secs(20), every, || async {
        let (_, body) = get(addr, "/whoami").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["requests"].as_u64().unwrap() >= 2 {
            Ok(())
        } else {
            Err(())
        }
    })
    .await
    .expect("slow request never arrived");
    unsafe_kill(child.0.id(), "TERM");
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ms of work"), "{body}");
    let status = eventually(Duration::from_secs(20), every, || {
        let exited = child.0.try_wait().unwrap().ok_or(());
        async move { exited }
    })
    .await
    .expect("demo-web did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

fn unsafe_kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}
