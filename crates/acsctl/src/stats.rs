//! `acsctl stats SCOPE ID METRIC [--last 1h | --from T --to T] [--step 1m | --hourly] [--json]`:
//! one `StatsRequest` on `acs.monitor.stats` (answered by any acs-monitor), shown as a summary
//! line and, with a step, a series table. `--hourly` is the last 24 h in 1 h buckets (hourly
//! utilisation and averages per host). Rendering is pure ([`render`]).

use std::fmt::Write as _;
use std::time::Duration;

use acs_events::{StatsReply, StatsRequest, StatsScope, Subjects, UnixMs, SCHEMA_VERSION};

use crate::client;
use crate::error::{Error, Result};
use crate::output::Table;
use crate::output::{print_json, Format};

/// What the user asked, before it becomes a request.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub scope: StatsScope,
    pub id: String,
    pub metric: String,
    pub last: Option<Duration>,
    pub from_ms: Option<UnixMs>,
    pub to_ms: Option<UnixMs>,
    pub step: Option<Duration>,
    pub hourly: bool,
}

impl From<crate::cli::StatsArgs> for StatsQuery {
    fn from(a: crate::cli::StatsArgs) -> Self {
        Self {
            scope: a.scope,
            id: a.id,
            metric: a.metric,
            last: a.last,
            from_ms: a.from,
            to_ms: a.to,
            step: a.step,
            hourly: a.hourly,
        }
    }
}

impl StatsQuery {
    pub fn request(&self) -> Result<StatsRequest> {
        let (mut last, mut step) = (self.last, self.step);
        if self.hourly {
            if step.is_some() {
                return Err(Error::Usage(
                    "--hourly is --last 24h --step 1h; give it or --step, not both".into(),
                ));
            }
            step = Some(Duration::from_secs(3600));
            last = last.or(Some(Duration::from_secs(24 * 3600)));
        }
        if last.is_none() && self.from_ms.is_none() {
            last = Some(Duration::from_secs(3600));
        }
        Ok(StatsRequest {
            v: SCHEMA_VERSION,
            scope: self.scope,
            id: self.id.clone(),
            metric: self.metric.clone(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            last_ms: last.map(|d| d.as_millis() as u64),
            step_ms: step.map(|d| d.as_millis() as u64),
        })
    }
}

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    q: StatsQuery,
    format: Format,
) -> Result<()> {
    let req = q.request()?;
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let reply: StatsReply = client::unless_refused(
        &refusals,
        client::ask(&nc, subjects, subjects.monitor_stats(), &req, timeout),
    )
    .await?;
    match format {
        Format::Json => print_json(&reply),
        Format::Table | Format::Wide => print!("{}", render(&reply)),
    }
    Ok(())
}

