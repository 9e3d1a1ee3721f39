//! Alarms end to end, against real parts: a nats-server with JetStream, the monitor (`run`),
//! real WorkerMetrics on NATS, a real SMTP server (`python3 -m aiosmtpd`, Debian's
//! python3-aiosmtpd, with a handler that stores each mail as JSON) and a real HTTP server in
//! this test collecting webhook and Slack bodies.
//!
//! Asserted: pending → firing → resolved on `acs.events.alarm.<rule>`; the mail's subject and
//! body carry the rule and the value; exactly one notice per state change on every channel,
//! also across a monitor restart while firing; an ack over the HTTP API stops repeats; an
//! unacked alarm escalates to the second channel after the interval, and a refused send is
//! retried; bad API input gets 4xx; of two monitors only the lease holder notifies, and the
//! other takes over without repeating; with auth on, the monitor role's permissions suffice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{
    decode, encode, AlarmEvent, AlarmReply, AlarmState, Severity, Subjects, WorkerMetrics,
};
use acs_monitor::alarm::{rules, AlarmConfig};
use acs_monitor::service::unix_ms;
use acs_testkit::msg::worker_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::{free_port, wait_for_port, NatsServer, TempDir};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;

// ---- the receivers -------------------------------------------------------------------------

/// What the HTTP receiver got: (path, JSON body).
type Hits = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A real HTTP server collecting every POST body; answers 200, except the first POST on
/// `/page`, which gets a 503 (recorded as `/page-refused`) so the sender has to retry.
async fn http_receiver() -> (SocketAddr, Hits) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Hits = Arc::default();
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let h = h.clone();
                        async move {
                            let mut path = req.uri().path().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json = serde_json::from_slice(&body).unwrap_or(
                                serde_json::Value::String(String::from_utf8_lossy(&body).into()),
                            );
                            let mut hits = h.lock().unwrap();
                            let refuse =
                                path == "/page" && !hits.iter().any(|(p, _)| p == "/page-refused");
                            if refuse {
                                path = "/page-refused".into();
                            }
                            hits.push((path, json));
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            if refuse {
                                *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

fn hits_on(hits: &Hits, path: &str) -> Vec<serde_json::Value> {
    hits.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b.clone())
        .collect()
}

/// aiosmtpd handler: every mail becomes `<n>.json` with its subject, recipients and text body.
const MAILDIR_HANDLER: &str = r#"
import email, email.policy, json, os

class Handler:
    def __init__(self, out):
        self.out, self.n = out, 0

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.n += 1
        path = os.path.join(self.out, "%04d.json" % self.n)
        with open(path + ".tmp", "w") as f:
            json.dump({"subject": msg["subject"], "from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "body": msg.get_body(("plain",)).get_content(), "tls": session.ssl is not None,
                       "auth": bool(getattr(session, "authenticated", False))}, f)
        os.rename(path + ".tmp", path)
        return "250 OK"
"#;

/// An SMTP server that requires STARTTLS and AUTH (PLAIN/LOGIN) as `user`/`password`.
const STARTTLS_SERVER: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from acs_maildir import Handler

port, out, cert, key, user, password = sys.argv[1:7]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok)

c = Controller(Handler(out), hostname="127.0.0.1", port=int(port), tls_context=ctx, require_starttls=True,
               authenticator=check, auth_require_tls=True)
c.start()
while True:
    time.sleep(3600)
"#;

struct Smtp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's python3 has the aiosmtpd package (scripts/install-deps.sh); a pyenv one may not.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn smtp_server(tmp: &TempDir) -> Smtp {
    let dir = tmp.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tmp.path().join("acs_maildir.py"), MAILDIR_HANDLER).unwrap();
    let port = free_port();
    let child = Command::new(python())
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "acs_maildir.Handler",
        ])
        .arg(&dir)
        .env("PYTHONPATH", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd: run scripts/install-deps.sh (python3-aiosmtpd)");
    let smtp = Smtp { child, port, dir };
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(15))
        .expect("aiosmtpd did not start");
    smtp
}

