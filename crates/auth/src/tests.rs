use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use acs_events::{ProxyId, Subjects, WorkerId};
use acs_testkit::TempDir;

use super::*;

fn w(id: &str) -> Role {
    Role::Worker(WorkerId::new(id).unwrap())
}
fn p(id: &str) -> Role {
    Role::Proxy(ProxyId::new(id).unwrap())
}
fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn perms(role: &Role) -> Permissions {
    permissions(role, &Subjects::default())
}

#[test]
fn worker_speaks_only_as_itself() {
    assert_eq!(
        perms(&w("w1")),
        Permissions {
            publish: strs(&[
                "acs.metrics.worker.w1",
                "acs.events.replica.w1",
                "acs.events.error.vmm-worker"
            ]),
            subscribe: strs(&["acs.cmd.worker.w1", "acs.events.leader"]),
            allow_responses: true,
        }
    );
}

#[test]
fn brain_commands_and_listens() {
    assert_eq!(
        perms(&Role::Brain),
        Permissions {
            publish: strs(&[
                "acs.cmd.worker.*",
                "acs.backends.*",
                "acs.events.decision.*",
                "acs.events.worker.*",
                "acs.events.leader",
                "acs.events.error.brain",
                "$JS.API.>",
                "$KV.>",
            ]),
            subscribe: strs(&[
                "acs.metrics.worker.*",
                "acs.metrics.proxy.*",
                "acs.events.drained.*",
                "acs.events.replica.*",
                "acs.cmd.scale",
                "acs.cmd.maintenance",
                "acs.cmd.replica",
                "acs.status",
                "acs.sync.backends",
                "_INBOX_brain.>",
            ]),
            allow_responses: true,
        }
    );
}

#[test]
fn proxy_operator_viewer_monitor() {
    assert_eq!(
        perms(&p("p1")),
        Permissions {
            publish: strs(&[
                "acs.metrics.proxy.p1",
                "acs.events.drained.p1",
                "acs.sync.backends",
                "acs.events.error.proxy"
            ]),
            subscribe: strs(&["acs.backends.*", "acs.events.leader", "_INBOX_proxy_p1.>"]),
            allow_responses: false,
        }
    );
    assert_eq!(
        perms(&Role::Operator),
        Permissions {
            publish: strs(&[
                "acs.cmd.scale",
                "acs.status",
                "acs.cmd.maintenance",
                "acs.cmd.replica",
                "acs.monitor.stats",
                "acs.monitor.alarms",
                "acs.monitor.history"
            ]),
            subscribe: strs(&["acs.>", "_INBOX_operator.>"]),
            allow_responses: false,
        }
    );
    assert_eq!(
        perms(&Role::Viewer),
        Permissions {
            publish: strs(&["acs.monitor.stats", "acs.monitor.history"]),
            subscribe: strs(&["acs.>", "_INBOX_viewer.>"]),
            allow_responses: false
        }
    );
    assert_eq!(
        perms(&Role::Monitor),
        Permissions {
            publish: strs(&[
                "acs.events.alarm.*",
                "acs.events.error.monitor",
                "acs.rollup.>",
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.ACS_METRICS",
                "$JS.API.STREAM.CREATE.ACS_METRICS",
                "$JS.API.STREAM.UPDATE.ACS_METRICS",
                "$JS.API.CONSUMER.CREATE.ACS_METRICS",
                "$JS.API.CONSUMER.CREATE.ACS_METRICS.>",
                "$JS.API.CONSUMER.INFO.ACS_METRICS.>",
                "$JS.API.CONSUMER.DELETE.ACS_METRICS.>",
                "$JS.API.CONSUMER.MSG.NEXT.ACS_METRICS.>",
                "$JS.API.STREAM.INFO.ACS_ROLLUPS",
                "$JS.API.STREAM.CREATE.ACS_ROLLUPS",
                "$JS.API.STREAM.UPDATE.ACS_ROLLUPS",
                "$JS.API.CONSUMER.CREATE.ACS_ROLLUPS",
                "$JS.API.CONSUMER.CREATE.ACS_ROLLUPS.>",
                "$JS.API.CONSUMER.INFO.ACS_ROLLUPS.>",
                "$JS.API.CONSUMER.DELETE.ACS_ROLLUPS.>",
                "$JS.API.CONSUMER.MSG.NEXT.ACS_ROLLUPS.>",
                "$JS.API.STREAM.INFO.KV_acs_monitor",
                "$JS.API.STREAM.CREATE.KV_acs_monitor",
                "$JS.API.STREAM.MSG.GET.KV_acs_monitor",
                "$JS.API.CONSUMER.CREATE.KV_acs_monitor",
                "$JS.API.DIRECT.GET.KV_acs_monitor.>",
                "$JS.API.CONSUMER.CREATE.KV_acs_monitor.>",
                "$JS.API.CONSUMER.INFO.KV_acs_monitor.>",
                "$JS.API.CONSUMER.DELETE.KV_acs_monitor.>",
                "$JS.FC.KV_acs_monitor.>",
                "$KV.acs_monitor.>",
                "$JS.API.STREAM.INFO.ACS_EVENTS",
                "$JS.API.STREAM.CREATE.ACS_EVENTS",
                "$JS.API.STREAM.UPDATE.ACS_EVENTS",
                "$JS.API.CONSUMER.CREATE.ACS_EVENTS",
                "$JS.API.CONSUMER.CREATE.ACS_EVENTS.>",
                "$JS.API.CONSUMER.INFO.ACS_EVENTS.>",
                "$JS.API.CONSUMER.DELETE.ACS_EVENTS.>",
                "$JS.API.CONSUMER.MSG.NEXT.ACS_EVENTS.>",
                "acs.monitor.alarms",
                "acs.cmd.scale",
                "acs.cmd.maintenance",
                "acs.cmd.replica",
                "acs.status",
            ]),
            subscribe: strs(&["acs.>", "_INBOX_monitor.>"]),
            allow_responses: true,
        }
    );
}

