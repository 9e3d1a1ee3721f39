//! `acsctl auth` against a real nats-server: the generated `auth.conf` (and `tls.conf`) is
//! included by a server config, and each identity connects with its own nkey seed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acs_auth::{AuthDir, InitOptions, Role};
use acs_events::{ProxyId, Subjects, WorkerId};
use acs_node::{Auth, NatsOptions, Tls};
use acs_testkit::{NatsServer, ServerAuth, TempDir};
use async_nats::{Client, Event, RequestErrorKind, ServerError, Subscriber};
use futures::StreamExt;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

/// A nats-server whose config includes `<tmp>/auth/auth.conf` (and `tls.conf` with `tls`),
/// with `extra` lines appended.
fn server(tmp: &Path, tls: bool, extra: &str) -> NatsServer {
    NatsServer::with_auth(ServerAuth::Dir {
        dir: tmp.join("auth"),
        tls,
        extra: extra.into(),
    })
}

fn auth_dir(tmp: &TempDir) -> AuthDir {
    AuthDir::new(tmp.path().join("auth"), Subjects::default())
}

/// An auth directory made with `init`, and a server using it.
struct Rig {
    dir: AuthDir,
    url: String,
    server: NatsServer,
    tmp: TempDir,
}

impl Rig {
    fn start(tag: &str, workers: &[&str], proxies: &[&str]) -> Rig {
        Rig::start_with(tag, workers, proxies, "")
    }

    fn start_with(tag: &str, workers: &[&str], proxies: &[&str], extra: &str) -> Rig {
        let tmp = TempDir::new(tag);
        let dir = auth_dir(&tmp);
        let opts = InitOptions {
            workers: workers
                .iter()
                .map(|id| WorkerId::new(*id).unwrap())
                .collect(),
            proxies: proxies
                .iter()
                .map(|id| ProxyId::new(*id).unwrap())
                .collect(),
            ..Default::default()
        };
        dir.init(&opts).unwrap();
        let server = server(tmp.path(), false, extra);
        let url = server.url();
        Rig {
            dir,
            url,
            server,
            tmp,
        }
    }

    async fn connect(&self, role: &Role) -> Client {
        connect(&self.dir, role, &self.url).await
    }

    async fn connect_watching(&self, role: &Role) -> (Client, mpsc::UnboundedReceiver<String>) {
        connect_watching(&self.dir, role, &self.url).await
    }
}

fn worker(id: &str) -> Role {
    Role::Worker(WorkerId::new(id).unwrap())
}

async fn try_connect(o: &NatsOptions) -> Result<Client, String> {
    o.connect_once(Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())
}

async fn connect(dir: &AuthDir, role: &Role, url: &str) -> Client {
    try_connect(&dir.nats_options(role, url))
        .await
        .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"))
}

/// Connects as `role` and hands over the server's error messages (permissions violations) and
/// disconnects, as the event callback sees them.
async fn connect_watching(
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
                let _ = match event {
                    Event::ServerError(ServerError::Other(m)) => tx.send(m),
                    Event::ServerError(ServerError::AuthorizationViolation) => {
                        tx.send("authorization violation".into())
                    }
                    Event::Disconnected => tx.send("disconnected".into()),
                    _ => Ok(()),
                };
            }
        })
        .connect(&o.servers)
        .await
        .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"));
    (client, rx)
}

/// Waits for the server's `Permissions Violation for <what> to "<subject>"`.
async fn expect_violation(events: &mut mpsc::UnboundedReceiver<String>, what: &str, subject: &str) {
    let wanted = format!("permissions violation for {what} to \"{subject}\"").to_lowercase();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(m) = events.recv().await {
            if m.to_lowercase().contains(&wanted) {
                return;
            }
            seen.push(m);
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no permissions violation for {what} to {subject}; saw {seen:?}"
    );
}

/// Publishes on `subject` until `sub` has it: a flush does not wait for the server, so a
/// subscription another connection has just made may not be in place yet. Panics on any message
/// on a `forbidden` subject received meanwhile.
async fn deliver(client: &Client, subject: &str, sub: &mut Subscriber, forbidden: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        send(client, subject).await;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            let got = m.subject.as_str();
            assert!(
                !forbidden.contains(&got),
                "a message on {got} was delivered"
            );
            if got == subject {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{subject} never arrived"
        );
    }
}