/// The summary line, then the series (if any) as a table, times in UTC.
pub fn render(r: &StatsReply) -> String {
    let mut out = String::new();
    let scope = r.scope.map_or("?", |s| s.as_str());
    let res = format_step(r.resolution_ms);
    match &r.summary {
        None => {
            let _ = writeln!(
                out,
                "{scope} {} {}: no samples between {} and {} (resolution {res})",
                r.id,
                r.metric,
                clock(r.from_ms),
                clock(r.to_ms)
            );
        }
        Some(s) => {
            let f = |x: f64| value(&r.metric, x);
            let _ = writeln!(
                out,
                "{scope} {} {} from {} to {} ({} samples, resolution {res}): min {}  avg {}  max {}  p95 {}  last {}",
                r.id,
                r.metric,
                clock(r.from_ms),
                clock(r.to_ms),
                s.count,
                f(s.min),
                f(s.avg),
                f(s.max),
                f(s.p95),
                f(s.last),
            );
        }
    }
    if !r.series.is_empty() {
        let mut t = Table::new(["  TIME (UTC)", "SAMPLES", "MIN", "AVG", "MAX", "LAST"]);
        for p in &r.series {
            let f = |x: f64| {
                if p.count == 0 {
                    "-".to_string()
                } else {
                    value(&r.metric, x)
                }
            };
            t.row([
                format!("  {}", clock(p.ts_ms)),
                p.count.to_string(),
                f(p.min),
                f(p.avg),
                f(p.max),
                f(p.last),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

/// A value in the metric's unit: bytes as KiB/MiB/GiB, percentages with `%`, ms with `ms`.
fn value(metric: &str, x: f64) -> String {
    match metric {
        "memory" | "disk_used" => bytes(x),
        "net_rx" | "net_tx" | "disk_read" | "disk_write" => format!("{}/s", bytes(x)),
        "cpu" => format!("{x:.1}%"),
        m if m.ends_with("_ms") => format!("{x:.1}ms"),
        _ => format!("{x:.1}"),
    }
}

pub(crate) fn bytes(x: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let (mut v, mut i) = (x, 0);
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

fn format_step(ms: u64) -> String {
    match ms {
        0 => "-".into(),
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

/// `2026-12-02 07:30:05` from unix ms, in UTC.
fn clock(ms: UnixMs) -> String {
    crate::clock::date_time(ms, &jiff::tz::TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::{StatsPoint, StatsSummary};

    fn q() -> StatsQuery {
        StatsQuery {
            scope: StatsScope::Worker,
            id: "w1".into(),
            metric: "cpu".into(),
            last: None,
            from_ms: None,
            to_ms: None,
            step: None,
            hourly: false,
        }
    }

    #[test]
    fn hourly_is_a_day_in_hours_and_the_default_window_an_hour() {
        let r = StatsQuery {
            hourly: true,
            ..q()
        }
        .request()
        .unwrap();
        assert_eq!((r.last_ms, r.step_ms), (Some(86_400_000), Some(3_600_000)));
        let r = q().request().unwrap();
        assert_eq!((r.last_ms, r.step_ms), (Some(3_600_000), None));
        let both = StatsQuery {
            hourly: true,
            step: Some(Duration::from_secs(60)),
            ..q()
        }
        .request();
        assert!(matches!(both, Err(Error::Usage(m)) if m.contains("--hourly")));
        let from = StatsQuery {
            from_ms: Some(5),
            ..q()
        }
        .request()
        .unwrap();
        assert_eq!(
            from.last_ms, None,
            "an explicit start means no default window"
        );
    }

    #[test]
    fn renders_summary_and_series_in_units() {
        let mut r = StatsReply::error("x");
        r.ok = true;
        r.error = None;
        r.scope = Some(StatsScope::Worker);
        r.id = "w1".into();
        r.metric = "memory".into();
        r.from_ms = 1_764_660_600_000; // 2025-12-02 07:30:00 UTC
        r.to_ms = r.from_ms + 7_200_000;
        r.resolution_ms = 3_600_000;
        r.summary = Some(StatsSummary {
            count: 7200,
            min: 1024.0,
            max: 3.0 * 1048576.0,
            avg: 2.0 * 1048576.0,
            last: 512.0,
            p95: 3.0 * 1048576.0,
        });
        r.series = vec![
            StatsPoint {
                ts_ms: r.from_ms,
                count: 3600,
                min: 1024.0,
                max: 1048576.0,
                avg: 2048.0,
                last: 4096.0,
            },
            StatsPoint {
                ts_ms: r.from_ms + 3_600_000,
                count: 0,
                min: 0.0,
                max: 0.0,
                avg: 0.0,
                last: 0.0,
            },
        ];
        let out = render(&r);
        assert!(out.starts_with("worker w1 memory from 2025-12-02 07:30:00 to 2025-12-02 09:30:00 (7200 samples, resolution 1h)"), "{out}");
        assert!(
            out.contains("min 1.0KiB  avg 2.0MiB  max 3.0MiB  p95 3.0MiB  last 512B"),
            "{out}"
        );
        assert!(
            out.contains("2025-12-02 07:30:00  3600     1.0KiB  2.0KiB  1.0MiB  4.0KiB"),
            "{out}"
        );
        assert!(out.contains("2025-12-02 08:30:00  0        -"), "{out}");
    }

    #[test]
    fn no_samples_is_said() {
        let mut r = StatsReply::error("x");
        r.ok = true;
        r.scope = Some(StatsScope::Service);
        r.id = "web".into();
        r.metric = "p99_ms".into();
        assert!(
            render(&r).contains("service web p99_ms: no samples"),
            "{}",
            render(&r)
        );
    }

    #[test]
    fn clock_and_values() {
        assert_eq!(clock(0), "1970-01-01 00:00:00");
        assert_eq!(clock(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(value("cpu", 12.345), "12.3%");
        assert_eq!(value("net_rx", 2048.0), "2.0KiB/s");
        assert_eq!(value("p99_ms", 3.0), "3.0ms");
    }
}
