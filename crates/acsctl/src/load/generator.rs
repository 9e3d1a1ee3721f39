//! [`run`]: starts requests on a fixed schedule, counts each completion into the current second
//! and the total, and waits a bounded time for the last ones.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use super::report::{Counts, LoadReport, Outcome, Tick};
use super::{LoadError, LoadOptions};

/// Largest response body read (bodies are read to measure the whole request and find the
/// instance; bigger ones count as failures).
const MAX_BODY: usize = 1 << 20;

/// Runs the load until `opts.duration` passes or `shutdown` resolves, calling `on_tick` every
/// second, and returns the totals.
pub async fn run(
    opts: &LoadOptions,
    shutdown: impl Future<Output = ()>,
    mut on_tick: impl FnMut(&Tick),
) -> Result<LoadReport, LoadError> {
    let uri = opts.validate()?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let in_flight = Arc::new(AtomicUsize::new(0));

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / opts.rps);
    let mut send = tokio::time::interval(period);
    let mut second = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let deadline = tokio::time::sleep(opts.duration);
    tokio::pin!(deadline, shutdown);

    let mut total = Counts::default();
    let mut bucket = Counts::default();
    let mut sent_total = 0u64;
    let mut sent_bucket = 0u64;
    let mut secs = 0u64;

    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = &mut deadline => break,
            Some(o) = rx.recv() => bucket.record(&o),
            _ = second.tick() => {
                secs += 1;
                let tick = Tick {
                    second: secs,
                    sent: sent_bucket,
                    in_flight: in_flight.load(Ordering::Relaxed),
                    counts: std::mem::take(&mut bucket),
                };
                total.merge(&tick.counts);
                sent_bucket = 0;
                on_tick(&tick);
            }
            _ = send.tick() => {
                if in_flight.load(Ordering::Relaxed) >= opts.concurrency {
                    bucket.skipped += 1;
                    continue;
                }
                sent_total += 1;
                sent_bucket += 1;
                in_flight.fetch_add(1, Ordering::Relaxed);
                let fut = one_request(client.clone(), uri.clone(), opts.host.clone(), opts.request_timeout);
                let tx = tx.clone();
                let in_flight = in_flight.clone();
                tokio::spawn(async move {
                    let o = fut.await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send(o);
                });
            }
        }
    }
    drop(tx);

    // Let the requests in flight finish (each is bounded by the request timeout).
    let grace = tokio::time::sleep(opts.request_timeout + Duration::from_secs(1));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            o = rx.recv() => match o {
                Some(o) => bucket.record(&o),
                None => break,
            },
            _ = &mut grace => break,
        }
    }
    if bucket.done > 0 || bucket.skipped > 0 || sent_bucket > 0 {
        secs += 1;
        let tick = Tick {
            second: secs,
            sent: sent_bucket,
            in_flight: 0,
            counts: std::mem::take(&mut bucket),
        };
        total.merge(&tick.counts);
        on_tick(&tick);
    }
    Ok(LoadReport {
        elapsed: start.elapsed(),
        sent: sent_total,
        abandoned: sent_total.saturating_sub(total.done),
        ok: total.ok,
        failed: total.failed,
        counts: total,
    })
}

async fn one_request(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    uri: Uri,
    host: Option<String>,
    timeout: Duration,
) -> Outcome {
    let started = Instant::now();
    let work = async {
        let mut req = hyper::Request::get(uri);
        if let Some(h) = host {
            req = req.header(hyper::header::HOST, h);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = client.request(req).await.map_err(|e| {
            if e.is_connect() {
                "connect".to_string()
            } else {
                "http".to_string()
            }
        })?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| "body".to_string())?
            .to_bytes();
        Ok::<_, String>((status, instance_of(&body)))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok((status, instance))) => Outcome {
            result: Ok(status),
            instance,
            latency: started.elapsed(),
        },
        Ok(Err(kind)) => Outcome {
            result: Err(kind),
            instance: None,
            latency: started.elapsed(),
        },
        Err(_) => Outcome {
            result: Err("timeout".into()),
            instance: None,
            latency: started.elapsed(),
        },
    }
}

/// The `"instance"` of a JSON body, if there is one.
pub fn instance_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.get("instance")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_from_json_bodies() {
        assert_eq!(
            instance_of(br#"{"instance":"web-a","port":1}"#).as_deref(),
            Some("web-a")
        );
        assert_eq!(instance_of(br#"{"instance":7}"#).as_deref(), Some("7"));
        assert_eq!(instance_of(b"hello"), None);
        assert_eq!(instance_of(br#"{"other":1}"#), None);
        assert_eq!(instance_of(b""), None);
    }
}