/// Publishes and flushes: the server has the message when this returns.
async fn send(client: &Client, subject: &str) {
    client
        .publish(subject.to_string(), "{}".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

/// Answers every request on `subject` with `answer`.
async fn respond(client: &Client, subject: &str, answer: &'static str) {
    let mut requests = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    let client = client.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            if let Some(reply) = m.reply {
                let _ = client.publish(reply, answer.into()).await;
                let _ = client.flush().await;
            }
        }
    });
}

/// A request's answer, asking again while the responder's subscription is not in place yet.
async fn request(client: &Client, subject: &str) -> String {
    let asked = acs_testkit::poll::eventually(WAIT, Duration::from_millis(50), || async {
        match client.request(subject.to_string(), "{}".into()).await {
            Ok(m) => Ok(String::from_utf8_lossy(&m.payload).into_owned()),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Err(e.to_string()),
            Err(e) => panic!("request on {subject} failed: {e}"),
        }
    });
    asked
        .await
        .unwrap_or_else(|e| panic!("no answer on {subject}: {e}"))
}

#[tokio::test]
async fn only_known_nkeys_connect() {
    let rig = Rig::start("auth-anon", &[], &[]);
    let err = try_connect(&NatsOptions::new(&rig.url))
        .await
        .expect_err("an anonymous client got in");
    assert!(err.contains("refused these credentials"), "{err}");

    let stranger = rig.tmp.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let o = NatsOptions::new(&rig.url).with_auth(Auth::NkeySeedFile(stranger));
    assert!(try_connect(&o).await.is_err(), "an unknown nkey got in");

    for role in Role::FIXED {
        rig.connect(&role).await;
    }
}

#[tokio::test]
async fn a_viewer_watches_but_cannot_scale() {
    let rig = Rig::start("auth-viewer", &[], &[]);
    let (viewer, mut violations) = rig.connect_watching(&Role::Viewer).await;
    let mut watch = viewer.subscribe("acs.>").await.unwrap();
    viewer.flush().await.unwrap();
    let operator = rig.connect(&Role::Operator).await;
    let mut scale = operator.subscribe("acs.>").await.unwrap();
    operator.flush().await.unwrap();
    let brain = rig.connect(&Role::Brain).await;
    deliver(&brain, "acs.backends.web", &mut watch, &[]).await;
    deliver(&brain, "acs.backends.web", &mut scale, &[]).await;

    send(&viewer, "acs.cmd.scale").await;
    expect_violation(&mut violations, "publish", "acs.cmd.scale").await;
    // Nor replace a replica (the operator and the dashboard's monitor may).
    send(&viewer, "acs.cmd.replica").await;
    expect_violation(&mut violations, "publish", "acs.cmd.replica").await;
    // The refused scale reached nobody: it is not among what the operator receives before the
    // brain's marker, published after the server had refused the viewer's message.
    let marker = "acs.events.decision.marker";
    deliver(&brain, marker, &mut scale, &["acs.cmd.scale"]).await;

    // Nor may it read anyone's replies.
    let _inbox = viewer.subscribe("_INBOX_operator.>").await.unwrap();
    viewer.flush().await.unwrap();
    expect_violation(&mut violations, "subscription", "_INBOX_operator.>").await;
}

#[tokio::test]
async fn a_worker_speaks_only_as_itself() {
    let rig = Rig::start("auth-worker", &["w1", "w2"], &[]);
    let viewer = rig.connect(&Role::Viewer).await;
    let mut watch = viewer.subscribe("acs.>").await.unwrap();
    viewer.flush().await.unwrap();
    let (w1, mut violations) = rig.connect_watching(&worker("w1")).await;
    deliver(&w1, "acs.metrics.worker.w1", &mut watch, &[]).await;
    let refused = ["acs.metrics.worker.w2", "acs.backends.web", "acs.cmd.scale"];
    for subject in refused {
        send(&w1, subject).await;
        expect_violation(&mut violations, "publish", subject).await;
    }
    let mut foreign = w1.subscribe("acs.cmd.worker.w2").await.unwrap();
    w1.flush().await.unwrap();
    expect_violation(&mut violations, "subscription", "acs.cmd.worker.w2").await;

    // What it may do goes through, after (and so proving the absence of) the refused ones.
    deliver(&w1, "acs.metrics.worker.w1", &mut watch, &refused).await;

    // It answers its own commands, through the brain's own inbox.
    respond(&w1, "acs.cmd.worker.w1", "ack").await;
    let brain = rig.connect(&Role::Brain).await;
    send(&brain, "acs.cmd.worker.w2").await;
    assert_eq!(request(&brain, "acs.cmd.worker.w1").await, "ack");
    let leaked = tokio::time::timeout(Duration::from_millis(200), foreign.next()).await;
    assert!(leaked.is_err(), "w1 received w2's command");
}

