//! What a run measured: [`Counts`] per second ([`Tick`]) and for the whole run
//! ([`LoadReport`]), with an HDR [`Histogram`] of latency in µs; text lines, a latency
//! table and JSON ([`LoadReport::to_json`], [`Tick::to_json`]).

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

    /// Latency percentile over completed requests, in milliseconds (`q` in 0..=1), with µs
    /// resolution (≤ 0.8 % relative error).
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile_us(q).map(|us| us as f64 / 1000.0)
    }

    /// The latency histogram of completed requests.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Latency summary in µs: `count`, `min`, `mean`, `p50`, `p90`, `p99`, `p999`, `max`
    /// (all null when nothing completed).
    pub fn latency_json(&self) -> serde_json::Value {
        let h = &self.latency;
        serde_json::json!({
            "count": h.count(),
            "min": h.min_us(),
            "mean": h.mean_us().map(|m| (m * 10.0).round() / 10.0),
            "p50": h.quantile_us(0.5),
            "p90": h.quantile_us(0.9),
            "p99": h.quantile_us(0.99),
            "p999": h.quantile_us(0.999),
            "max": h.max_us(),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "done": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "errors": self.errors,
            "instances": self.instances,
            "p50_ms": self.latency_ms(0.5),
            "p99_ms": self.latency_ms(0.99),
            "latency_us": self.latency_json(),
        })
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
            write!(f, " p50 {p50:.3}ms p99 {p99:.3}ms")?;
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

impl Tick {
    /// One JSON object: the second, `sent`, `in_flight` and the counts.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.counts.to_json();
        v["second"] = self.second.into();
        v["sent"] = self.sent.into();
        v["in_flight"] = self.in_flight.into();
        v
    }
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

impl LoadReport {
    /// The whole run as one JSON object (`"total": true` tells it from the per-second lines).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.counts.to_json();
        v["total"] = true.into();
        v["elapsed_s"] = self.elapsed.as_secs_f64().into();
        v["sent"] = self.sent.into();
        v["abandoned"] = self.abandoned.into();
        v
    }

    /// A two-line table of the run's latency in µs (count, min, mean, percentiles, max).
    pub fn latency_table(&self) -> String {
        let h = &self.counts.latency;
        let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let cols = [
            ("count", h.count().to_string()),
            ("min", cell(h.min_us())),
            (
                "mean",
                h.mean_us().map_or("-".into(), |m| format!("{m:.0}")),
            ),
            ("p50", cell(h.quantile_us(0.5))),
            ("p90", cell(h.quantile_us(0.9))),
            ("p99", cell(h.quantile_us(0.99))),
            ("p99.9", cell(h.quantile_us(0.999))),
            ("max", cell(h.max_us())),
        ];
        let mut head = format!("{:<12}", "latency µs");
        let mut row = format!("{:<12}", "");
        for (name, v) in &cols {
            head.push_str(&format!(" {name:>9}"));
            row.push_str(&format!(" {v:>9}"));
        }
        format!("{head}\n{row}")
    }
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

/// Latency in microseconds: an HDR histogram (3 significant digits, so a quantile is within
/// 0.1 % of a value seen) from 1 µs to an hour, plus the exact count, sum, min and max.
/// Quantiles report the highest value equivalent to the bucket, capped by the largest value
/// seen, so they never understate. Longer latencies are clamped into the last bucket (requests
/// time out long before); `max` keeps the real value.
#[derive(Debug, Clone)]
pub struct Histogram {
    hdr: hdrhistogram::Histogram<u64>,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

/// One hour: the largest latency the histogram tells apart.
const MAX_US: u64 = 3_600_000_000;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            // Bounds and precision are constants that hdrhistogram accepts.
            hdr: hdrhistogram::Histogram::new_with_bounds(1, MAX_US, 3)
                .expect("1 µs..1 h at 3 significant digits is a valid histogram"),
            sum_us: 0,
            min_us: 0,
            max_us: 0,
        }
    }
}

impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        self.hdr == other.hdr
            && (self.sum_us, self.min_us, self.max_us) == (other.sum_us, other.min_us, other.max_us)
    }
}

