use super::*;
use crate::runtime::fake::{Call, FakeRuntime};
use serde_json::json;

/// A worker that allows `/bin/sh` (the fake runtime runs nothing, but the policy resolves the
/// program on this host).
pub(super) fn worker() -> Commands {
    let policy = Policy {
        allow_commands: vec!["/bin/sh".into()],
        ..Policy::default()
    };
    Commands::new(WorkerId::new("w1").unwrap(), 2, policy)
}

pub(super) fn start(id: &str, replica: &str) -> Vec<u8> {
    start_with(
        id,
        replica,
        json!({"service": "web", "command": ["sh", "-c", "serve {port}"]}),
    )
}

pub(super) fn start_with(id: &str, replica: &str, spec: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "action": "start", "replica": replica, "spec": spec}))
        .unwrap()
}

pub(super) fn stop(id: &str, replica: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "action": "stop", "replica": replica, "grace_ms": 100}))
        .unwrap()
}

pub(super) fn rid(s: &str) -> ReplicaId {
    ReplicaId::new(s).unwrap()
}

#[tokio::test]
async fn start_then_duplicate_replays_without_starting_again() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    let out = c.handle(&start("c1", "r1"), &mut reps, &rt).await;
    assert!(out.ack.ok, "{:?}", out.ack);
    assert!(!out.ack.duplicate);
    let st = out.ack.replica.clone().unwrap();
    assert_eq!(st.state, ReplicaState::Starting);
    assert!(st.addr.starts_with("127.0.0.1:"));
    assert_eq!(out.effects, vec![Effect::WatchHealth(rid("r1"))]);

    let again = c.handle(&start("c1", "r1"), &mut reps, &rt).await;
    assert!(again.ack.duplicate);
    assert_eq!(
        CommandAck {
            duplicate: false,
            ..again.ack.clone()
        },
        out.ack
    );
    assert!(again.effects.is_empty());
    assert_eq!(rt.starts(), 1);
}

#[tokio::test]
async fn start_of_a_running_replica_succeeds_with_its_status() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    c.handle(&start("c1", "r1"), &mut reps, &rt).await;
    reps.get_mut(&rid("r1")).unwrap().state = ReplicaState::Healthy;
    let out = c.handle(&start("c2", "r1"), &mut reps, &rt).await;
    assert!(out.ack.ok && !out.ack.duplicate);
    assert_eq!(out.ack.replica.unwrap().state, ReplicaState::Healthy);
    assert!(out.effects.is_empty());
    assert_eq!(rt.starts(), 1);
}

#[tokio::test]
async fn refuses_start_when_full() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    assert!(c.handle(&start("c1", "r1"), &mut reps, &rt).await.ack.ok);
    assert!(c.handle(&start("c2", "r2"), &mut reps, &rt).await.ack.ok);
    let out = c.handle(&start("c3", "r3"), &mut reps, &rt).await;
    assert!(!out.ack.ok);
    assert_eq!(
        out.ack.error.as_deref(),
        Some("worker w1 is full: 2/2 replicas")
    );
    assert_eq!(out.ack.id, Some(CommandId::new("c3").unwrap()));
    assert!(out.rejected.is_none());
    assert_eq!(rt.starts(), 2);

    // A stopping replica still holds its slot (`ReplicaState::takes_slot`) until it exits.
    let out = c.handle(&stop("c4", "r1"), &mut reps, &rt).await;
    assert!(out.ack.ok);
    assert_eq!(out.ack.replica.unwrap().state, ReplicaState::Stopping);
    assert_eq!(
        out.effects,
        vec![Effect::Stop {
            replica: rid("r1"),
            grace: Duration::from_millis(100)
        }]
    );
    let out = c.handle(&start("c5", "r3"), &mut reps, &rt).await;
    assert_eq!(
        out.ack.error.as_deref(),
        Some("worker w1 is full: 2/2 replicas")
    );
    // Starting a replica that is stopping is refused, clearly.
    let out = c.handle(&start("c6", "r1"), &mut reps, &rt).await;
    assert!(out.ack.error.unwrap().contains("stopping"));
    // Once it has exited (the run loop drops it from the table), its slot is free.
    reps.remove(&rid("r1"));
    assert!(c.handle(&start("c7", "r3"), &mut reps, &rt).await.ack.ok);
    assert_eq!(rt.starts(), 3);
}