#[tokio::test]
async fn workers_and_proxies_hear_the_leader_and_cannot_speak_for_it() {
    let rig = Rig::start("auth-leader", &["w1"], &["p1"]);
    let brain = rig.connect(&Role::Brain).await;
    let (w1, mut w_violations) = rig.connect_watching(&worker("w1")).await;
    let proxy = Role::Proxy(ProxyId::new("p1").unwrap());
    let (p1, mut p_violations) = rig.connect_watching(&proxy).await;
    let mut at_worker = w1.subscribe("acs.events.leader").await.unwrap();
    let mut at_proxy = p1.subscribe("acs.events.leader").await.unwrap();
    w1.flush().await.unwrap();
    p1.flush().await.unwrap();
    deliver(&brain, "acs.events.leader", &mut at_worker, &[]).await;
    deliver(&brain, "acs.events.leader", &mut at_proxy, &[]).await;
    // Only a brain may claim a term.
    send(&w1, "acs.events.leader").await;
    expect_violation(&mut w_violations, "publish", "acs.events.leader").await;
    send(&p1, "acs.events.leader").await;
    expect_violation(&mut p_violations, "publish", "acs.events.leader").await;
}

/// The monitor answers stats and may use its own JetStream stream but not the brain's KV; the
/// viewer and the operator may ask it; the viewer may not speak for a worker. (The whole monitor
/// runs with these permissions in crates/monitor/tests/it/auth.rs.)
#[tokio::test]
async fn the_monitor_answers_stats_and_keeps_to_its_stream() {
    let tmp = TempDir::new("auth-monitor-store");
    let store = format!("jetstream {{ store_dir: {:?} }}", tmp.path());
    let rig = Rig::start_with("auth-monitor", &["w1"], &[], &store);
    let (monitor, mut m_violations) = rig.connect_watching(&Role::Monitor).await;
    let js = async_nats::jetstream::new(monitor.clone());
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "ACS_METRICS".into(),
            subjects: vec!["acs.metrics.>".into()],
            ..Default::default()
        })
        .await
        .expect("the monitor creates ACS_METRICS");
    assert_eq!(stream.cached_info().config.name, "ACS_METRICS");
    // Another stream (the brain's lease bucket) is not the monitor's: the server drops the
    // request, so wait only a second for the answer that never comes.
    let other = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(monitor.clone())
        .create_stream(async_nats::jetstream::stream::Config {
            name: "KV_acs_lease".into(),
            subjects: vec!["$KV.acs_lease.>".into()],
            ..Default::default()
        })
        .await;
    assert!(other.is_err(), "the monitor created another stream");
    expect_violation(
        &mut m_violations,
        "publish",
        "$JS.API.STREAM.CREATE.KV_acs_lease",
    )
    .await;

    // The event history stream is the monitor's too.
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "ACS_EVENTS".into(),
        subjects: vec!["acs.events.>".into()],
        ..Default::default()
    })
    .await
    .expect("the monitor creates ACS_EVENTS");

    respond(&monitor, "acs.monitor.stats", "stats").await;
    respond(&monitor, "acs.monitor.history", "history").await;
    let (viewer, mut v_violations) = rig.connect_watching(&Role::Viewer).await;
    assert_eq!(request(&viewer, "acs.monitor.stats").await, "stats");
    assert_eq!(request(&viewer, "acs.monitor.history").await, "history");
    let operator = rig.connect(&Role::Operator).await;
    assert_eq!(request(&operator, "acs.monitor.stats").await, "stats");
    assert_eq!(request(&operator, "acs.monitor.history").await, "history");
    send(&viewer, "acs.metrics.worker.w1").await;
    expect_violation(&mut v_violations, "publish", "acs.metrics.worker.w1").await;
}

