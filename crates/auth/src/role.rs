//! Who may connect, and what each one may publish and subscribe to (pure).

use std::fmt;
use std::path::PathBuf;

use acs_events::{ProxyId, Subjects, WorkerId};

/// One identity of the cluster: a NATS user with its own nkey.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// vim-brain: decides, commands workers, publishes backends.
    Brain,
    /// A person (or script) steering the cluster: `acsctl status`, `scale`, `watch`.
    Operator,
    /// Read-only: `acsctl watch`, dashboards.
    Viewer,
    /// The alarm/history monitor: reads everything, raises alarms, keeps history in JetStream.
    Monitor,
    Worker(WorkerId),
    Proxy(ProxyId),
}

/// The component name `vmm-worker` puts in its rejection subject (`vmm_worker::COMPONENT`).
/// Shared by every worker: the subject does not name the worker.
pub const WORKER_COMPONENT: &str = "vmm-worker";

impl Role {
    /// The identities every cluster has, whatever its workers and proxies.
    pub const FIXED: [Role; 4] = [Role::Brain, Role::Operator, Role::Viewer, Role::Monitor];

    /// Path of this identity's files below the auth directory, without extension:
    /// `brain`, `workers/w1`, `proxies/p1`.
    pub fn file_stem(&self) -> PathBuf {
        match self {
            Role::Brain => "brain".into(),
            Role::Operator => "operator".into(),
            Role::Viewer => "viewer".into(),
            Role::Monitor => "monitor".into(),
            Role::Worker(id) => PathBuf::from("workers").join(id.as_str()),
            Role::Proxy(id) => PathBuf::from("proxies").join(id.as_str()),
        }
    }

