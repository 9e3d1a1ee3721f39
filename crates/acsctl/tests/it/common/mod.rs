//! Helpers shared by the end-to-end suites (`e2e.rs`, `docker_e2e.rs`): the `web` service in a
//! status reply, load through the proxy in the background, and a record of what went over NATS.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::codec::Versioned;
use acs_events::{decode, ServiceStatus, StatusReply, Validate};
use acsctl::load::{self, LoadOptions, LoadReport};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

/// The `web` service in `s`; panics when the brain does not list it.
pub fn web(s: &StatusReply) -> &ServiceStatus {
    s.services
        .iter()
        .find(|x| x.name.as_str() == "web")
        .expect("web in status")
}

/// Open-loop load on `url` at `rps` until the returned sender fires (or `max` passes).
pub fn background_load(
    url: String,
    rps: f64,
    max: Duration,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<LoadReport>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut opts = LoadOptions::new(url, rps, max);
        opts.request_timeout = Duration::from_secs(20);
        load::run(
            &opts,
            async {
                let _ = rx.await;
            },
            |_| {},
        )
        .await
        .expect("load options are valid")
    });
    (tx, handle)
}

/// Two loads through the proxy at `addr` at once: quick `GET /whoami`s, and GETs of a slower
/// path, so that some requests are in flight at any moment.
pub struct MixedLoad {
    stops: [oneshot::Sender<()>; 2],
    runs: [tokio::task::JoinHandle<LoadReport>; 2],
}

impl MixedLoad {
    /// Starts both, each for at most 150 s.
    pub fn start(addr: SocketAddr, whoami_rps: f64, slow_path: &str, slow_rps: f64) -> Self {
        let max = Duration::from_secs(150);
        let (stop_a, run_a) = background_load(format!("http://{addr}/whoami"), whoami_rps, max);
        let (stop_b, run_b) = background_load(format!("http://{addr}{slow_path}"), slow_rps, max);
        Self {
            stops: [stop_a, stop_b],
            runs: [run_a, run_b],
        }
    }

    /// Stops both: the reports of `/whoami` and of the slow path.
    pub async fn finish(self) -> (LoadReport, LoadReport) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let [a, b] = self.runs;
        (a.await.unwrap(), b.await.unwrap())
    }
}

/// Messages on one subscription, in the order NATS delivered them.
pub type Recording = Arc<Mutex<Vec<async_nats::Message>>>;

/// Records every message on `subject` (wildcards welcome) from now on. One subscription keeps
/// the order across subjects: messages one publisher sent arrive in the order it sent them.
pub async fn record(nc: &async_nats::Client, subject: String) -> Recording {
    let out = Recording::default();
    let mut sub = nc.subscribe(subject).await.unwrap();
    nc.flush().await.unwrap();
    let o = out.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            o.lock().unwrap().push(m);
        }
    });
    out
}

/// The messages recorded so far that decode as `T`, in order (the others are left out).
pub fn decoded<T>(rec: &Recording) -> Vec<T>
where
    T: DeserializeOwned + Validate + Versioned,
{
    rec.lock()
        .unwrap()
        .iter()
        .filter_map(|m| decode(&m.payload).ok())
        .collect()
}