/// The STARTTLS + AUTH server, with the certificate `acsctl auth init --tls` makes for
/// 127.0.0.1 (its CA in `ca`).
fn starttls_server(tmp: &TempDir, cert: &Path, key: &Path, user: &str, password: &str) -> Smtp {
    let dir = tmp.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tmp.path().join("acs_maildir.py"), MAILDIR_HANDLER).unwrap();
    std::fs::write(tmp.path().join("starttls_server.py"), STARTTLS_SERVER).unwrap();
    let port = free_port();
    let child = Command::new(python())
        .arg(tmp.path().join("starttls_server.py"))
        .arg(port.to_string())
        .arg(&dir)
        .args([cert, key])
        .args([user, password])
        .env("PYTHONPATH", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with aiosmtpd: run scripts/install-deps.sh (python3-aiosmtpd)");
    let smtp = Smtp { child, port, dir };
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(15))
        .expect("aiosmtpd did not start");
    smtp
}

fn mails(smtp: &Smtp) -> Vec<serde_json::Value> {
    let mut names: Vec<_> = std::fs::read_dir(&smtp.dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

// ---- metrics and the monitor ---------------------------------------------------------------

fn sample(worker: &str, seq: u64, cpu: f64) -> WorkerMetrics {
    let mut m = worker_metrics(worker, seq, unix_ms(), cpu);
    m.host.mem_used_bytes = 1000;
    m
}

/// Publishes real WorkerMetrics for each worker every 500 ms, its CPU read from the knob.
fn publish_metrics(
    client: async_nats::Client,
    workers: Vec<(&'static str, Arc<AtomicU64>)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for seq in 1.. {
            for (w, cpu) in &workers {
                let m = sample(w, seq, f64::from_bits(cpu.load(Ordering::Relaxed)));
                let subject = Subjects::default().worker_metrics(&w.parse().unwrap());
                let _ = client.publish(subject, encode(&m).into()).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn knob(v: f64) -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(v.to_bits()))
}

fn set(k: &AtomicU64, v: f64) {
    k.store(v.to_bits(), Ordering::Relaxed);
}

struct Monitor {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Monitor {
    fn start(
        nats: &str,
        rules_text: &str,
        dir: &Path,
        http: Option<(SocketAddr, String)>,
    ) -> Monitor {
        let (tx, rx) = oneshot::channel::<()>();
        let mut config = acs_monitor::Config::new(acs_node::NatsOptions::new(nats));
        let mut alarms = AlarmConfig::new(rules::parse(rules_text, dir).unwrap());
        alarms.retry.first = Duration::from_millis(200);
        config.alarms = Some(alarms);
        config.http = http.map(|(a, t)| (a, acs_monitor::http::HttpAuth::Bearer(t)));
        let task = tokio::spawn(acs_monitor::run(config, async move {
            let _ = rx.await;
        }));
        Monitor {
            stop: Some(tx),
            task,
        }
    }

    /// Stops cleanly (the lease is released) and waits for it.
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("monitor stops")
            .unwrap()
            .unwrap();
    }
}

async fn ask_alarms(client: &async_nats::Client, body: &str) -> Result<AlarmReply, String> {
    let msg = client
        .request(
            Subjects::default().monitor_alarms(),
            body.to_string().into(),
        )
        .await
        .map_err(|e| e.to_string())?;
    decode::<AlarmReply>(&msg.payload).map_err(|e| e.to_string())
}

/// Collects every alarm event into a shared list.
async fn collect_events(client: &async_nats::Client) -> Arc<Mutex<Vec<AlarmEvent>>> {
    let mut sub = client
        .subscribe(Subjects::default().alarm_events_all())
        .await
        .unwrap();
    let events: Arc<Mutex<Vec<AlarmEvent>>> = Arc::default();
    let e = events.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let ev = decode::<AlarmEvent>(&m.payload).expect("alarm events decode");
            assert_eq!(m.subject.as_str(), format!("acs.events.alarm.{}", ev.rule));
            e.lock().unwrap().push(ev);
        }
    });
    client.flush().await.unwrap();
    events
}

