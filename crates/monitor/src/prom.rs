//! The monitor's Prometheus metrics (`GET /metrics` behind `--metrics-listen`, served by
//! `acs_node::metrics`), all read at scrape time from counters the monitor already keeps:
//! messages ingested and rejected, stats queries, the store's series and buckets, rollups
//! published to / read from ACS_ROLLUPS (and their failures), and (with
//! `--alarms`) alarm evaluation and notification counts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use acs_node::metrics::{counter, gauge, prometheus_client};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::alarm::notify::NotifyCounters;
use crate::alarm::AlarmCounters;
use crate::Shared;

struct MonitorCollector {
    shared: Shared,
    alarms: Option<(Arc<AlarmCounters>, Arc<NotifyCounters>)>,
}

impl std::fmt::Debug for MonitorCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorCollector")
    }
}

pub fn registry(
    shared: Shared,
    alarms: Option<(Arc<AlarmCounters>, Arc<NotifyCounters>)>,
) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(MonitorCollector { shared, alarms }));
    r
}

impl Collector for MonitorCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_messages(&mut e)?;
        self.encode_rollups(&mut e)?;
        self.encode_store(&mut e)?;
        if let Some((a, n)) = &self.alarms {
            encode_alarms(&mut e, a, n)?;
        }
        Ok(())
    }
}

impl MonitorCollector {
    /// Messages ingested and refused, queries answered.
    fn encode_messages(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.shared.counters;
        counter(
            e,
            "acs_monitor_ingested_messages",
            "Metrics messages folded into the history",
            c.ingested.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rejected_messages",
            "Messages and requests refused as malformed or unauthorised",
            c.rejected.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_queries",
            "Statistics queries answered (NATS and HTTP)",
            c.queries.load(Ordering::Relaxed),
        )?;
        Ok(())
    }

    /// ACS_ROLLUPS traffic and split proxy reports.
    fn encode_rollups(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.shared.counters;
        counter(
            e,
            "acs_monitor_rollups_published",
            "Closed buckets stored in ACS_ROLLUPS",
            c.rollups_published.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rollups_duplicate",
            "Closed buckets ACS_ROLLUPS already had from another monitor",
            c.rollups_duplicate.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rollups_failed",
            "Closed buckets not stored in ACS_ROLLUPS: publish or ack failed",
            c.rollups_failed.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rollups_dropped",
            "Closed buckets dropped on a full publish queue",
            c.rollups_dropped.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rollups_skipped",
            "Closed buckets a replay left out because ACS_ROLLUPS had them",
            c.rollups_skipped.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rollup_fetches",
            "Queries that read older buckets from ACS_ROLLUPS",
            c.rollup_fetches.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_rollup_fetch_errors",
            "Reads of older buckets from ACS_ROLLUPS that failed",
            c.rollup_fetch_errors.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "acs_monitor_proxy_parts_dropped",
            "Split proxy reports given up on before they were whole",
            c.proxy_parts_dropped.load(Ordering::Relaxed),
        )?;
        Ok(())
    }

    /// The size of the history store.
    fn encode_store(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A poisoned lock (a panic elsewhere) still has readable data; report it rather than fail.
        let (series, buckets) = self
            .shared
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .size();
        gauge(
            e,
            "acs_monitor_series",
            "Metric series in the history store",
            series as i64,
        )?;
        gauge(
            e,
            "acs_monitor_buckets",
            "Raw slots (at capacity) and rollup buckets held in memory",
            buckets as i64,
        )?;
        Ok(())
    }
}

/// Alarm evaluation and notification counts (with `--alarms`).
fn encode_alarms(
    e: &mut DescriptorEncoder,
    a: &AlarmCounters,
    n: &NotifyCounters,
) -> Result<(), std::fmt::Error> {
    gauge(
        e,
        "acs_monitor_alarm_leader",
        "1 while this monitor holds the alarm lease and notifies",
        i64::from(a.leader.load(Ordering::Relaxed)),
    )?;
    counter(
        e,
        "acs_monitor_alarm_events",
        "Alarm state changes published on acs.events.alarm.<rule>",
        a.events.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "acs_monitor_alarm_save_errors",
        "Alarm states that could not be saved in KV",
        a.save_errors.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "acs_monitor_notifications_sent",
        "Notifications delivered (webhook, Slack, e-mail)",
        n.sent.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "acs_monitor_notifications_failed",
        "Notifications given up after the last retry, or dropped on a full queue",
        n.failed.load(Ordering::Relaxed) + n.dropped.load(Ordering::Relaxed),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_at_scrape_time() {
        let shared = Shared {
            store: Default::default(),
            counters: Default::default(),
            rollups: None,
        };
        shared.counters.ingested.fetch_add(7, Ordering::Relaxed);
        let alarms = (
            Arc::new(AlarmCounters::default()),
            Arc::new(NotifyCounters::default()),
        );
        alarms.0.leader.store(true, Ordering::Relaxed);
        let r = registry(shared.clone(), Some(alarms));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("acs_monitor_ingested_messages_total 7"),
            "{out}"
        );
        assert!(out.contains("acs_monitor_series 0"), "{out}");
        assert!(out.contains("acs_monitor_alarm_leader 1"), "{out}");
        shared.counters.ingested.fetch_add(1, Ordering::Relaxed);
        let mut again = String::new();
        prometheus_client::encoding::text::encode(&mut again, &r).unwrap();
        assert!(
            again.contains("acs_monitor_ingested_messages_total 8"),
            "{again}"
        );
    }
}
