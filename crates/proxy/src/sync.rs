//! Live updates from NATS: subscribe to `Subjects::backends_all()`, fold every update into the
//! [`RouteTable`] the moment it arrives and swap in a new [`Snapshot`]; ask for a snapshot on
//! `Subjects::backends_sync()` at start (retrying with backoff until answered), after a version
//! gap and after every NATS (re)connect. Also publishes the traffic metrics every interval.
//!
//! - [`Updater`]: the synchronous part (decode, check, apply, buffer out-of-order deltas, rebuild
//!   the snapshot); unit-tested without NATS.
//! - [`run`]: the async loop around it; runs on a Pingora background service in the binary, or
//!   on any tokio runtime in tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acs_events::{
    decode, encode, BackendChange, BackendUpdate, DecodeError, ProxyId, Rejection, ServiceName,
    Subjects, SyncReply, SyncRequest,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::metrics;
use crate::routes::{Outcome, RouteTable};
use crate::service::Shared;
use crate::snapshot::Snapshot;

/// Out-of-order deltas kept per service while a sync is under way.
const MAX_PENDING: usize = 64;

/// A refused message, as published in a `Rejection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: &'static str,
    pub error: String,
}

impl From<DecodeError> for Refused {
    fn from(e: DecodeError) -> Self {
        Self {
            kind: e.kind(),
            error: e.to_string(),
        }
    }
}

/// Folds updates into the table and publishes snapshots into [`Shared`].
pub struct Updater {
    table: RouteTable,
    /// Deltas that arrived ahead of their turn (a gap), applied once the gap is filled.
    pending: BTreeMap<ServiceName, BTreeMap<u64, BackendUpdate>>,
    shared: Arc<Shared>,
}

impl Updater {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            table: RouteTable::new(),
            pending: BTreeMap::new(),
            shared,
        }
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// A message on `<prefix>.backends.<service>`. `Ok(Gap)` means: request a sync.
    pub fn on_update(&mut self, subject: &str, payload: &[u8]) -> Result<Outcome, Refused> {
        let u: BackendUpdate = decode(payload)?;
        if let Some(token) = subject.rsplit('.').next() {
            if token != u.service.as_str() {
                return Err(Refused {
                    kind: "invalid",
                    error: format!(
                        "update for service {:?} published on {subject:?}; expected the subject to end in .{}",
                        u.service.as_str(),
                        u.service
                    ),
                });
            }
        }
        Ok(self.apply(u))
    }

    /// A reply from `<prefix>.sync.backends`; returns how many updates applied.
    pub fn on_sync_reply(&mut self, payload: &[u8]) -> Result<usize, Refused> {
        let reply: SyncReply = decode(payload)?;
        let mut applied = 0;
        for u in reply.updates {
            if self.apply_one(u) == Outcome::Applied {
                applied += 1;
            }
        }
        if applied > 0 {
            self.publish();
        }
        Ok(applied)
    }

    /// Applies one update (plus any buffered deltas it unblocks) and swaps in a new snapshot.
    pub fn apply(&mut self, u: BackendUpdate) -> Outcome {
        let outcome = self.apply_one(u);
        if outcome == Outcome::Applied {
            self.publish();
        }
        outcome
    }

    fn apply_one(&mut self, u: BackendUpdate) -> Outcome {
        let service = u.service.clone();
        let version = u.version;
        let kind = change_kind(&u.change);
        let outcome = self.table.apply(&u);
        match outcome {
            Outcome::Applied => {
                let n = self
                    .table
                    .get(service.as_str())
                    .map_or(0, |s| s.backends.len());
                info!(service = %service, version, change = kind, backends = n, "backends updated");
                self.drain_pending(&service);
            }
            Outcome::Stale => {
                debug!(service = %service, version, change = kind, "stale backend update ignored");
            }
            Outcome::Gap => {
                let current = self.table.version(service.as_str());
                info!(service = %service, version, current, change = kind,
                    "gap in backend versions; asking for a sync");
                let q = self.pending.entry(service).or_default();
                q.insert(version, u);
                while q.len() > MAX_PENDING {
                    q.pop_first();
                }
            }
        }
        outcome
    }

    /// Applies buffered deltas that now follow the current version.
    fn drain_pending(&mut self, service: &ServiceName) {
        let Some(q) = self.pending.get_mut(service) else {
            return;
        };
        let mut current = self.table.version(service.as_str()).unwrap_or(0);
        loop {
            while q.first_key_value().is_some_and(|(v, _)| *v <= current) {
                q.pop_first();
            }
            match q.first_key_value() {
                Some((v, _)) if *v == current + 1 => {
                    let (_, u) = q.pop_first().expect("non-empty");
                    if self.table.apply(&u) != Outcome::Applied {
                        break;
                    }
                    info!(service = %service, version = u.version, change = change_kind(&u.change),
                        "buffered backend update applied");
                    current = u.version;
                }
                _ => break,
            }
        }
        if q.is_empty() {
            self.pending.remove(service);
        }
    }

    fn publish(&self) {
        let prev = self.shared.snapshot.load();
        let next = Snapshot::build(&self.table, &prev, &self.shared.tuning.timeouts);
        self.shared.snapshot.store(Arc::new(next));
    }
}

