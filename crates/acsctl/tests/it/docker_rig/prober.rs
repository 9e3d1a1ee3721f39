//! Traffic through the proxy: a prober that notes when each instance first answered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_testkit::poll::eventually;
use acsctl::load;
use tokio::sync::oneshot;

use super::{now_ms, Ctr};

/// Asks the proxy's `/whoami` every 25 ms and notes when each instance answered first.
pub struct Prober {
    first_seen: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    ok: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    pub fn start(proxy: SocketAddr) -> Prober {
        let first_seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let ok: Arc<AtomicU64> = Arc::default();
        let (tx, mut rx) = oneshot::channel::<()>();
        let (fs, fl, okc) = (first_seen.clone(), failures.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    _ = tick.tick() => {}
                }
                match acs_testkit::http::get(proxy, "/whoami").await {
                    Ok((200, body)) => {
                        okc.fetch_add(1, Ordering::Relaxed);
                        if let Some(i) = load::instance_of(body.trim().as_bytes()) {
                            fs.lock().unwrap().entry(i).or_insert_with(now_ms);
                        }
                    }
                    Ok((status, body)) => fl.lock().unwrap().push(format!(
                        "{} HTTP {status}: {}",
                        now_ms(),
                        body.trim()
                    )),
                    Err(e) => fl.lock().unwrap().push(format!("{} {e}", now_ms())),
                }
            }
        });
        Prober {
            first_seen,
            failures,
            ok,
            stop: Some(tx),
            task,
        }
    }

    pub fn seen(&self, instance: &str) -> Option<u64> {
        self.first_seen.lock().unwrap().get(instance).copied()
    }

    /// Waits until every one of `instances` answered through the proxy.
    pub async fn wait_seen(&self, instances: &BTreeSet<String>, timeout: Duration) {
        eventually(timeout, Duration::from_millis(50), || async {
            let missing: Vec<&String> = instances
                .iter()
                .filter(|i| self.seen(i).is_none())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{missing:?}"))
            }
        })
        .await
        .unwrap_or_else(|missing| {
            panic!(
                "not seen through the proxy's /whoami within {timeout:?}: {missing}; seen: {:?}",
                self.first_seen.lock().unwrap()
            )
        })
    }

    /// Stops probing; `(ok, failures)`.
    pub async fn finish(mut self) -> (u64, Vec<String>) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        let ok = self.ok.load(Ordering::Relaxed);
        let f = self.failures.lock().unwrap().clone();
        (ok, f)
    }
}

/// Prints when each container of `ctrs` began, started, and first answered through the proxy.
pub fn report_start_to_serving(what: &str, ctrs: &[Ctr], prober: &Prober, since_ms: Option<u64>) {
    for c in ctrs {
        let Some(seen) = prober.seen(&c.replica) else {
            continue;
        };
        let from_create = seen.saturating_sub(c.created_ms);
        let from_start = c
            .started_ms
            .map(|s| format!("{} ms", seen.saturating_sub(s)))
            .unwrap_or_else(|| "?".into());
        let from_cmd = since_ms
            .map(|t| format!(", {} ms after {what}", seen.saturating_sub(t)))
            .unwrap_or_default();
        eprintln!(
            "timing: {} serving through the proxy {from_create} ms after the worker began creating it, {from_start} after Docker started it{from_cmd}",
            c.replica
        );
    }
}