#[tokio::test]
async fn stop_of_unknown_replica_is_ok_and_stop_is_idempotent() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    let out = c.handle(&stop("c1", "ghost"), &mut reps, &rt).await;
    assert!(out.ack.ok && out.ack.replica.is_none() && out.effects.is_empty());
    c.handle(&start("c2", "r1"), &mut reps, &rt).await;
    let first = c.handle(&stop("c3", "r1"), &mut reps, &rt).await;
    assert_eq!(first.effects.len(), 1);
    let second = c.handle(&stop("c4", "r1"), &mut reps, &rt).await;
    assert!(second.ack.ok && second.effects.is_empty());
    let dup = c.handle(&stop("c3", "r1"), &mut reps, &rt).await;
    assert!(dup.ack.duplicate && dup.effects.is_empty());
    // Stops are carried out by the run loop, not by `handle`.
    assert!(!rt.calls().iter().any(|c| matches!(c, Call::Stop { .. })));
}

#[tokio::test]
async fn runtime_failure_becomes_an_error_ack() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    rt.fail_next_start("no such program");
    let out = c.handle(&start("c1", "r1"), &mut reps, &rt).await;
    assert!(!out.ack.ok);
    assert!(out.ack.error.unwrap().contains("no such program"));
    assert!(reps.is_empty());
    assert!(out.rejected.is_none());
}