fn change_kind(c: &BackendChange) -> &'static str {
    match c {
        BackendChange::Reset { .. } => "reset",
        BackendChange::Add { .. } => "add",
        BackendChange::Drain { .. } => "drain",
        BackendChange::Remove { .. } => "remove",
    }
}

/// What [`run`] needs to know.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    pub subjects: Subjects,
    pub id: ProxyId,
    pub metrics_interval: Duration,
}

/// Backoff of sync requests: 200 ms doubling to 5 s.
const SYNC_BACKOFF_START: Duration = Duration::from_millis(200);
const SYNC_BACKOFF_MAX: Duration = Duration::from_secs(5);
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until `shutdown` resolves. Never returns an error: NATS outages are waited out
/// (async-nats reconnects by itself) and bad messages are refused one by one.
pub async fn run(settings: NatsSettings, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let client = {
        let mut delay = SYNC_BACKOFF_START;
        loop {
            let tx = ev_tx.clone();
            let connect = async_nats::ConnectOptions::new()
                .name(format!("acs-proxy-{}", settings.id))
                .retry_on_initial_connect()
                .max_reconnects(None)
                .event_callback(move |ev| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(ev);
                    }
                })
                .connect(settings.url.as_str());
            tokio::select! {
                _ = &mut shutdown => return,
                res = connect => match res {
                    Ok(c) => break c,
                    Err(e) => {
                        warn!(url = %settings.url, error = %e, "cannot set up the NATS client; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(SYNC_BACKOFF_MAX);
                    }
                }
            }
        }
    };
    let subjects = settings.subjects.clone();
    let mut tasks = tokio::task::JoinSet::new();

    // Traffic metrics, every interval.
    tasks.spawn(metrics_loop(
        client.clone(),
        settings.clone(),
        shared.clone(),
    ));

    // Sync requests: triggered through a 1-slot channel so that bursts coalesce.
    let (sync_tx, sync_rx) = mpsc::channel::<()>(1);
    let (reply_tx, mut reply_rx) = mpsc::channel::<Bytes>(4);
    tasks.spawn(sync_loop(
        client.clone(),
        subjects.backends_sync(),
        sync_rx,
        reply_tx,
    ));
    let want_sync = || {
        let _ = sync_tx.try_send(());
    };

    let mut updater = Updater::new(shared.clone());
    // Subscribe before the first sync request: both go out on the same connection, in order, so
    // no update published after the snapshot was taken can slip between the two.
    let mut sub = subscribe(&client, &subjects).await;
    info!(subject = %subjects.backends_all(), proxy = %settings.id, "listening for backend updates");
    want_sync();

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            msg = sub.next() => match msg {
                Some(m) => match updater.on_update(m.subject.as_str(), &m.payload) {
                    Ok(Outcome::Gap) => want_sync(),
                    Ok(_) => {}
                    Err(r) => reject(&client, &subjects, &shared, m.subject.as_str(), r).await,
                },
                None => {
                    warn!("backend subscription closed; subscribing again");
                    tokio::time::sleep(SYNC_BACKOFF_START).await;
                    sub = subscribe(&client, &subjects).await;
                    want_sync();
                }
            },
            Some(payload) = reply_rx.recv() => match updater.on_sync_reply(&payload) {
                Ok(n) => info!(applied = n, services = updater.table().len(), "sync reply applied"),
                Err(r) => {
                    let subject = subjects.backends_sync();
                    reject(&client, &subjects, &shared, &subject, r).await;
                }
            },
            Some(ev) = ev_rx.recv() => match ev {
                async_nats::Event::Connected => {
                    info!(url = %settings.url, "connected to NATS; asking for a backend sync");
                    want_sync();
                }
                async_nats::Event::Disconnected => warn!(url = %settings.url, "disconnected from NATS; serving the last known routes"),
                other => debug!(event = %other, "NATS event"),
            },
        }
    }
    tasks.shutdown().await;
    let _ = client.flush().await;
}

