//! `acsctl load`: an open-loop HTTP load generator.
//!
//! Requests start on a fixed schedule (`rps` per second) whatever the answers take, as real
//! users do; when `concurrency` requests are already in flight, a due request is counted as
//! `skipped` instead of waiting. Results are counted per second (by completion time) and in
//! total: status codes, failures by kind, and, when the body is JSON with an `"instance"` field
//! (demo-web's `/whoami`), which instance answered.

use std::collections::BTreeMap;
use std::fmt;
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

/// Largest response body read (bodies are read to measure the whole request and find the
/// instance; bigger ones count as failures).
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://host:port/path`.
    pub url: String,
    pub rps: f64,
    pub duration: Duration,
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// Host header override.
    pub host: Option<String>,
}

impl LoadOptions {
    pub fn new(url: impl Into<String>, rps: f64, duration: Duration) -> Self {
        Self {
            url: url.into(),
            rps,
            duration,
            concurrency: 256,
            request_timeout: Duration::from_secs(10),
            host: None,
        }
    }

    pub fn validate(&self) -> Result<Uri, LoadError> {
        let uri: Uri = self.url.parse().map_err(|e| {
            LoadError::Invalid(format!(
                "invalid URL {:?}: {e}; expected e.g. http://127.0.0.1:8080/whoami",
                self.url
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(LoadError::Invalid(format!(
                    "URL scheme {other:?} is not supported; use http://"
                )))
            }
            None => {
                return Err(LoadError::Invalid(format!(
                    "URL {:?} needs a scheme and a host: e.g. http://127.0.0.1:8080/whoami",
                    self.url
                )))
            }
        }
        if uri.authority().is_none() {
            return Err(LoadError::Invalid(format!(
                "URL {:?} has no host",
                self.url
            )));
        }
        if !(self.rps.is_finite() && self.rps > 0.0 && self.rps <= 100_000.0) {
            return Err(LoadError::Invalid(format!(
                "--rps must be in (0, 100000], got {}",
                self.rps
            )));
        }
        if self.duration.is_zero() {
            return Err(LoadError::Invalid("--duration must be > 0".into()));
        }
        if self.concurrency == 0 {
            return Err(LoadError::Invalid("--concurrency must be >= 1".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(LoadError::Invalid("--request-timeout must be > 0".into()));
        }
        Ok(uri)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(String),
}

/// Counts over some window: one second ([`Tick`]) or the whole run ([`LoadReport`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Requests that completed (answered, failed or timed out) in the window.
    pub done: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers plus transport failures and timeouts.
    pub failed: u64,
    /// Due requests not sent because `concurrency` were in flight.
    pub skipped: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without an HTTP status, by kind (`connect`, `timeout`, `body`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Which instance answered (from a JSON body's `"instance"`).
    pub instances: BTreeMap<String, u64>,
    latency: Histogram,
}

impl Counts {
    fn record(&mut self, o: &Outcome) {
        self.done += 1;
        match &o.result {
            Ok(status) => {
                *self.statuses.entry(*status).or_default() += 1;
                if (200..300).contains(status) {
                    self.ok += 1;
                } else {
                    self.failed += 1;
                }
            }
            Err(kind) => {
                self.failed += 1;
                *self.errors.entry(kind.clone()).or_default() += 1;
            }
        }
        if let Some(i) = &o.instance {
            *self.instances.entry(i.clone()).or_default() += 1;
        }
        self.latency.add(o.latency);
    }

    /// Latency percentile over completed requests, in milliseconds (`q` in 0..=1).
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q)
    }

    fn merge(&mut self, other: &Counts) {
        self.done += other.done;
        self.ok += other.ok;
        self.failed += other.failed;
        self.skipped += other.skipped;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.instances {
            *self.instances.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
    }

    fn write_summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok {} failed {}", self.ok, self.failed)?;
        if self.skipped > 0 {
            write!(f, " skipped {}", self.skipped)?;
        }
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        parts.extend(self.errors.iter().map(|(e, n)| format!("{e}:{n}")));
        if !parts.is_empty() {
            write!(f, " [{}]", parts.join(" "))?;
        }
        if let (Some(p50), Some(p99)) = (self.latency_ms(0.5), self.latency_ms(0.99)) {
            write!(f, " p50 {p50:.1}ms p99 {p99:.1}ms")?;
        }
        if !self.instances.is_empty() {
            let list: Vec<String> = self
                .instances
                .iter()
                .map(|(i, n)| format!("{i}:{n}"))
                .collect();
            write!(f, " instances {}", list.join(" "))?;
        }
        Ok(())
    }
}

/// One second of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds since the start (1 = the first second).
    pub second: u64,
    pub sent: u64,
    pub in_flight: usize,
    pub counts: Counts,
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>4}s sent {} inflight {} ",
            self.second, self.sent, self.in_flight
        )?;
        self.counts.write_summary(f)
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub elapsed: Duration,
    pub sent: u64,
    /// Requests still in flight when the run gave up waiting (not counted as done).
    pub abandoned: u64,
    pub counts: Counts,
    pub ok: u64,
    pub failed: u64,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total {:.1}s sent {} ",
            self.elapsed.as_secs_f64(),
            self.sent
        )?;
        self.counts.write_summary(f)?;
        if self.abandoned > 0 {
            write!(f, " abandoned {}", self.abandoned)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Outcome {
    result: Result<u16, String>,
    instance: Option<String>,
    latency: Duration,
}

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

/// Latency histogram: 0.1 ms buckets below 100 ms, 10 ms buckets up to 60 s, then one overflow.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

const FINE: u64 = 1_000; // 0..100 ms in 100 µs steps
const COARSE: u64 = 5_990; // 100 ms..60 s in 10 ms steps

impl Histogram {
    fn index(d: Duration) -> usize {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = if us < 100_000 {
            us / 100
        } else {
            (FINE + (us - 100_000) / 10_000).min(FINE + COARSE)
        };
        i as usize
    }

    /// Upper edge of bucket `i`, in ms.
    fn upper_ms(i: usize) -> f64 {
        let i = i as u64;
        if i < FINE {
            (i + 1) as f64 * 0.1
        } else {
            100.0 + (i - FINE + 1) as f64 * 10.0
        }
    }

    fn add(&mut self, d: Duration) {
        let i = Self::index(d);
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_ms(i));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_options() {
        let ok = LoadOptions::new("http://127.0.0.1:8080/whoami", 10.0, Duration::from_secs(1));
        ok.validate().unwrap();
        for (url, rps, secs, msg) in [
            ("https://x/", 1.0, 1, "not supported"),
            ("127.0.0.1:8080/x", 1.0, 1, "e.g. http://"),
            ("127.0.0.1:8080", 1.0, 1, "e.g. http://"),
            ("http://x/", 0.0, 1, "--rps"),
            ("http://x/", f64::NAN, 1, "--rps"),
            ("http://x/", 1.0, 0, "--duration"),
            ("not a url", 1.0, 1, "invalid URL"),
        ] {
            let err = LoadOptions::new(url, rps, Duration::from_secs(secs))
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(msg), "{url}: {err}");
        }
        let mut o = ok.clone();
        o.concurrency = 0;
        assert!(o.validate().is_err());
    }

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

    #[test]
    fn counts_and_summary() {
        let mut c = Counts::default();
        for (result, instance) in [
            (Ok(200), Some("a")),
            (Ok(200), Some("b")),
            (Ok(502), None),
            (Err("connect".to_string()), None),
        ] {
            c.record(&Outcome {
                result,
                instance: instance.map(String::from),
                latency: Duration::from_millis(5),
            });
        }
        assert_eq!((c.done, c.ok, c.failed), (4, 2, 2));
        let tick = Tick {
            second: 3,
            sent: 4,
            in_flight: 0,
            counts: c,
        };
        assert_eq!(
            tick.to_string(),
            "   3s sent 4 inflight 0 ok 2 failed 2 [200:2 502:1 connect:1] p50 5.1ms p99 5.1ms instances a:1 b:1"
        );
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.add(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((50.0..=50.2).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((99.0..=99.2).contains(&p99), "{p99}");
        h.add(Duration::from_secs(3600));
        assert_eq!(
            h.quantile(1.0).unwrap(),
            Histogram::upper_ms((FINE + COARSE) as usize)
        );
    }
}
