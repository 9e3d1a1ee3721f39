//! [`run`]: the async loop around the [`Updater`]: connect, subscribe, ask for syncs, refuse bad
//! input with a `Rejection`, publish traffic metrics and drained backends.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acs_events::{encode, BackendDrained, ProxyId, Rejection, Subjects, SyncRequest};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Refused, Updater};
use crate::metrics;
use crate::pressure::{Pressure, PressureSettings};
use crate::routes::Outcome;
use crate::service::Shared;

/// What [`run`] needs to know.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// Servers, credentials and TLS (shared with every acs binary through `acs-node`).
    pub nats: acs_node::NatsOptions,
    pub subjects: Subjects,
    pub id: ProxyId,
    pub metrics_interval: Duration,
    /// Early reports when a service's load jumps ([`crate::pressure`]).
    pub pressure: PressureSettings,
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
    let client = tokio::select! {
        _ = &mut shutdown => return,
        client = connect(&settings, &ev_tx) => client,
    };
    shared.ready.connected(&client);
    let subjects = settings.subjects.clone();
    let mut tasks = tokio::task::JoinSet::new();

    // Traffic metrics, every interval.
    tasks.spawn(metrics_loop(
        client.clone(),
        settings.clone(),
        shared.clone(),
    ));

    // Drained backends, the moment they drain (woken by the request path and the updater).
    tasks.spawn(drain_loop(client.clone(), settings.clone(), shared.clone()));

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
    // Leader events raise the fencing floor; without them fencing still works from the terms
    // in backend versions, so a failed subscription is only logged.
    let mut leader = match client.subscribe(subjects.leader()).await {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(subject = %subjects.leader(), error = %e, "cannot subscribe to leader events; fencing by backend versions only");
            None
        }
    };
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
            Some(m) = next_leader(&mut leader) => match acs_events::decode::<acs_events::LeaderEvent>(&m.payload) {
                Ok(ev) => {
                    updater.observe_term(ev.term);
                }
                Err(e) => reject(&client, &subjects, &shared, m.subject.as_str(), e.into()).await,
            },
            Some(payload) = reply_rx.recv() => match updater.on_sync_reply(&payload) {
                Ok(n) => {
                    shared.ready.loaded();
                    info!(applied = n, services = updater.table().len(), "sync reply applied")
                }
                Err(r) => {
                    let subject = subjects.backends_sync();
                    reject(&client, &subjects, &shared, &subject, r).await;
                }
            },
            Some(ev) = ev_rx.recv() => match ev {
                async_nats::Event::Connected => {
                    info!(nats = %settings.nats.servers_display(), "connected to NATS; asking for a backend sync");
                    want_sync();
                }
                async_nats::Event::Disconnected => warn!(nats = %settings.nats.servers_display(), "disconnected from NATS; serving the last known routes"),
                other => acs_node::nats::log_event(&settings.nats.name, &other),
            },
        }
    }
    tasks.shutdown().await;
    let _ = client.flush().await;
}

/// A NATS client whose connection events go to `events`; retried with backoff until it is set
/// up (async-nats itself then reconnects for ever).
async fn connect(
    settings: &NatsSettings,
    events: &mpsc::UnboundedSender<async_nats::Event>,
) -> async_nats::Client {
    let nats = &settings.nats;
    let mut delay = SYNC_BACKOFF_START;
    loop {
        let tx = events.clone();
        let connect = async {
            nats.connect_options()
                .await
                .map_err(|e| e.to_string())?
                .retry_on_initial_connect()
                .event_callback(move |ev| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(ev);
                    }
                })
                .connect(&nats.servers)
                .await
                .map_err(|e| e.to_string())
        };
        match connect.await {
            Ok(c) => return c,
            Err(e) => {
                warn!(nats = %nats.servers_display(), error = %e, "cannot set up the NATS client; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(SYNC_BACKOFF_MAX);
            }
        }
    }
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

async fn next_leader(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
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
    let rejection = Rejection::new("proxy", subject, r.kind, r.error, metrics::unix_ms(), total);
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
    let enabled = settings.pressure.enabled();
    let mut check = tokio::time::interval(if enabled {
        settings.pressure.check
    } else {
        Duration::from_secs(3600)
    });
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Instant::now();
    let mut pressure = Pressure::new(settings.pressure, last);
    loop {
        let early = tokio::select! {
            _ = tick.tick() => None,
            _ = check.tick(), if enabled => match pressure.check(&shared.snapshot.load(), Instant::now()) {
                Some(jump) => Some(jump),
                None => continue,
            },
        };
        let now = Instant::now();
        let m = metrics::collect_shared(&shared, &settings.id, now - last);
        last = now;
        pressure.reported(&m, now);
        if let Some(j) = early {
            shared.prom.early_report();
            debug!(service = %j.service, rps = j.rps, reported_rps = j.reported_rps, in_flight = j.in_flight,
                reported_in_flight = j.reported_in_flight, "load jumped: traffic reported early");
            // The next regular report is a whole interval after this one.
            tick.reset();
        }
        // A report over one message's limit goes as parts (see acs_events::split_metrics).
        let parts = acs_events::encode_metrics(m, acs_events::CHUNK_BYTES);
        if parts.len() > acs_events::MAX_PARTS as usize {
            shared.prom.unsent_report();
            warn!(
                parts = parts.len(),
                max = acs_events::MAX_PARTS,
                "traffic report too big even in parts; not sent"
            );
            continue;
        }
        if parts.len() > 1 {
            shared.prom.split_report();
        }
        for part in parts {
            if let Err(e) = client.publish(subject.clone(), part.into()).await {
                debug!(error = %e, "cannot publish traffic metrics");
                break;
            }
        }
    }
}

/// Tells the brain, on `acs.events.drained.<proxy>`, about every draining backend with nothing
/// in flight, once per service version. Woken by [`crate::backend::DrainWatch`]; each wake-up
/// checks the live snapshot, so coalesced or spurious wake-ups are harmless.
async fn drain_loop(client: async_nats::Client, settings: NatsSettings, shared: Arc<Shared>) {
    let subject = settings.subjects.backend_drained(&settings.id);
    let watch = shared.snapshot.load().drains.clone();
    loop {
        watch.woken().await;
        for ev in drained_now(&shared.snapshot.load(), &settings.id, metrics::unix_ms()) {
            debug!(service = %ev.service, backend = %ev.replica, version = ev.version, "backend drained");
            if let Err(e) = client.publish(subject.clone(), encode(&ev).into()).await {
                warn!(service = %ev.service, backend = %ev.replica, error = %e,
                    "cannot publish a drained backend; the brain learns it from the next metrics");
            }
        }
    }
}

/// The drained reports due now: draining, nothing in flight, not yet reported at this version.
pub(crate) fn drained_now(
    snap: &crate::snapshot::Snapshot,
    proxy: &ProxyId,
    ts_ms: acs_events::UnixMs,
) -> Vec<BackendDrained> {
    let mut out = Vec::new();
    for svc in &snap.services {
        for b in svc.backends.iter().filter(|b| b.draining) {
            if b.state.in_flight() == 0 && b.state.drain_report_due(svc.version) {
                out.push(BackendDrained {
                    v: acs_events::SCHEMA_VERSION,
                    proxy: proxy.clone(),
                    service: svc.name.clone(),
                    replica: b.id().clone(),
                    version: svc.version,
                    ts_ms,
                });
            }
        }
    }
    out
}
