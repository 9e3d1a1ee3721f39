//! What a run measured: [`Counts`] per second ([`Tick`]) and for the whole run
//! ([`LoadReport`]), with a fixed-bucket latency histogram.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Debug)]
/// One completed request, as counted.
pub(super) struct Outcome {
    pub(super) result: Result<u16, String>,
    pub(super) instance: Option<String>,
    pub(super) latency: Duration,
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
    pub(super) fn record(&mut self, o: &Outcome) {
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

    pub(super) fn merge(&mut self, other: &Counts) {
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