fn states(events: &Mutex<Vec<AlarmEvent>>, id: &str) -> Vec<AlarmState> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.id == id)
        .map(|e| e.state)
        .collect()
}

async fn until(what: &str, secs: u64, mut cond: impl FnMut() -> Result<(), String>) {
    eventually(
        Duration::from_secs(secs),
        Duration::from_millis(100),
        || {
            let r = cond();
            async move { r }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

// ---- the tests -----------------------------------------------------------------------------

fn channels(receiver: SocketAddr, smtp_port: u16) -> String {
    format!(
        r#"
[channels.hook]
type = "webhook"
url = "http://{receiver}/hook"

[channels.chat]
type = "slack"
url = "http://{receiver}/slack"

[channels.pager]
type = "webhook"
url = "http://{receiver}/page"

[channels.mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "acs alarms <acs@example.com>"
to = ["oncall@example.com"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_fires_is_told_once_everywhere_survives_a_restart_and_resolves() {
    let nats = NatsServer::start();
    let tmp = TempDir::new("alarms-once");
    let smtp = smtp_server(&tmp);
    let (receiver, hits) = http_receiver().await;
    let rules_text = format!(
        "{}\n{}",
        channels(receiver, smtp.port),
        r#"
[[rule]]
name = "cpu_high"
metric = "cpu"
scope = "worker"
id = "w1"
condition = "above"
warning = 50.0
critical = 90.0
for = "2s"
clear = 5.0
window = "2s"
aggregate = "avg"
notify = ["hook", "chat", "mail"]
"#
    );
    let client = async_nats::connect(nats.url()).await.unwrap();
    let events = collect_events(&client).await;
    let monitor = Monitor::start(&nats.url(), &rules_text, tmp.path(), None);
    let cpu = knob(95.5);
    let publisher = publish_metrics(client.clone(), vec![("w1", cpu.clone())]);

    // pending, then firing after `for`, each published once.
    until("pending then firing", 30, || {
        match states(&events, "w1").as_slice() {
            [AlarmState::Pending, AlarmState::Firing] => Ok(()),
            s => Err(format!("events so far: {s:?}")),
        }
    })
    .await;
    let fired = events.lock().unwrap()[1].clone();
    assert_eq!(
        (fired.severity, fired.threshold, fired.metric.as_str()),
        (Severity::Critical, 90.0, "cpu")
    );
    assert!(
        fired.value > 90.0 && fired.message.contains("cpu of worker w1 is 95.5"),
        "{fired:?}"
    );
    assert!(
        fired.since_ms >= events.lock().unwrap()[0].since_ms + 2000,
        "fired before `for`: {:?}",
        events.lock().unwrap()
    );

    // Every channel hears the firing exactly once.
    until("every channel told", 20, || {
        let (h, s, m) = (
            hits_on(&hits, "/hook").len(),
            hits_on(&hits, "/slack").len(),
            mails(&smtp).len(),
        );
        if (h, s, m) == (1, 1, 1) {
            Ok(())
        } else {
            Err(format!("hook {h}, slack {s}, mail {m}"))
        }
    })
    .await;
    let hook = &hits_on(&hits, "/hook")[0];
    assert_eq!(
        (
            hook["notice"].as_str(),
            hook["rule"].as_str(),
            hook["state"].as_str()
        ),
        (Some("firing"), Some("cpu_high"), Some("firing"))
    );
    assert_eq!(
        (
            hook["id"].as_str(),
            hook["severity"].as_str(),
            hook["value"].as_f64()
        ),
        (Some("w1"), Some("critical"), Some(95.5))
    );
    let slack = hits_on(&hits, "/slack")[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        slack.contains("FIRING critical")
            && slack.contains("cpu_high")
            && slack.contains("is 95.5"),
        "{slack}"
    );
    let mail = &mails(&smtp)[0];
    let subject = mail["subject"].as_str().unwrap();
    assert_eq!(
        subject,
        "[acs] FIRING critical cpu_high: worker w1 cpu = 95.5"
    );
    let body = mail["body"].as_str().unwrap();
    assert!(
        body.contains("cpu of worker w1 is 95.5") && body.contains("rule:      cpu_high"),
        "{body}"
    );
    assert_eq!(mail["to"], serde_json::json!(["oncall@example.com"]));

    // A restart while firing: the new monitor loads the saved alarm and tells nobody again.
    monitor.stop().await;
    let monitor = Monitor::start(&nats.url(), &rules_text, tmp.path(), None);
    let reply = eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let r = ask_alarms(&client, r#"{"action":"list"}"#).await?;
            if r.ok {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await
    .expect("the restarted monitor answers alarm requests");
    assert_eq!(reply.alarms.len(), 1);
    let a = &reply.alarms[0];
    assert_eq!(
        (a.rule.as_str(), a.id.as_str(), a.state, a.notified),
        ("cpu_high", "w1", AlarmState::Firing, 3)
    );
    // Several ticks of the new monitor with the condition still true.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        states(&events, "w1"),
        vec![AlarmState::Pending, AlarmState::Firing],
        "no new events after the restart"
    );
    assert_eq!(
        (
            hits_on(&hits, "/hook").len(),
            hits_on(&hits, "/slack").len(),
            mails(&smtp).len()
        ),
        (1, 1, 1),
        "no duplicates"
    );

    // Back below 90 - 5 yet above the warning: severity drops, one notice each.
    set(&cpu, 60.0);
    until("severity change", 20, || {
        let n = (
            hits_on(&hits, "/hook").len(),
            hits_on(&hits, "/slack").len(),
            mails(&smtp).len(),
        );
        if n == (2, 2, 2) {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    })
    .await;
    assert_eq!(
        hits_on(&hits, "/hook")[1]["severity"].as_str(),
        Some("warning")
    );

    // Below 50 - 5: resolved, published and told once.
    set(&cpu, 10.0);
    until("resolved", 20, || match states(&events, "w1").last() {
        Some(AlarmState::Resolved) => Ok(()),
        s => Err(format!("last state {s:?}")),
    })
    .await;
    until("resolve told", 20, || {
        let n = (
            hits_on(&hits, "/hook").len(),
            hits_on(&hits, "/slack").len(),
            mails(&smtp).len(),
        );
        if n == (3, 3, 3) {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    })
    .await;
    assert_eq!(
        states(&events, "w1"),
        vec![
            AlarmState::Pending,
            AlarmState::Firing,
            AlarmState::Firing,
            AlarmState::Resolved
        ]
    );
    assert_eq!(
        hits_on(&hits, "/hook")[2]["notice"].as_str(),
        Some("resolved")
    );
    let resolved = mails(&smtp)[2].clone();
    assert!(
        resolved["subject"]
            .as_str()
            .unwrap()
            .starts_with("[acs] RESOLVED cpu_high: worker w1 cpu = "),
        "{resolved}"
    );
    assert!(
        resolved["body"].as_str().unwrap().contains("resolved"),
        "{resolved}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        (hits_on(&hits, "/hook").len(), mails(&smtp).len()),
        (3, 3),
        "nothing after the resolve"
    );
    assert!(hits_on(&hits, "/page").is_empty());

    publisher.abort();
    monitor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_monitors_one_notifies_and_the_other_takes_over_without_repeating() {
    let nats = NatsServer::start();
    let tmp = TempDir::new("alarms-two");
    let (receiver, hits) = http_receiver().await;
    let rules_text = format!(
        r#"
[channels.hook]
type = "webhook"
url = "http://{receiver}/hook"

[[rule]]
name = "cpu_high"
metric = "cpu"
scope = "worker"
id = "w1"
condition = "above"
warning = 50.0
window = "1s"
aggregate = "last"
notify = ["hook"]
"#
    );
    let client = async_nats::connect(nats.url()).await.unwrap();
    let events = collect_events(&client).await;
    // `a` first: once it answers alarm requests it holds the lease (only the holder listens).
    let a = Monitor::start(&nats.url(), &rules_text, tmp.path(), None);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            ask_alarms(&client, r#"{"action":"list"}"#)
                .await
                .map(|_| ())
        },
    )
    .await
    .expect("the first monitor takes the lease");
    let b = Monitor::start(&nats.url(), &rules_text, tmp.path(), None);
    let cpu = knob(75.0);
    let publisher = publish_metrics(client.clone(), vec![("w1", cpu.clone())]);
    until("told once", 30, || {
        if hits_on(&hits, "/hook").len() == 1 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hits_on(&hits, "/hook").len(), 1, "both monitors notified");
    assert_eq!(
        states(&events, "w1"),
        vec![AlarmState::Pending, AlarmState::Firing],
        "both monitors published"
    );

    // Stop the holder: the standby takes the released lease at once and owes nothing.
    a.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hits_on(&hits, "/hook").len(),
        1,
        "a duplicate after the takeover"
    );
    set(&cpu, 10.0);
    until("resolve told once", 20, || {
        if hits_on(&hits, "/hook").len() == 2 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    assert_eq!(
        hits_on(&hits, "/hook")[1]["notice"].as_str(),
        Some("resolved")
    );
    assert_eq!(
        states(&events, "w1"),
        vec![
            AlarmState::Pending,
            AlarmState::Firing,
            AlarmState::Resolved
        ]
    );
    publisher.abort();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_with_auth_to_a_server_of_a_private_ca() {
    let nats = NatsServer::start();
    let tmp = TempDir::new("alarms-starttls");
    let auth = acs_auth::AuthDir::new(tmp.path().join("auth"), Subjects::default());
    auth.init(&acs_auth::InitOptions {
        tls: true,
        ..Default::default()
    })
    .unwrap();
    let tls = auth.tls();
    let smtp = starttls_server(
        &tmp,
        &tls.server_cert(),
        &tls.server_key(),
        "acs",
        "s3cret-pass",
    );
    std::fs::write(tmp.path().join("smtp-password"), "s3cret-pass\n").unwrap();
    let rules_text = format!(
        r#"
[channels.mail]
type = "email"
host = "127.0.0.1"
port = {}
tls = "starttls"
username = "acs"
password_file = "smtp-password"
ca_file = {:?}
from = "acs@example.com"
to = ["oncall@example.com", "second@example.com"]

[[rule]]
name = "cpu_high"
metric = "cpu"
scope = "worker"
id = "w1"
condition = "above"
warning = 50.0
window = "1s"
aggregate = "last"
notify = ["mail"]
"#,
        smtp.port,
        tls.ca()
    );
    let client = async_nats::connect(nats.url()).await.unwrap();
    let monitor = Monitor::start(&nats.url(), &rules_text, tmp.path(), None);
    let publisher = publish_metrics(client.clone(), vec![("w1", knob(77.0))]);
    until("mail over STARTTLS", 30, || {
        if mails(&smtp).len() == 1 {
            Ok(())
        } else {
            Err("no mail yet".into())
        }
    })
    .await;
    let mail = &mails(&smtp)[0];
    assert_eq!(
        (mail["tls"].as_bool(), mail["auth"].as_bool()),
        (Some(true), Some(true)),
        "{mail}"
    );
    assert_eq!(
        mail["subject"].as_str(),
        Some("[acs] FIRING warning cpu_high: worker w1 cpu = 77")
    );
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .contains("cpu of worker w1 is 77"),
        "{mail}"
    );
    assert_eq!(
        mail["to"],
        serde_json::json!(["oncall@example.com", "second@example.com"])
    );
    publisher.abort();
    monitor.stop().await;
}

/// A tiny HTTP/1.1 client call: (status, JSON body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn for_id(v: &[serde_json::Value], id: &str) -> Vec<serde_json::Value> {
    v.iter()
        .filter(|b| b["id"].as_str() == Some(id))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_stops_repeats_and_an_unacked_alarm_escalates_to_the_second_channel() {
    let nats = NatsServer::start();
    let tmp = TempDir::new("alarms-ack");
    let smtp = smtp_server(&tmp);
    let (receiver, hits) = http_receiver().await;
    let rules_text = format!(
        "{}\n{}",
        channels(receiver, smtp.port),
        r#"
[[rule]]
name = "cpu_hot"
metric = "cpu"
scope = "worker"
id = "*"
condition = "above"
warning = 50.0
window = "1s"
aggregate = "last"
repeat = "2s"
notify = ["hook"]
escalation = { after = "6s", to = "pager" }
"#
    );
    let token = "an-alarm-test-token-0123456789";
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let client = async_nats::connect(nats.url()).await.unwrap();
    let events = collect_events(&client).await;
    let monitor = Monitor::start(
        &nats.url(),
        &rules_text,
        tmp.path(),
        Some((http, token.to_string())),
    );
    let publisher = publish_metrics(client.clone(), vec![("w1", knob(80.0)), ("w2", knob(80.0))]);

    until("both firing", 30, || {
        let (a, b) = (states(&events, "w1"), states(&events, "w2"));
        if a.contains(&AlarmState::Firing) && b.contains(&AlarmState::Firing) {
            Ok(())
        } else {
            Err(format!("w1 {a:?}, w2 {b:?}"))
        }
    })
    .await;

    // Bad input over HTTP gets a 4xx that names the problem.
    wait_for_port(http, Duration::from_secs(10)).unwrap();
    let (status, _) = call(http, "GET", "/api/v1/alarms", None, "").await;
    assert_eq!(status, 401);
    let (status, body) = call(
        http,
        "POST",
        "/api/v1/alarms/cpu_hot/ack",
        Some(token),
        r#"{"id":"w1"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"by\""), "{body}");
    let (status, body) = call(
        http,
        "POST",
        "/api/v1/alarms/mem_hot/ack",
        Some(token),
        r#"{"by":"ana"}"#,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no alarm rule \"mem_hot\""),
        "{body}"
    );
    let (status, body) = call(
        http,
        "POST",
        "/api/v1/alarms/cpu_hot/ack",
        Some(token),
        r#"{"by":"ana","for_ms":0}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Ack w1 over HTTP.
    let (status, body) = call(
        http,
        "POST",
        "/api/v1/alarms/cpu_hot/ack",
        Some(token),
        r#"{"id":"w1","by":"ana","comment":"on it"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alarms"][0]["ack"]["by"].as_str(), Some("ana"));
    let acked_at = for_id(&hits_on(&hits, "/hook"), "w1").len();
    assert!(acked_at >= 1, "w1's firing was told before the ack");

    // w2, not acked, repeats and then escalates to the pager after 6 s of firing.
    until("w2 escalated", 30, || {
        let p = hits_on(&hits, "/page");
        if for_id(&p, "w2").is_empty() {
            Err(format!("pager: {p:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    // The pager refused the first try; the retry delivered it.
    let refused = hits_on(&hits, "/page-refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["notice"].as_str(), Some("escalation"));
    let esc = for_id(&hits_on(&hits, "/page"), "w2")[0].clone();
    assert_eq!(esc["notice"].as_str(), Some("escalation"));
    assert!(
        esc["ts_ms"].as_u64().unwrap() - esc["since_ms"].as_u64().unwrap() >= 6000,
        "escalated too early: {esc}"
    );
    let w2_hook = for_id(&hits_on(&hits, "/hook"), "w2");
    assert!(
        w2_hook.iter().filter(|b| b["notice"] == "repeat").count() >= 2,
        "w2 repeats every 2 s: {w2_hook:?}"
    );
    assert_eq!(
        w2_hook.iter().filter(|b| b["notice"] == "firing").count(),
        1,
        "{w2_hook:?}"
    );

    // w1 heard nothing more since the ack, and never reached the pager.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        for_id(&hits_on(&hits, "/hook"), "w1").len(),
        acked_at,
        "repeats after the ack"
    );
    assert!(
        for_id(&hits_on(&hits, "/page"), "w1").is_empty(),
        "an acked alarm escalated"
    );
    let page = for_id(&hits_on(&hits, "/page"), "w2");
    assert_eq!(
        page.iter().filter(|b| b["notice"] == "escalation").count(),
        1,
        "one escalation: {page:?}"
    );
    // After the escalation the pager hears w2's repeats too.
    until("pager hears repeats", 10, || {
        let n = for_id(&hits_on(&hits, "/page"), "w2")
            .iter()
            .filter(|b| b["notice"] == "repeat")
            .count();
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;

    // The list shows both, w1 acked by ana.
    let (status, body) = call(http, "GET", "/api/v1/alarms?rule=cpu_hot", Some(token), "").await;
    assert_eq!(status, 200, "{body}");
    let list = body["alarms"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert_eq!(list[0]["ack"]["by"].as_str(), Some("ana"));
    assert!(
        list[1]["ack"].is_null() && list[1]["notified"].as_u64().unwrap() >= 4,
        "{body}"
    );
    assert!(mails(&smtp).is_empty());

    publisher.abort();
    monitor.stop().await;
}

// ---- with auth on --------------------------------------------------------------------------

mod with_auth {
    use super::*;
    use acs_auth::{AuthDir, InitOptions, Role};
    use acs_events::WorkerId;
    use acs_testkit::ServerAuth;

    /// nats-server with JetStream and the `auth.conf` that `acsctl auth init` writes.
    fn start_server(tmp: &TempDir) -> (NatsServer, String) {
        let server = NatsServer::with_auth(ServerAuth::dir(tmp.path().join("auth")));
        let url = server.url();
        (server, url)
    }

    async fn connect(dir: &AuthDir, role: &Role, url: &str) -> async_nats::Client {
        let o = dir.nats_options(role, url);
        o.connect_options()
            .await
            .unwrap()
            .connect(&o.servers)
            .await
            .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"))
    }

    /// The monitor role's permissions cover the alarm bucket, the events and the requests; the
    /// operator may list and ack; the viewer may not ask `acs.monitor.alarms`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_monitor_role_runs_alarms_and_the_operator_acks() {
        let tmp = TempDir::new("alarms-auth");
        let dir = AuthDir::new(tmp.path().join("auth"), Subjects::default());
        let w1 = WorkerId::new("w1").unwrap();
        dir.init(&InitOptions {
            workers: vec![w1.clone()],
            ..Default::default()
        })
        .unwrap();
        let (_server, url) = start_server(&tmp);
        let (receiver, hits) = http_receiver().await;
        let rules_text = format!(
            r#"
[channels.hook]
type = "webhook"
url = "http://{receiver}/hook"

[[rule]]
name = "cpu_high"
metric = "cpu"
scope = "worker"
id = "*"
condition = "above"
warning = 50.0
window = "1s"
aggregate = "last"
notify = ["hook"]
"#
        );
        let (stop, rx) = oneshot::channel::<()>();
        let mut config = acs_monitor::Config::new(dir.nats_options(&Role::Monitor, &url));
        config.alarms = Some(AlarmConfig::new(
            rules::parse(&rules_text, tmp.path()).unwrap(),
        ));
        let task = tokio::spawn(acs_monitor::run(config, async move {
            let _ = rx.await;
        }));
        let operator = connect(&dir, &Role::Operator, &url).await;
        let events = collect_events(&operator).await;
        let worker = connect(&dir, &Role::Worker(w1.clone()), &url).await;
        let publisher = publish_metrics(worker, vec![("w1", knob(75.0))]);

        until("firing seen by the operator", 30, || {
            match states(&events, "w1").as_slice() {
                [AlarmState::Pending, AlarmState::Firing] => Ok(()),
                s => Err(format!("{s:?}")),
            }
        })
        .await;
        until("webhook told", 20, || {
            if hits_on(&hits, "/hook").len() == 1 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await;
        let reply = ask_alarms(
            &operator,
            r#"{"action":"ack","rule":"cpu_high","id":"w1","by":"operator"}"#,
        )
        .await
        .unwrap();
        assert!(reply.ok, "{reply:?}");
        assert_eq!(
            reply.alarms[0].ack.as_ref().map(|a| a.by.as_str()),
            Some("operator")
        );
        let reply = ask_alarms(&operator, r#"{"action":"list"}"#).await.unwrap();
        assert_eq!(reply.alarms.len(), 1);

        // The viewer's request is refused by the server (no responder can hear it).
        let viewer = connect(&dir, &Role::Viewer, &url).await;
        let refused = tokio::time::timeout(
            Duration::from_secs(5),
            viewer.request(
                Subjects::default().monitor_alarms(),
                r#"{"action":"list"}"#.into(),
            ),
        )
        .await;
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "the viewer got an alarm answer"
        );

        publisher.abort();
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

/// `--check` checks the rules file and exits: no token, no NATS, no listener.
#[test]
fn check_checks_the_rules_without_a_token_or_a_server() {
    let tmp = TempDir::new("alarms-check");
    let run = |rules: &str| {
        let path = tmp.path().join("alarms.toml");
        std::fs::write(&path, rules).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_acs-monitor"))
            .arg("--alarms")
            .arg(&path)
            .arg("--check")
            .env_remove("ACS_MONITOR_TOKEN_FILE")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .output()
            .unwrap()
    };
    let good = format!(
        "{}\n[[rule]]\nname = \"cpu_hot\"\nmetric = \"cpu\"\nscope = \"worker\"\nid = \"*\"\ncondition = \"above\"\nwarning = 50.0\nnotify = [\"hook\"]\n",
        channels(SocketAddr::from(([127, 0, 0, 1], 9)), 25)
    );
    let out = run(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok: 1 alarm rules, 4 channels"), "{stdout}");
    let out = run(&good.replace("notify = [\"hook\"]", "notify = [\"nope\"]"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel \"nope\""));

    // A webhook may trust its own CA (PEM, relative to the rules file), for https only.
    let ca = rcgen::generate_simple_self_signed(vec!["hooks.example".into()]).unwrap();
    std::fs::write(tmp.path().join("hook-ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(tmp.path().join("junk.pem"), "not a certificate").unwrap();
    let hook = "url = \"https://hooks.example/hook\"\nca_file = \"hook-ca.pem\"";
    let with_ca = good.replacen("url = \"http://127.0.0.1:9/hook\"", hook, 1);
    assert!(with_ca.contains("ca_file"), "{with_ca}");
    let out = run(&with_ca);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (bad, names) in [
        (
            with_ca.replace("https://hooks", "http://hooks"),
            "only for https",
        ),
        (with_ca.replace("hook-ca.pem", "junk.pem"), "no certificate"),
        (with_ca.replace("hook-ca.pem", "missing.pem"), "missing.pem"),
    ] {
        let out = run(&bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("ca_file"),
            "{stderr}"
        );
        assert!(stderr.contains(names), "{stderr}");
    }
}