#[tokio::test]
async fn a_proxy_cannot_publish_backends() {
    let rig = Rig::start("auth-proxy", &[], &["p1"]);
    let brain = rig.connect(&Role::Brain).await;
    let proxy = Role::Proxy(ProxyId::new("p1").unwrap());
    let (p1, mut violations) = rig.connect_watching(&proxy).await;
    let mut backends = p1.subscribe("acs.backends.*").await.unwrap();
    p1.flush().await.unwrap();

    send(&p1, "acs.backends.x").await;
    expect_violation(&mut violations, "publish", "acs.backends.x").await;
    deliver(&brain, "acs.backends.web", &mut backends, &[]).await;

    // Its sync request is answered through its own inbox.
    respond(&brain, "acs.sync.backends", "snapshot").await;
    assert_eq!(request(&p1, "acs.sync.backends").await, "snapshot");

    // It tells the brain a backend drained, as itself only.
    let mut drained = brain.subscribe("acs.events.drained.*").await.unwrap();
    brain.flush().await.unwrap();
    deliver(&p1, "acs.events.drained.p1", &mut drained, &[]).await;
    send(&p1, "acs.events.drained.p2").await;
    expect_violation(&mut violations, "publish", "acs.events.drained.p2").await;
}

#[tokio::test]
async fn revoke_and_reload_shut_one_worker_out() {
    let rig = Rig::start("auth-revoke", &["w1", "w2"], &[]);
    let (dir, url) = (&rig.dir, &rig.url);
    let (_w1_live, mut w1_events) = rig.connect_watching(&worker("w1")).await;
    let w1_copy: PathBuf = rig.tmp.path().join("w1-copy.nk");
    std::fs::copy(dir.seed_file(&worker("w1")), &w1_copy).unwrap();
    let as_w1 = NatsOptions::new(url).with_auth(Auth::NkeySeedFile(w1_copy));

    dir.revoke(&worker("w1")).unwrap();
    dir.add(&worker("w3")).unwrap();
    let early = try_connect(&dir.nats_options(&worker("w3"), url)).await;
    assert!(early.is_err(), "w3 got in before the reload");
    rig.server.reload();

    acs_testkit::poll::until("the revoked w1 is refused", WAIT, || async {
        try_connect(&as_w1).await.is_err()
    })
    .await;
    let err = try_connect(&as_w1)
        .await
        .expect_err("the revoked w1 got in");
    assert!(err.contains("revoked"), "{err}");
    // Its open connection is cut too.
    let cut = tokio::time::timeout(WAIT, async {
        while let Some(e) = w1_events.recv().await {
            if e == "disconnected" || e == "authorization violation" {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "w1's open connection survived the reload");
    rig.connect(&worker("w2")).await;
    acs_testkit::poll::until("the added w3 gets in", WAIT, || {
        let o = dir.nats_options(&worker("w3"), url);
        async move { try_connect(&o).await.is_ok() }
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_with_the_local_ca() {
    let tmp = TempDir::new("auth-tls");
    let dir = auth_dir(&tmp);
    let tls_opts = InitOptions {
        tls: true,
        tls_hosts: vec!["localhost".into(), "127.0.0.1".into()],
        ..Default::default()
    };
    dir.init(&tls_opts).unwrap();
    let server = server(tmp.path(), true, "");
    let url = server.url();
    connect(&dir, &Role::Operator, &url).await;

    let as_operator = dir.nats_options(&Role::Operator, &url);
    let (cert, key) = dir.tls().client(Path::new("operator"));
    // Refused, and for the reason the TLS layer gives (rustls on our side, the server's alert).
    let refused = |o: NatsOptions, what: &'static str, reason: &'static str| async move {
        match try_connect(&o).await {
            Ok(_) => panic!("a client {what} got in"),
            Err(e) => assert!(e.contains(reason), "a client {what}: {e}"),
        }
    };
    let no_ca = Tls {
        ca: None,
        client: Some((cert, key)),
        required: true,
    };
    refused(
        as_operator.clone().with_tls(no_ca),
        "without the CA",
        "UnknownIssuer",
    )
    .await;
    let no_cert = Tls {
        ca: Some(dir.tls().ca()),
        client: None,
        required: true,
    };
    refused(
        as_operator.clone().with_tls(no_cert),
        "without a client certificate",
        "BadCertificate",
    )
    .await;
    let plain = dir
        .nats_options(&Role::Operator, &url.replace("tls://", "nats://"))
        .with_tls(Tls::default());
    refused(plain, "without TLS settings", "UnknownIssuer").await;

    let other_tmp = TempDir::new("auth-tls-other");
    let other = auth_dir(&other_tmp);
    other.init(&tls_opts).unwrap();
    let foreign = Tls {
        ca: Some(dir.tls().ca()),
        client: Some(other.tls().client(Path::new("operator"))),
        required: true,
    };
    refused(
        as_operator.with_tls(foreign),
        "with a certificate from another CA",
        "BadCertificate",
    )
    .await;
}

#[tokio::test]
async fn the_brain_may_keep_state_in_jetstream_kv() {
    let tmp = TempDir::new("auth-kv-store");
    let store = format!("jetstream {{ store_dir: {:?} }}", tmp.path());
    let rig = Rig::start_with("auth-kv", &[], &[], &store);
    let brain = rig.connect(&Role::Brain).await;

    let js = async_nats::jetstream::new(brain);
    // The bucket's stream, made by hand: async-nats 0.51's `create_key_value` cannot read
    // nats-server 2.9's answer (with or without auth), while every other KV call works.
    let stream = async_nats::jetstream::stream::Config {
        name: "KV_acs_lease".into(),
        subjects: vec!["$KV.acs_lease.>".into()],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    };
    js.get_or_create_stream(stream)
        .await
        .expect("create a stream as the brain");
    let kv = js
        .get_key_value("acs_lease")
        .await
        .expect("open a KV bucket as the brain");
    // A watch delivers to the brain's own inbox (`_INBOX_brain.>`).
    let mut watch = kv.watch("leader").await.expect("watch as the brain");
    kv.put("leader", "brain-1".into())
        .await
        .expect("put as the brain");
    let entry = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("no watch update")
        .unwrap()
        .unwrap();
    assert_eq!(&entry.value[..], b"brain-1");
    assert_eq!(
        kv.get("leader").await.unwrap().as_deref(),
        Some(&b"brain-1"[..])
    );
}

fn acsctl_auth(dir: &Path, args: &[&str]) -> (bool, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_acsctl"))
        .arg("auth")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("ACS_PREFIX")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_command_line() {
    let tmp = TempDir::new("auth-cli");
    let dir = tmp.path().join("auth");
    let (ok, _, out) = acsctl_auth(&dir, &["init", "--workers", "w1,w2", "--proxies", "p1"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("created: brain, operator, viewer, monitor, worker w1, worker w2, proxy p1"),
        "{out}"
    );
    assert!(out.contains("nats-server --signal reload=<pid>"), "{out}");
    let (ok, _, out) = acsctl_auth(&dir, &["init", "--workers", "w1"]);
    assert!(
        ok && !out.contains("created:") && !out.contains("reload"),
        "{out}"
    );

    let (ok, _, list) = acsctl_auth(&dir, &["list"]);
    assert!(ok, "{list}");
    let ids = AuthDir::new(&dir, Subjects::default())
        .identities()
        .unwrap();
    assert_eq!(list.lines().count(), 7, "{list}");
    for i in ids {
        assert!(
            list.contains(&i.public_key),
            "{} missing from {list}",
            i.role
        );
    }

    let (ok, code, out) = acsctl_auth(&dir, &["add", "worker", "w.3"]);
    assert!(
        !ok && code == 2 && out.contains("worker id \"w.3\" contains '.'"),
        "{code} {out}"
    );
    let (ok, _, out) = acsctl_auth(&dir, &["revoke", "proxy", "p1"]);
    assert!(
        ok && out.contains("revoked: proxy p1") && out.contains("reload"),
        "{out}"
    );
    let (ok, _, out) = acsctl_auth(&dir, &["revoke", "proxy", "p1"]);
    assert!(ok && out.contains("proxy p1 had no credentials"), "{out}");
}