#[test]
fn permissions_follow_the_prefix() {
    let s = Subjects::new("prod.acs").unwrap();
    let worker = permissions(&w("w1"), &s);
    assert_eq!(
        worker.subscribe,
        strs(&["prod.acs.cmd.worker.w1", "prod.acs.events.leader"])
    );
    assert!(permissions(&Role::Brain, &s)
        .publish
        .contains(&"prod.acs.cmd.worker.*".to_string()));
}

#[test]
fn each_requester_has_its_own_inbox() {
    assert_eq!(Role::Brain.inbox_prefix().as_deref(), Some("_INBOX_brain"));
    assert_eq!(p("p1").inbox_prefix().as_deref(), Some("_INBOX_proxy_p1"));
    assert_eq!(w("w1").inbox_prefix(), None);
    // The viewer queries monitor stats, so it has an inbox of its own.
    assert_eq!(
        Role::Viewer.inbox_prefix().as_deref(),
        Some("_INBOX_viewer")
    );
    // Nobody may read the shared default inbox.
    for role in Role::FIXED.into_iter().chain([w("w1"), p("p1")]) {
        assert!(
            perms(&role)
                .subscribe
                .iter()
                .all(|s| !s.starts_with("_INBOX.")),
            "{role}"
        );
    }
}

#[test]
fn renders_nkey_users() {
    let users = [
        User {
            role: w("w1"),
            public_key: "UWORKER".into(),
        },
        User {
            role: Role::Viewer,
            public_key: "UVIEWER".into(),
        },
    ];
    let conf = render_auth_conf(&users, &Subjects::default());
    assert!(conf.starts_with("# GENERATED"), "{conf}");
    assert!(conf.contains("authorization {\n  users = [\n"), "{conf}");
    let worker = [
        "    # worker w1\n    {\n      nkey: \"UWORKER\"\n      permissions: {\n",
        "        publish: { allow: [\"acs.metrics.worker.w1\", \"acs.events.replica.w1\", \"acs.events.error.vmm-worker\"] }\n",
        "        subscribe: { allow: [\"acs.cmd.worker.w1\", \"acs.events.leader\"] }\n        allow_responses: true\n      }\n    }\n",
    ]
    .concat();
    assert!(conf.contains(&worker), "{conf}");
    // The viewer may publish only stats and history queries, and read replies only in its own inbox.
    assert!(
        conf.contains(
            "nkey: \"UVIEWER\"\n      permissions: {\n        publish: { allow: [\"acs.monitor.stats\", \"acs.monitor.history\"] }\n        subscribe: { allow: [\"acs.>\", \"_INBOX_viewer.>\"] }\n"
        ),
        "{conf}"
    );
    assert_eq!(conf.matches("allow_responses").count(), 1, "{conf}");
}