impl Histogram {
    pub fn add(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        if self.count() == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.sum_us += u128::from(us);
        self.hdr.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count() == 0 {
            return;
        }
        if self.count() == 0 || other.min_us < self.min_us {
            self.min_us = other.min_us;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
        // Same bounds on both sides, so the counts always fit.
        let _ = self.hdr.add(&other.hdr);
    }

    pub fn count(&self) -> u64 {
        self.hdr.len()
    }

    /// The `q` quantile (0..=1) in µs, capped by the largest value seen.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (self.count() > 0).then(|| {
            self.hdr
                .value_at_quantile(q.clamp(0.0, 1.0))
                .min(self.max_us)
                .max(self.min_us)
        })
    }

    pub fn min_us(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.min_us)
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max_us)
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.sum_us as f64 / self.count() as f64)
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
            "   3s sent 4 inflight 0 ok 2 failed 2 [200:2 502:1 connect:1] p50 5.000ms p99 5.000ms instances a:1 b:1"
        );
    }

    #[test]
    fn histogram_quantiles_are_within_a_tenth_of_a_percent() {
        // One value at a time: its quantile is never below it and at most 0.1 % above it
        // (exact below 2048 µs), however large.
        let h = Histogram::default();
        let mut v = 0u64;
        while v < MAX_US {
            let hdr = h.hdr.highest_equivalent(v);
            assert!(hdr >= v, "{v} -> {hdr}");
            assert!((hdr - v) as f64 <= v as f64 / 1000.0, "{v} -> {hdr}");
            v = if v < 5_000 { v + 1 } else { v + v / 300 + 1 };
        }
        for v in [0, 1, 2_047, 2_049, 80_000, 1_234_567] {
            let mut one = Histogram::default();
            one.hdr.saturating_record(v);
            let q = one.hdr.value_at_quantile(0.5);
            assert!(q >= v && (q - v) as f64 <= v as f64 / 1000.0, "{v} -> {q}");
        }
    }

    #[test]
    fn histogram_quantiles_have_microsecond_resolution() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        assert_eq!((h.min_us(), h.max_us(), h.mean_us()), (None, None, None));
        // 1..=1000 µs: exact below 256 µs, within 0.8 % above.
        for us in 1..=1000 {
            h.add(Duration::from_micros(us));
        }
        assert_eq!(h.quantile_us(0.1), Some(100));
        let p50 = h.quantile_us(0.5).unwrap();
        assert!((500..=504).contains(&p50), "{p50}");
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((990..=998).contains(&p99), "{p99}");
        assert_eq!(h.quantile_us(1.0), Some(1000));
        assert_eq!(h.quantile_us(0.0), Some(1));
        assert_eq!((h.min_us(), h.max_us()), (Some(1), Some(1000)));
        assert_eq!(h.mean_us(), Some(500.5));
        assert_eq!(h.count(), 1000);
        // Sub-µs parts are dropped, not rounded up.
        let mut z = Histogram::default();
        z.add(Duration::from_nanos(999));
        assert_eq!(z.quantile_us(0.5), Some(0));
    }

    #[test]
    fn histogram_large_values_and_merge() {
        let mut a = Histogram::default();
        a.add(Duration::from_millis(80));
        let mut b = Histogram::default();
        b.add(Duration::from_micros(90));
        b.add(Duration::from_secs(7200)); // clamped into the last bucket; max keeps it
        a.merge(&b);
        a.merge(&Histogram::default());
        assert_eq!(a.count(), 3);
        assert_eq!(a.min_us(), Some(90));
        assert_eq!(a.max_us(), Some(7_200_000_000));
        assert_eq!(a.quantile_us(0.1), Some(90));
        let p50 = a.quantile_us(0.5).unwrap();
        assert!((80_000..=80_000 + 80_000 / 128).contains(&p50), "{p50}");
        assert!(a.quantile_us(1.0).unwrap() >= MAX_US);
    }

    #[test]
    fn json_and_table() {
        let mut c = Counts::default();
        for us in [120, 140, 4_000] {
            c.record(&Outcome {
                result: Ok(200),
                instance: None,
                latency: Duration::from_micros(us),
            });
        }
        let report = LoadReport {
            elapsed: Duration::from_secs(1),
            sent: 3,
            abandoned: 0,
            ok: 3,
            failed: 0,
            counts: c,
        };
        let j = report.to_json();
        assert_eq!(j["total"], true);
        assert_eq!(j["ok"], 3);
        assert_eq!(j["statuses"]["200"], 3);
        assert_eq!(j["latency_us"]["p50"], 140);
        assert_eq!(j["latency_us"]["min"], 120);
        assert_eq!(j["latency_us"]["max"], 4_000);
        assert_eq!(j["p50_ms"], 0.14);
        assert!(
            report.to_string().contains("p50 0.140ms p99 4.000ms"),
            "{report}"
        );
        let t = report.latency_table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(
            lines[0].starts_with("latency µs") && lines[0].contains("p99.9"),
            "{t}"
        );
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            ["3", "120", "1420", "140", "4000", "4000", "4000", "4000"]
        );
        let empty = LoadReport {
            counts: Counts::default(),
            ..report
        };
        assert!(empty.latency_table().lines().nth(1).unwrap().contains('-'));
        assert!(empty.to_json()["latency_us"]["p50"].is_null());
    }
}
