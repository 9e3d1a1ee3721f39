//! CPU and memory per replica from a `docker stats` stream per container (Docker replicas are
//! never sampled by pid).

use std::sync::Arc;

use acs_events::ReplicaId;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures::StreamExt;
use tokio::task::AbortHandle;
use tracing::debug;

use super::Inner;
use crate::runtime::ReplicaStats;

impl Inner {
    /// Follows the stats of `container` into `self.stats` until the stream ends.
    pub(super) fn start_stats(
        self: &Arc<Self>,
        replica: &ReplicaId,
        container: &str,
    ) -> AbortHandle {
        let this = self.clone();
        let (replica, container) = (replica.clone(), container.to_string());
        tokio::spawn(async move {
            let opts = StatsOptionsBuilder::default()
                .stream(true)
                .one_shot(false)
                .build();
            let mut stream = this.docker.stats(&container, Some(opts));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(s) => {
                        if let Some(st) = stats_of(&s) {
                            this.stats.lock().unwrap().insert(replica.clone(), st);
                        }
                    }
                    Err(e) => {
                        debug!(replica = %replica, error = %e, "stats stream ended");
                        break;
                    }
                }
            }
        })
        .abort_handle()
    }
}

/// CPU (percent of one core) and memory (without page cache) from one `docker stats` sample.
pub fn stats_of(s: &ContainerStatsResponse) -> Option<ReplicaStats> {
    let cpu = s.cpu_stats.as_ref()?;
    let pre = s.precpu_stats.as_ref();
    let total = cpu
        .cpu_usage
        .as_ref()
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let pre_total = pre
        .and_then(|p| p.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let system = cpu.system_cpu_usage.unwrap_or(0);
    let pre_system = pre.and_then(|p| p.system_cpu_usage).unwrap_or(0);
    let online = cpu.online_cpus.filter(|n| *n > 0).unwrap_or(1) as f64;
    let cpu_pct = if system > pre_system && total >= pre_total && pre_system > 0 {
        (total - pre_total) as f64 / (system - pre_system) as f64 * online * 100.0
    } else {
        0.0
    };
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("inactive_file")
                .or_else(|| st.get("total_inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    Some(ReplicaStats {
        cpu_pct: if cpu_pct.is_finite() && cpu_pct >= 0.0 {
            cpu_pct
        } else {
            0.0
        },
        mem_bytes: usage.saturating_sub(cache),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};
    use std::collections::HashMap;

    fn sample(
        total: u64,
        pre_total: u64,
        sys: u64,
        pre_sys: u64,
        cpus: u32,
        usage: u64,
        cache: u64,
    ) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(total),
                    ..Default::default()
                }),
                system_cpu_usage: Some(sys),
                online_cpus: Some(cpus),
                ..Default::default()
            }),
            precpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(pre_total),
                    ..Default::default()
                }),
                system_cpu_usage: Some(pre_sys),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(usage),
                stats: Some(HashMap::from([("inactive_file".to_string(), cache)])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_is_percent_of_one_core() {
        // Half of the whole 2-core machine = one core = 100 %.
        let s = stats_of(&sample(1_500, 1_000, 2_000, 1_000, 2, 100 << 20, 10 << 20)).unwrap();
        assert!((s.cpu_pct - 100.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.mem_bytes, 90 << 20);
        // First sample (no previous system time): 0, not garbage.
        let s = stats_of(&sample(1_500, 0, 2_000, 0, 2, 1, 0)).unwrap();
        assert_eq!(s.cpu_pct, 0.0);
    }
}
