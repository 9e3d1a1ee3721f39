//! The one publisher loop: walks a [`Schedule`] and publishes each message when it is due,
//! counting what it sent, what failed and how far behind schedule it runs; prints a report line
//! every `report_every`.

use std::future::Future;
use std::time::{Duration, Instant};

use acs_events::UnixMs;

use crate::schedule::Schedule;

/// Most messages sent in one go before the loop looks at its report timer and shutdown again,
/// so a loop far behind schedule still reports and stops.
const BATCH: u64 = 512;

pub fn wall_ms() -> UnixMs {
    acs_node::unix_ms()
}

/// Counts over a whole run or one report period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub sent: u64,
    pub errors: u64,
    pub bytes: u64,
    pub max_bytes: usize,
    /// Messages over `acs_events::MAX_PAYLOAD`, which every acs reader refuses (sent anyway).
    pub oversize: u64,
    /// Largest delay between a message's due time and its publication.
    pub max_behind: Duration,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.max_bytes = self.max_bytes.max(other.max_bytes);
        self.oversize += other.oversize;
        self.max_behind = self.max_behind.max(other.max_behind);
    }

    /// One report line, `secs` being the period the tally covers.
    pub fn line(&self, label: &str, elapsed: Duration, secs: f64, behind_now: Duration) -> String {
        let mut s = format!(
            "{label}: t={:.0}s sent/s={:.1} MB/s={:.2} errors={} behind_max_ms={:.1} behind_now_ms={:.1} max_bytes={}",
            elapsed.as_secs_f64(),
            self.sent as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            self.errors,
            self.max_behind.as_secs_f64() * 1e3,
            behind_now.as_secs_f64() * 1e3,
            self.max_bytes,
        );
        if self.oversize > 0 {
            s.push_str(&format!(
                " OVERSIZE={} (over {} bytes)",
                self.oversize,
                acs_events::MAX_PAYLOAD
            ));
        }
        s
    }
}

/// Publishes message `k` of `schedule` at its due time until `shutdown` resolves; `make` builds
/// the subject and payload for (sender, round, wall-clock ms). Returns the whole run's tally.
pub async fn run<F>(
    client: &async_nats::Client,
    schedule: Schedule,
    label: &str,
    report_every: Duration,
    mut make: F,
    shutdown: impl Future<Output = ()>,
) -> Tally
where
    F: FnMut(usize, u64, UnixMs) -> (String, Vec<u8>),
{
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut total = Tally::default();
    let mut period = Tally::default();
    let mut period_start = start;
    let mut report = tokio::time::interval_at((start + report_every).into(), report_every);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let next_due = start + schedule.due(k);
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = report.tick() => {
                let now = Instant::now();
                let behind_now = now.saturating_duration_since(start + schedule.due(k));
                let secs = now.duration_since(period_start).as_secs_f64().max(1e-9);
                println!("{}", period.line(label, now - start, secs, behind_now));
                total.add(&period);
                period = Tally::default();
                period_start = now;
            }
            _ = tokio::time::sleep_until(next_due.into()) => {
                let upto = schedule.due_by(start.elapsed()).min(k + BATCH);
                while k < upto {
                    let behind = Instant::now().saturating_duration_since(start + schedule.due(k));
                    period.max_behind = period.max_behind.max(behind);
                    let (sender, round) = schedule.slot(k);
                    let (subject, payload) = make(sender, round, wall_ms());
                    period.bytes += payload.len() as u64;
                    period.max_bytes = period.max_bytes.max(payload.len());
                    if payload.len() > acs_events::MAX_PAYLOAD {
                        period.oversize += 1;
                    }
                    match client.publish(subject, payload.into()).await {
                        Ok(()) => period.sent += 1,
                        Err(e) => {
                            if period.errors == 0 {
                                tracing::warn!(error = %e, "publish failed");
                            }
                            period.errors += 1;
                        }
                    }
                    k += 1;
                }
            }
        }
    }
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flush at shutdown failed");
    }
    total.add(&period);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{}",
        total.line(
            &format!("{label} total"),
            start.elapsed(),
            secs,
            Duration::ZERO
        )
    );
    total
}