async fn subscribe(client: &async_nats::Client, subjects: &Subjects) -> async_nats::Subscriber {
    let mut delay = SYNC_BACKOFF_START;
    loop {
        match client.subscribe(subjects.backends_all()).await {
            Ok(s) => return s,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to backend updates; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(SYNC_BACKOFF_MAX);
            }
        }
    }
}

async fn reject(
    client: &async_nats::Client,
    subjects: &Subjects,
    shared: &Shared,
    subject: &str,
    r: Refused,
) {
    let total = shared.rejected.fetch_add(1, Relaxed) + 1;
    warn!(subject, kind = r.kind, error = %r.error, total, "refused a backend update");
    let rejection = Rejection {
        v: acs_events::SCHEMA_VERSION,
        component: "proxy".into(),
        subject: subject.into(),
        ts_ms: metrics::unix_ms(),
        kind: r.kind.into(),
        error: r.error,
        total,
    };
    if let Err(e) = client
        .publish(subjects.rejections("proxy"), encode(&rejection).into())
        .await
    {
        warn!(error = %e, "cannot publish a rejection");
    }
}

async fn sync_loop(
    client: async_nats::Client,
    subject: String,
    mut trigger: mpsc::Receiver<()>,
    replies: mpsc::Sender<Bytes>,
) {
    let payload: Bytes = encode(&SyncRequest::default()).into();
    while trigger.recv().await.is_some() {
        let mut delay = SYNC_BACKOFF_START;
        let mut attempt = 0u32;
        loop {
            // Triggers that arrive while we are asking are answered by this request.
            while trigger.try_recv().is_ok() {}
            attempt += 1;
            let req = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(SYNC_TIMEOUT));
            match client.send_request(subject.clone(), req).await {
                Ok(msg) => {
                    debug!(attempt, bytes = msg.payload.len(), "sync answered");
                    if replies.send(msg.payload).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        warn!(subject = %subject, attempt, error = %e, "backend sync not answered yet; retrying");
                    } else {
                        debug!(subject = %subject, attempt, error = %e, "backend sync not answered yet");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(SYNC_BACKOFF_MAX);
                }
            }
        }
    }
}