#[test]
fn renders_tls_conf() {
    let conf = render_tls_conf(Path::new("/etc/nats/auth/tls"));
    assert!(
        conf.contains("cert_file: \"/etc/nats/auth/tls/server.pem\""),
        "{conf}"
    );
    assert!(
        conf.contains("ca_file: \"/etc/nats/auth/tls/ca.pem\""),
        "{conf}"
    );
    assert!(conf.contains("verify: true"), "{conf}");
}

/// An empty auth directory for prefix `acs`.
fn fresh(tag: &str) -> (TempDir, AuthDir) {
    let tmp = TempDir::new(tag);
    let dir = AuthDir::new(tmp.path().join("auth"), Subjects::default());
    (tmp, dir)
}

/// `result` is an error whose message holds every one of `parts`.
fn assert_mentions<T: std::fmt::Debug>(result: Result<T>, parts: &[&str]) {
    let err = result.unwrap_err().to_string();
    assert!(parts.iter().all(|p| err.contains(p)), "{err}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn init_is_idempotent_and_add_revoke_touch_one_identity() {
    let (_tmp, dir) = fresh("auth-init");
    let opts = InitOptions {
        workers: vec![WorkerId::new("w1").unwrap()],
        ..Default::default()
    };
    let first = dir.init(&opts).unwrap();
    assert_eq!(
        first.created,
        [
            Role::Brain,
            Role::Operator,
            Role::Viewer,
            Role::Monitor,
            w("w1")
        ]
    );
    assert_eq!(mode(&dir.seed_file(&Role::Brain)), 0o600);
    assert_eq!(mode(dir.root()), 0o700);
    assert!(read(&dir.seed_file(&w("w1"))).starts_with("SU"));
    let seeds = |d: &AuthDir| d.identities().unwrap();
    let before = seeds(&dir);

    let again = dir.init(&opts).unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.kept.len(), 5);
    assert_eq!(seeds(&dir), before);

    assert_eq!(dir.add(&w("w2")).unwrap().created, [w("w2")]);
    assert_eq!(dir.add(&p("p1")).unwrap().created, [p("p1")]);
    assert_eq!(dir.revoke(&w("w1")).unwrap().removed, [w("w1")]);
    assert!(dir.revoke(&w("w1")).unwrap().removed.is_empty());
    let after = seeds(&dir);
    let roles: Vec<_> = after.iter().map(|i| i.role.clone()).collect();
    assert_eq!(
        roles,
        [
            Role::Brain,
            Role::Operator,
            Role::Viewer,
            Role::Monitor,
            w("w2"),
            p("p1")
        ]
    );
    for i in &before[..4] {
        assert!(after.contains(i), "{} changed", i.role);
    }
    let conf = read(&dir.auth_conf());
    assert!(
        conf.contains("# worker w2")
            && conf.contains("# proxy p1")
            && !conf.contains("# worker w1")
    );
    for i in &after {
        assert!(conf.contains(&i.public_key), "{}", i.role);
    }
}

#[test]
fn a_directory_keeps_its_prefix() {
    let tmp = TempDir::new("auth-prefix");
    AuthDir::new(tmp.path(), Subjects::default())
        .init(&InitOptions::default())
        .unwrap();
    let other = AuthDir::new(tmp.path(), Subjects::new("t1").unwrap());
    assert_mentions(other.add(&w("w1")), &["prefix \"acs\"", "--prefix acs"]);
}

#[test]
fn stray_and_damaged_files_are_named() {
    let (_tmp, dir) = fresh("auth-bad");
    dir.init(&InitOptions::default()).unwrap();
    std::fs::write(dir.root().join("workers/bad.id.nk"), "x").unwrap();
    assert_mentions(dir.identities(), &["bad.id.nk", "worker id"]);
    std::fs::remove_file(dir.root().join("workers/bad.id.nk")).unwrap();
    std::fs::write(dir.seed_file(&Role::Viewer), "not a seed\n").unwrap();
    assert_mentions(
        dir.init(&InitOptions::default()),
        &["viewer.nk", "nkey seed"],
    );
}

