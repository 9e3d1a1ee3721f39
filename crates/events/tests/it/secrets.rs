//! `ReplicaSpec.secrets` (added after v1): payloads without it keep parsing, payloads with it
//! round-trip, an empty map is not written, and a secret name that is a path is refused.

use std::path::Path;

use acs_events::*;

fn read(dir: &str, name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn spec_of(c: &WorkerCommand) -> &ReplicaSpec {
    match &c.action {
        Action::Start { spec, .. } => spec,
        other => panic!("not a start: {other:?}"),
    }
}

#[test]
fn a_start_written_before_secrets_parses_with_none_and_writes_none() {
    let c: WorkerCommand = decode(&read("v1", "command_start.json")).unwrap();
    assert!(spec_of(&c).secrets.is_empty());
    let json = String::from_utf8(encode(&c)).unwrap();
    assert!(!json.contains("secrets"), "{json}");
}

#[test]
fn a_start_with_secrets_round_trips_names_only() {
    let c: WorkerCommand = decode(&read("v1", "command_start_secrets.json")).unwrap();
    let s = spec_of(&c);
    assert_eq!(
        s.secrets.get("DB_PASSWORD").map(String::as_str),
        Some("web-db-password")
    );
    assert_eq!(
        s.secrets.get("API_TOKEN").map(String::as_str),
        Some("api.token")
    );
    let again: WorkerCommand = decode(&encode(&c)).unwrap();
    assert_eq!(again, c);
}

#[test]
fn bad_secret_references_are_refused() {
    let e = decode::<WorkerCommand>(&read("bad", "command_secret_path.json")).unwrap_err();
    assert!(
        e.to_string().contains("secret name \"../../etc/shadow\""),
        "{e}"
    );
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        ".hidden",
        &"x".repeat(MAX_SECRET_NAME + 1),
    ] {
        assert!(check_secret_name(bad).is_err(), "{bad:?}");
    }
    for good in ["db", "web-db.password_2", "A"] {
        assert!(check_secret_name(good).is_ok(), "{good:?}");
    }
    let spec = |v: serde_json::Value| -> ReplicaSpec { serde_json::from_value(v).unwrap() };
    let both = spec(serde_json::json!({
        "service": "web", "command": ["x"], "env": {"K": "1"}, "secrets": {"K": "k"}
    }));
    assert!(both
        .validate()
        .unwrap_err()
        .contains("both in env and in secrets"));
    let bad_var =
        spec(serde_json::json!({"service": "web", "command": ["x"], "secrets": {"A=B": "k"}}));
    assert!(bad_var
        .validate()
        .unwrap_err()
        .contains("not an environment variable name"));
}
