//! Prometheus `GET /metrics` of the local cluster's components.
//!
//! Every component gets `--metrics-listen 127.0.0.1:PORT --metrics-token-file
//! DIR/metrics.token` (one random token for all, mode 0600, made on first start and kept).
//! Ports: with [`ClusterOptions::metrics_base`] `Some(B)` (default [`METRICS_BASE`]), vim-brain
//! is B, the proxy B+1, B+2 is kept for acs-monitor, and worker `wN` is B+9+N (w1 = B+10); with
//! `None` (tests) each gets a free port. The targets go to `DIR/prometheus-targets.json`
//! (Prometheus `file_sd_configs` format), which `config/prometheus.yml` reads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use acs_testkit::free_port;

use super::{io, ClusterOptions, Result};

/// Default first metrics port of `acsctl up`.
pub const METRICS_BASE: u16 = 9480;
/// Offset of `w1` from the base.
const WORKER_OFFSET: u16 = 10;
/// The token every scrape carries, in the cluster dir.
pub const TOKEN_FILE: &str = "metrics.token";
/// Prometheus file-based service discovery, in the cluster dir.
pub const TARGETS_FILE: &str = "prometheus-targets.json";

/// One component's `/metrics` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTarget {
    /// The child's name (`vim-brain`, `proxy`, `w1`...).
    pub name: String,
    /// The binary (`vim-brain`, `vmm-worker`, `acs-proxy`).
    pub component: String,
    pub addr: SocketAddr,
}

/// Where `name` serves its metrics: from the base, or a free port.
pub(super) fn addr_for(opts: &ClusterOptions, name: &str) -> SocketAddr {
    let port = match opts.metrics_base {
        Some(base) => base + offset(name),
        None => free_port(),
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn offset(name: &str) -> u16 {
    match name {
        "vim-brain" => 0,
        "proxy" => 1,
        "monitor" => 2,
        w => w
            .strip_prefix('w')
            .and_then(|n| n.parse::<u16>().ok())
            .map_or(WORKER_OFFSET - 1, |n| WORKER_OFFSET + n - 1),
    }
}

/// The addresses [`addr_for`] gives with a fixed base, for the preflight port check.
pub(super) fn fixed_addrs(opts: &ClusterOptions) -> Vec<SocketAddr> {
    let Some(_) = opts.metrics_base else {
        return Vec::new();
    };
    let workers = (1..=opts.workers).map(|i| format!("w{i}"));
    [
        "vim-brain".to_string(),
        "proxy".to_string(),
        "monitor".to_string(),
    ]
    .into_iter()
    .chain(workers)
    .map(|n| addr_for(opts, &n))
    .collect()
}

/// The flags that make a component serve its metrics.
pub(super) fn args(addr: SocketAddr, token: &Path) -> Vec<String> {
    vec![
        "--metrics-listen".into(),
        addr.to_string(),
        "--metrics-token-file".into(),
        token.display().to_string(),
    ]
}

/// `<dir>/prometheus-targets.json`: one group per target, labelled `component` and `name`.
pub(super) fn write_targets(dir: &Path, targets: &[MetricsTarget]) -> Result<PathBuf> {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "targets": [t.addr.to_string()],
                "labels": { "component": t.component, "name": t.name },
            })
        })
        .collect();
    let path = dir.join(TARGETS_FILE);
    let text = serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into());
    // Written beside and renamed, so Prometheus never reads half a file.
    let tmp = dir.join(format!("{TARGETS_FILE}.tmp"));
    std::fs::write(&tmp, text + "\n").map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_documented_layout() {
        let mut o = ClusterOptions::new("/tmp/x");
        o.workers = 3;
        let ports: Vec<u16> = fixed_addrs(&o).iter().map(|a| a.port()).collect();
        assert_eq!(ports, vec![9480, 9481, 9482, 9490, 9491, 9492]);
        assert_eq!(addr_for(&o, "monitor").port(), 9482);
        o.metrics_base = None;
        assert!(fixed_addrs(&o).is_empty());
        assert_ne!(addr_for(&o, "w1").port(), 9490);
    }

    #[test]
    fn targets_are_prometheus_file_sd() {
        let dir = std::env::temp_dir().join(format!("acs-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = MetricsTarget {
            name: "w1".into(),
            component: "vmm-worker".into(),
            addr: "127.0.0.1:9490".parse().unwrap(),
        };
        let path = write_targets(&dir, &[t]).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v[0]["targets"][0], "127.0.0.1:9490");
        assert_eq!(v[0]["labels"]["component"], "vmm-worker");
        assert_eq!(v[0]["labels"]["name"], "w1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