#[test]
fn tls_is_made_once_and_follows_identities() {
    let (_tmp, dir) = fresh("auth-tls");
    let opts = InitOptions {
        tls: true,
        workers: vec![WorkerId::new("w1").unwrap()],
        ..Default::default()
    };
    let made = dir.init(&opts).unwrap().certificates;
    assert!(
        made.contains(&"CA".to_string()) && made.contains(&"worker w1".to_string()),
        "{made:?}"
    );
    assert!(
        made.iter()
            .any(|m| m == "server certificate for localhost, 127.0.0.1"),
        "{made:?}"
    );
    let tls = dir.tls();
    assert_eq!(mode(&tls.ca_key()), 0o600);
    assert_eq!(mode(&tls.client(Path::new("workers/w1")).1), 0o600);
    let ca = read(&tls.ca());
    let server = read(&tls.server_cert());

    assert!(dir
        .init(&InitOptions::default())
        .unwrap()
        .certificates
        .is_empty());
    assert_eq!(
        (read(&tls.ca()), read(&tls.server_cert())),
        (ca.clone(), server.clone())
    );
    // New names: a new server certificate from the same CA.
    let hosts = InitOptions {
        tls: true,
        tls_hosts: vec!["nats".into()],
        ..Default::default()
    };
    assert_eq!(
        dir.init(&hosts).unwrap().certificates,
        ["server certificate for nats"]
    );
    assert_eq!(read(&tls.ca()), ca);
    assert_ne!(read(&tls.server_cert()), server);

    assert_eq!(dir.add(&w("w2")).unwrap().certificates, ["worker w2"]);
    assert!(tls.client(Path::new("workers/w2")).0.is_file());
    dir.revoke(&w("w2")).unwrap();
    assert!(!tls.client(Path::new("workers/w2")).0.exists());
    assert!(read(&dir.tls_conf()).contains(
        &tls.root()
            .canonicalize()
            .unwrap()
            .join("ca.pem")
            .display()
            .to_string()
    ));
}

#[test]
fn how_a_process_connects_as_a_role() {
    let (_tmp, dir) = fresh("auth-env");
    dir.init(&InitOptions::default()).unwrap();
    let env = dir.connect_env(&Role::Operator, Path::new("/auth"));
    assert_eq!(
        env,
        [
            ("NATS_NKEY", "/auth/operator.nk".into()),
            ("NATS_INBOX_PREFIX", "_INBOX_operator".into())
        ]
    );
    assert_eq!(
        dir.connect_env(&w("w1"), Path::new("/a")),
        [("NATS_NKEY", "/a/workers/w1.nk".to_string())]
    );
    let o = dir.nats_options(&Role::Operator, "nats://127.0.0.1:1");
    assert_eq!(
        o.auth,
        acs_node::Auth::NkeySeedFile(dir.seed_file(&Role::Operator))
    );
    assert_eq!(o.inbox_prefix.as_deref(), Some("_INBOX_operator"));
    assert!(!o.tls.enabled());

    dir.init(&InitOptions {
        tls: true,
        ..Default::default()
    })
    .unwrap();
    let env = dir.connect_env(&p("p1"), Path::new("/auth"));
    assert!(
        env.contains(&("NATS_CERT", "/auth/tls/proxies/p1.pem".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("NATS_CA", "/auth/tls/ca.pem".into())),
        "{env:?}"
    );
    assert!(dir
        .nats_options(&Role::Brain, "nats://127.0.0.1:1")
        .tls
        .enabled());
}

#[test]
fn operator_may_request_maintenance_viewer_may_not() {
    assert!(perms(&Role::Operator)
        .publish
        .contains(&"acs.cmd.maintenance".to_string()));
    assert!(!perms(&Role::Viewer)
        .publish
        .contains(&"acs.cmd.maintenance".to_string()));
    assert!(perms(&Role::Operator)
        .publish
        .contains(&"acs.cmd.replica".to_string()));
    assert!(!perms(&Role::Viewer)
        .publish
        .contains(&"acs.cmd.replica".to_string()));
}