#[tokio::test]
async fn malformed_payloads_get_error_acks() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    let big = format!("{{\"id\":\"c1\",\"pad\":\"{}\"}}", "x".repeat(MAX_PAYLOAD));
    let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
        (b"{not json".to_vec(), None, "bad_json"),
        (b"".to_vec(), None, "empty"),
        (br#"{"id":"c1","action":"start","replica":"r1"}"#.to_vec(), Some("c1"), "bad_field"),
        (br#"{"id":"c2","action":"explode","replica":"r1"}"#.to_vec(), Some("c2"), "bad_field"),
        (br#"{"id":"c3","action":"stop","replica":"a.b"}"#.to_vec(), Some("c3"), "bad_field"),
        (br#"{"id":"c4","action":"stop","replica":"r1","grace_ms":-5}"#.to_vec(), Some("c4"), "bad_field"),
        (br#"{"id":"c5","action":"stop","replica":7}"#.to_vec(), Some("c5"), "bad_field"),
        (br#"{"id":"bad id","action":"stop","replica":"r1"}"#.to_vec(), None, "bad_field"),
        (
            br#"{"id":"c6","action":"start","replica":"r1","spec":{"service":"web","command":["x"],"cpus":-1}}"#.to_vec(),
            Some("c6"),
            "invalid",
        ),
        (big.into_bytes(), None, "too_large"),
    ];
    for (payload, id, kind) in cases {
        let out = c.handle(&payload, &mut reps, &rt).await;
        let shown = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
        assert!(!out.ack.ok, "{shown}");
        assert_eq!(out.ack.id.as_ref().map(|i| i.as_str()), id, "{shown}");
        let err = out.ack.error.clone().unwrap();
        assert!(err.starts_with("worker w1: bad command: "), "{err}");
        assert_eq!(
            out.rejected.as_ref().map(|r| r.0),
            Some(kind),
            "{shown}: {err}"
        );
    }
    assert!(reps.is_empty());
    assert_eq!(rt.starts(), 0);
    // A malformed command does not poison its id: a good one with the same id runs.
    assert!(c.handle(&start("c1", "r1"), &mut reps, &rt).await.ack.ok);
}

#[tokio::test]
async fn starts_the_policy_refuses_never_reach_the_runtime() {
    let (mut c, rt, mut reps) = (worker(), FakeRuntime::new(), Replicas::new());
    let cases = [
        (
            json!({"service": "web", "command": ["/bin/ls"]}),
            "forbidden",
            "is not on this worker's allow-list (--allow-command /bin/sh)",
        ),
        (
            json!({"service": "web", "command": ["sh"], "env": {"LD_PRELOAD": "/tmp/x.so"}}),
            "forbidden",
            "environment variable LD_PRELOAD is refused",
        ),
        (
            json!({"service": "web", "command": ["sh"], "secrets": {"DB": "db"}}),
            "secret",
            "has no secrets dir",
        ),
    ];
    for (i, (spec, kind, needle)) in cases.into_iter().enumerate() {
        let out = c
            .handle(&start_with(&format!("c{i}"), "r1", spec), &mut reps, &rt)
            .await;
        assert!(!out.ack.ok);
        let err = out.ack.error.clone().unwrap();
        assert!(
            err.starts_with("worker w1: ") && err.contains(needle),
            "{err}"
        );
        assert_eq!(out.refused, Some((kind, err)));
        assert!(out.rejected.is_none() && out.effects.is_empty());
    }
    assert_eq!(rt.starts(), 0);
    assert!(reps.is_empty());
    // A program that does not exist is an error, not a refusal.
    let out = c
        .handle(
            &start_with(
                "c9",
                "r1",
                json!({"service": "web", "command": ["no-such-program-xyz"]}),
            ),
            &mut reps,
            &rt,
        )
        .await;
    assert!(out.ack.error.unwrap().contains("not found in PATH"));
    assert!(out.refused.is_none());
    assert_eq!(rt.starts(), 0);
}

#[tokio::test]
async fn the_runtime_gets_the_canonical_program_and_the_secret_values() {
    let secrets = acs_testkit::TempDir::new("cmd-secrets");
    std::fs::write(secrets.path().join("db"), "hunter2\n").unwrap();
    let policy = Policy {
        allow_commands: vec!["/bin/sh".into()],
        secrets_dir: Some(secrets.path().to_path_buf()),
        ..Policy::default()
    };
    let mut c = Commands::new(WorkerId::new("w1").unwrap(), 2, policy);
    let (rt, mut reps) = (FakeRuntime::new(), Replicas::new());
    let spec = json!({"service": "web", "command": ["sh", "-c", "x"], "env": {"A": "1"}, "secrets": {"DB_PASSWORD": "db"}});
    let out = c
        .handle(&start_with("c1", "r1", spec), &mut reps, &rt)
        .await;
    assert!(out.ack.ok, "{:?}", out.ack);
    assert!(!serde_json::to_string(&out.ack).unwrap().contains("hunter2"));
    let Some(Call::Start { spec, .. }) = rt.calls().into_iter().next() else {
        panic!("no start: {:?}", rt.calls());
    };
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(spec.command, [sh.to_str().unwrap(), "-c", "x"]);
    assert_eq!(
        spec.env.get("DB_PASSWORD").map(String::as_str),
        Some("hunter2")
    );
    assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
    // A missing secret refuses the start.
    std::fs::remove_file(secrets.path().join("db")).unwrap();
    let spec = json!({"service": "web", "command": ["sh"], "secrets": {"DB_PASSWORD": "db"}});
    let out = c
        .handle(&start_with("c2", "r2", spec), &mut reps, &rt)
        .await;
    assert_eq!(out.refused.map(|r| r.0), Some("secret"));
    assert!(out
        .ack
        .error
        .unwrap()
        .contains("secret \"db\": not found in"));
    assert_eq!(rt.starts(), 1);
}

#[test]
fn ack_cache_is_bounded() {
    let mut cache = AckCache::new(3);
    for i in 0..5 {
        let id = CommandId::new(format!("c{i}")).unwrap();
        cache.insert(id.clone(), CommandAck::error(Some(id), "x"));
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.get(&CommandId::new("c0").unwrap()).is_none());
    assert!(cache.get(&CommandId::new("c4").unwrap()).is_some());
}