async fn metrics_loop(client: async_nats::Client, settings: NatsSettings, shared: Arc<Shared>) {
    let subject = settings.subjects.proxy_metrics(&settings.id);
    let mut tick = tokio::time::interval(settings.metrics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let m = metrics::collect_shared(&shared, &settings.id, now - last);
        last = now;
        if let Err(e) = client.publish(subject.clone(), encode(&m).into()).await {
            debug!(error = %e, "cannot publish traffic metrics");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tuning;
    use acs_events::{Backend, ReplicaId, Route, Selection, WorkerId};

    fn updater() -> Updater {
        Updater::new(Arc::new(Shared::new(Tuning::default())))
    }

    fn backend(id: &str) -> Backend {
        Backend {
            id: ReplicaId::new(id).unwrap(),
            addr: "127.0.0.1:9".into(),
            worker: WorkerId::new("w1").unwrap(),
            draining: false,
        }
    }

    fn upd(version: u64, change: BackendChange) -> BackendUpdate {
        BackendUpdate {
            v: 1,
            service: ServiceName::new("web").unwrap(),
            version,
            ts_ms: 0,
            selection: Selection::RoundRobin,
            change,
        }
    }

    fn reset(version: u64, ids: &[&str]) -> BackendUpdate {
        upd(
            version,
            BackendChange::Reset {
                route: Route::default(),
                backends: ids.iter().map(|i| backend(i)).collect(),
            },
        )
    }

    fn add(version: u64, id: &str) -> BackendUpdate {
        upd(
            version,
            BackendChange::Add {
                backends: vec![backend(id)],
            },
        )
    }

    fn live_ids(u: &Updater) -> Vec<String> {
        let snap = u.shared.snapshot.load();
        snap.service("web").map_or(vec![], |s| {
            s.backends.iter().map(|b| b.id().to_string()).collect()
        })
    }

    #[test]
    fn applied_updates_reach_the_live_snapshot() {
        let mut u = updater();
        assert_eq!(u.apply(reset(1, &["a"])), Outcome::Applied);
        assert_eq!(live_ids(&u), ["a"]);
        assert_eq!(u.apply(add(2, "b")), Outcome::Applied);
        assert_eq!(live_ids(&u), ["a", "b"]);
        assert_eq!(u.shared.snapshot.load().service("web").unwrap().version, 2);
    }

    #[test]
    fn buffered_deltas_apply_once_the_gap_is_filled() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        assert_eq!(u.apply(add(3, "c")), Outcome::Gap);
        assert_eq!(u.apply(add(4, "d")), Outcome::Gap);
        assert_eq!(live_ids(&u), ["a"]);
        // The missing delta arrives late: 2, then the buffered 3 and 4 follow.
        assert_eq!(u.apply(add(2, "b")), Outcome::Applied);
        assert_eq!(live_ids(&u), ["a", "b", "c", "d"]);
        assert_eq!(u.table().version("web"), Some(4));
        assert!(u.pending.is_empty());
    }

    #[test]
    fn a_sync_reset_drops_older_buffered_deltas() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        u.apply(add(3, "c"));
        u.apply(add(6, "f"));
        let reply = SyncReply {
            v: 1,
            updates: vec![reset(5, &["x"])],
        };
        assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 1);
        // 3 is older than the reset (dropped); 6 follows it (applied).
        assert_eq!(live_ids(&u), ["f", "x"]);
        assert_eq!(u.table().version("web"), Some(6));
    }

    #[test]
    fn deltas_before_any_reset_wait_for_the_sync() {
        let mut u = updater();
        assert_eq!(u.apply(add(8, "b")), Outcome::Gap);
        u.on_sync_reply(&encode(&SyncReply {
            v: 1,
            updates: vec![reset(7, &["a"])],
        }))
        .unwrap();
        assert_eq!(live_ids(&u), ["a", "b"]);
    }

    #[test]
    fn pending_is_bounded() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        for v in 10..(10 + MAX_PENDING as u64 * 2) {
            u.apply(add(v, "z"));
        }
        assert_eq!(u.pending["web"].len(), MAX_PENDING);
    }

    #[test]
    fn refuses_malformed_payloads() {
        let mut u = updater();
        let s = "acs.backends.web";
        assert_eq!(u.on_update(s, b"{nope").unwrap_err().kind, "bad_json");
        assert_eq!(u.on_update(s, b"").unwrap_err().kind, "empty");
        let wrong_type = br#"{"service":"web","version":"seven","change":"add","backends":[]}"#;
        assert_eq!(u.on_update(s, wrong_type).unwrap_err().kind, "bad_field");
        let bad_id = br#"{"service":"web","version":1,"change":"drain","ids":["a.b"]}"#;
        let r = u.on_update(s, bad_id).unwrap_err();
        assert_eq!(r.kind, "bad_field");
        assert!(r.error.contains("replica id"), "{}", r.error);
        let bad_addr = br#"{"service":"web","version":1,"change":"add","backends":[{"id":"a","addr":"nope","worker":"w1"}]}"#;
        assert_eq!(u.on_update(s, bad_addr).unwrap_err().kind, "invalid");
        let big = vec![b' '; acs_events::MAX_PAYLOAD + 1];
        assert_eq!(u.on_update(s, &big).unwrap_err().kind, "too_large");
        let other = encode(&reset(1, &["a"]));
        let r = u.on_update("acs.backends.api", &other).unwrap_err();
        assert_eq!(r.kind, "invalid");
        assert!(r.error.contains("web"), "{}", r.error);
        assert!(u.table().is_empty());
        assert_eq!(u.on_sync_reply(b"[1,2]").unwrap_err().kind, "bad_field");
        // A good one still goes through afterwards.
        assert_eq!(
            u.on_update(s, &encode(&reset(1, &["a"]))).unwrap(),
            Outcome::Applied
        );
    }
}