    /// `brain`, `worker`, `proxy`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Brain => "brain",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Monitor => "monitor",
            Role::Worker(_) => "worker",
            Role::Proxy(_) => "proxy",
        }
    }

    /// The worker or proxy id, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Role::Worker(id) => Some(id.as_str()),
            Role::Proxy(id) => Some(id.as_str()),
            _ => None,
        }
    }

    /// The inbox prefix this identity's client must use (async-nats `custom_inbox_prefix`),
    /// or `None` for identities that never make requests (workers) and so get no inbox. The
    /// viewer has one: it queries `acs.monitor.stats`.
    ///
    /// Each requester gets its own prefix, and only it may subscribe below it: with the
    /// default `_INBOX`, anyone allowed `_INBOX.>` could read everyone's replies (status,
    /// worker acks, backend snapshots).
    pub fn inbox_prefix(&self) -> Option<String> {
        match self {
            Role::Brain | Role::Operator | Role::Viewer | Role::Monitor => {
                Some(format!("_INBOX_{}", self.kind()))
            }
            Role::Proxy(id) => Some(format!("_INBOX_proxy_{id}")),
            Role::Worker(_) => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{} {id}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// What the server lets one user do. An empty `publish` list means "nothing" (rendered as
/// `deny: [">"]`, since an empty allow list would allow everything).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// May answer requests it received (publish once on their reply subject, within 2 min).
    pub allow_responses: bool,
}

/// The monitor's JetStream API calls, and no more: find, create or update (a retention flag
/// changed) its own streams, the raw `ACS_METRICS` and the durable rollups `ACS_ROLLUPS`, and
/// read them with ordered consumers (created, polled, inspected for their pending count, and
/// deleted and re-created by async-nats after a gap). Replies come back on the monitor's own
/// inbox; rollups are published on `<prefix>.rollup.>` (see the monitor role).
fn monitor_jetstream() -> Vec<String> {
    // acs_monitor::service::STREAM, acs_monitor::durable::STREAM
    let mut v = vec!["$JS.API.INFO".to_string()];
    for stream in ["ACS_METRICS", "ACS_ROLLUPS"] {
        for api in [
            "STREAM.INFO",
            "STREAM.CREATE",
            "STREAM.UPDATE",
            "CONSUMER.CREATE",
        ] {
            v.push(format!("$JS.API.{api}.{stream}"));
        }
        for api in [
            "CONSUMER.CREATE",
            "CONSUMER.INFO",
            "CONSUMER.DELETE",
            "CONSUMER.MSG.NEXT",
        ] {
            v.push(format!("$JS.API.{api}.{stream}.>"));
        }
    }
    v
}

/// The monitor's event history: find or create the `ACS_EVENTS` stream and read it back with
/// one ordered consumer per query (created, inspected for its pending count, polled, deleted).
fn monitor_history_jetstream() -> Vec<String> {
    const STREAM: &str = "ACS_EVENTS"; // acs_monitor::history::STREAM
    let mut v = Vec::new();
    for api in [
        "STREAM.INFO",
        "STREAM.CREATE",
        "STREAM.UPDATE",
        "CONSUMER.CREATE",
    ] {
        v.push(format!("$JS.API.{api}.{STREAM}"));
    }
    for api in [
        "CONSUMER.CREATE",
        "CONSUMER.INFO",
        "CONSUMER.DELETE",
        "CONSUMER.MSG.NEXT",
    ] {
        v.push(format!("$JS.API.{api}.{STREAM}.>"));
    }
    v
}

/// The monitor's alarm state: its KV bucket `acs_monitor` (alarms, silences, the alarm lease),
/// created by hand as a stream, read by direct get, listed by an ordered push consumer whose
/// messages come to the monitor's inbox (flow control replies on `$JS.FC`), written on `$KV`.
fn monitor_kv() -> Vec<String> {
    const BUCKET: &str = "acs_monitor"; // acs_monitor::alarm::kv::BUCKET
    let stream = format!("KV_{BUCKET}");
    let mut v = Vec::new();
    for api in [
        "STREAM.INFO",
        "STREAM.CREATE",
        "STREAM.MSG.GET",
        "CONSUMER.CREATE",
    ] {
        v.push(format!("$JS.API.{api}.{stream}"));
    }
    for api in [
        "DIRECT.GET",
        "CONSUMER.CREATE",
        "CONSUMER.INFO",
        "CONSUMER.DELETE",
    ] {
        v.push(format!("$JS.API.{api}.{stream}.>"));
    }
    v.push(format!("$JS.FC.{stream}.>"));
    v.push(format!("$KV.{BUCKET}.>"));
    v
}

/// The permission table: least privilege, every subject from [`Subjects`].
pub fn permissions(role: &Role, s: &Subjects) -> Permissions {
    let inbox = role.inbox_prefix().map(|i| format!("{i}.>"));
    let (publish, mut subscribe, allow_responses) = match role {
        Role::Worker(id) => (
            vec![
                s.worker_metrics(id),
                s.replica_events(id),
                s.rejections(WORKER_COMPONENT),
            ],
            // Leader events: the fencing term (commands from older terms are refused).
            vec![s.worker_command(id), s.leader()],
            true, // acks to the brain's commands
        ),
        Role::Brain => (
            vec![
                s.worker_command_all(),
                s.backends_all(),
                s.decisions_all(),
                s.worker_events_all(),
                s.leader(), // leader events carry the fencing term to workers and proxies
                s.rejections("brain"),
                // JetStream and KV for the leader lease and the pins. KV
                // watches deliver to the brain's own inbox, below.
                "$JS.API.>".into(),
                "$KV.>".into(),
            ],
            vec![
                s.worker_metrics_all(),
                s.proxy_metrics_all(),
                s.backend_drained_all(), // drains end on these, not on the next metrics tick
                s.replica_events_all(),
                s.scale(),
                s.maintenance(),
                s.replica_command(),
                s.status(),
                s.backends_sync(),
            ],
            true, // status, scale and sync replies
        ),
        Role::Proxy(id) => (
            vec![
                s.proxy_metrics(id),
                s.backend_drained(id),
                s.backends_sync(),
                s.rejections("proxy"),
            ],
            vec![s.backends_all(), s.leader()], // leader events: the fencing term
            false,
        ),
        Role::Operator => (
            vec![
                s.scale(),
                s.status(),
                s.maintenance(),     // cordon, uncordon, drain
                s.replica_command(), // replace one replica
                s.monitor_stats(),
                s.monitor_alarms(), // list, ack, silence
                s.monitor_history(),
            ],
            vec![s.all()],
            false,
        ),
        Role::Viewer => (
            vec![s.monitor_stats(), s.monitor_history()],
            vec![s.all()],
            false,
        ),
        Role::Monitor => {
            // Closed rollup buckets go to ACS_ROLLUPS; no other role publishes there.
            let mut publish = vec![
                s.alarm_events_all(),
                s.rejections("monitor"),
                s.rollups_all(),
            ];
            publish.extend(monitor_jetstream());
            // Alarm state in KV; the HTTP alarm API forwards to the lease holder on monitor_alarms.
            publish.extend(monitor_kv());
            publish.extend(monitor_history_jetstream());
            publish.push(s.monitor_alarms());
            // The dashboard steers on behalf of its logged-in users: scale, maintenance and
            // replica replace, and the status it shows (replies to the monitor's own inbox).
            publish.extend([s.scale(), s.maintenance(), s.replica_command(), s.status()]);
            (publish, vec![s.all()], true) // stats replies
        }
    };
    subscribe.extend(inbox);
    Permissions {
        publish,
        subscribe,
        allow_responses,
    }
}
