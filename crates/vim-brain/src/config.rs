//! The services file: what the user declares, validated into typed [`Services`].
//!
//! ```toml
//! [[service]]
//! name = "web"
//! command = ["demo-web", "--port", "{port}", "--id", "{replica}"]
//! health_path = "/healthz"
//! route = { path_prefix = "/" }
//! policy = { min_replicas = 1, max_replicas = 8, target_rps_per_replica = 50 }
//! ```
//!
//! Parsing uses `deny_unknown_fields`, so a typo is refused with the field name and line; the
//! semantic checks in `ServiceFile::validate` name the service and the field they refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use acs_events::{Route, Selection, ServiceName};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Longest service name: replica ids are `<service>-<epoch>-<n>` and must fit in 64 bytes.
pub const MAX_SERVICE_NAME: usize = 40;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    #[serde(default, rename = "service")]
    services: Vec<ServiceConfig>,
}

/// One `[[service]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: ServiceName,
    /// Process runtime: argv; `{port}` and `{replica}` are substituted by the worker.
    #[serde(default)]
    pub command: Vec<String>,
    /// Docker runtime: a local image.
    #[serde(default)]
    pub image: Option<String>,
    /// Port the service listens on inside its container (Docker runtime).
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_health")]
    pub health_path: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets by name: environment variable -> secret name, resolved by each worker from its
    /// own `--secrets-dir`. Only the names travel on the bus, never the values.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// CPU limit per replica, in cores.
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub route: Route,
    #[serde(default)]
    pub selection: Selection,
    #[serde(default)]
    pub policy: Policy,
    /// Moving replicas off hot workers (DRS-style); off unless enabled.
    #[serde(default)]
    pub rebalance: Rebalance,
}

/// `[service.rebalance]`: when one worker running this service is much hotter than a worker
/// that could take a replica, move one replica there, make-before-break, under a budget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebalance {
    #[serde(default)]
    pub enabled: bool,
    /// Most moves started per minute for this service.
    #[serde(default = "default_moves_per_minute")]
    pub moves_per_minute: u32,
    /// Host CPU gap (percentage points) between the hottest worker running the service and the
    /// coldest that could take a replica, above which one replica moves.
    #[serde(default = "default_cpu_gap_pct")]
    pub cpu_gap_pct: f64,
}

impl Default for Rebalance {
    fn default() -> Self {
        Self {
            enabled: false,
            moves_per_minute: default_moves_per_minute(),
            cpu_gap_pct: default_cpu_gap_pct(),
        }
    }
}

fn default_moves_per_minute() -> u32 {
    1
}

fn default_cpu_gap_pct() -> f64 {
    40.0
}

impl Rebalance {
    fn validate(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.moves_per_minute) {
            return Err(format!(
                "rebalance.moves_per_minute must be 1..=60, got {}",
                self.moves_per_minute
            ));
        }
        if !(self.cpu_gap_pct.is_finite() && self.cpu_gap_pct > 0.0 && self.cpu_gap_pct <= 100.0) {
            return Err(format!(
                "rebalance.cpu_gap_pct must be in (0, 100], got {}",
                self.cpu_gap_pct
            ));
        }
        Ok(())
    }
}

fn default_port() -> u16 {
    8000
}

fn default_health() -> String {
    "/healthz".into()
}

/// Scaling policy of one service. Every target is optional; with none the service stays at
/// `min_replicas` unless scaled by hand. Each `target_*` field has its entry in
/// [`crate::policy::SIGNALS`], which measures, validates and prints it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "one")]
    pub min_replicas: u32,
    #[serde(default = "ten")]
    pub max_replicas: u32,
    /// Target CPU use per replica, percent of its limit (`cpus`, or one core when unlimited).
    #[serde(default)]
    pub target_cpu_pct: Option<f64>,
    /// Target proxy requests per second per replica.
    #[serde(default)]
    pub target_rps_per_replica: Option<f64>,
    /// Target in-flight requests per replica.
    #[serde(default)]
    pub target_inflight_per_replica: Option<f64>,
    /// Target p99 latency in ms, the slowest live proxy's figure for the service.
    #[serde(default)]
    pub target_p99_ms: Option<f64>,
    /// Ratio band around 1.0 inside which no change is proposed (HPA's 10 %).
    #[serde(default = "tolerance")]
    pub tolerance: f64,
    /// Scale up to the lowest recommendation seen in this window (0 = at once).
    #[serde(default, rename = "scale_up_window", alias = "scale_up_window_s")]
    #[serde(deserialize_with = "acs_node::duration::secs_or_duration")]
    pub scale_up_window_s: f64,
    /// Scale down to the highest recommendation seen in this window.
    #[serde(
        default = "down_window",
        rename = "scale_down_window",
        alias = "scale_down_window_s"
    )]
    #[serde(deserialize_with = "acs_node::duration::secs_or_duration")]
    pub scale_down_window_s: f64,
    /// Most replicas added by one decision.
    #[serde(default = "step_up")]
    pub max_step_up: u32,
    /// Most replicas removed by one decision.
    #[serde(default = "one")]
    pub max_step_down: u32,
    /// Least time between two automatic changes of the desired count, so that one step's
    /// replicas are running (and measured) before the next step is decided.
    #[serde(
        default = "step_interval",
        rename = "step_interval",
        alias = "step_interval_s"
    )]
    #[serde(deserialize_with = "acs_node::duration::secs_or_duration")]
    pub step_interval_s: f64,
    /// Longest a draining replica waits for its in-flight requests before it is stopped.
    #[serde(
        default = "drain_timeout",
        rename = "drain_timeout",
        alias = "drain_timeout_s"
    )]
    #[serde(deserialize_with = "acs_node::duration::secs_or_duration")]
    pub drain_timeout_s: f64,
    /// Grace given to a replica between SIGTERM/`docker stop` and a kill.
    #[serde(default = "stop_grace", rename = "stop_grace", alias = "stop_grace_s")]
    #[serde(deserialize_with = "acs_node::duration::secs_or_duration")]
    pub stop_grace_s: f64,
}

fn one() -> u32 {
    1
}
fn ten() -> u32 {
    10
}
fn tolerance() -> f64 {
    0.1
}
fn down_window() -> f64 {
    30.0
}
fn step_up() -> u32 {
    4
}
fn step_interval() -> f64 {
    3.0
}
fn drain_timeout() -> f64 {
    30.0
}
fn stop_grace() -> f64 {
    10.0
}

impl Default for Policy {
    /// An empty `policy = {}`: the serde defaults above are the only list of them.
    fn default() -> Self {
        toml::from_str("").expect("every policy field has a default")
    }
}

/// The validated services, by name (ordered, so every walk over them is deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Services(pub BTreeMap<ServiceName, ServiceConfig>);

impl Services {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: p.clone(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { path: p, message },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: ServiceFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<services>".into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        file.validate().map_err(|message| ConfigError::Invalid {
            path: "<services>".into(),
            message,
        })
    }

    pub fn get(&self, name: &ServiceName) -> Option<&ServiceConfig> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ServiceName, &ServiceConfig)> {
        self.0.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().map(|k| k.to_string()).collect()
    }
}

impl ServiceFile {
    fn validate(self) -> Result<Services, String> {
        if self.services.is_empty() {
            return Err("no [[service]] declared".into());
        }
        let mut out = BTreeMap::new();
        let mut routes = BTreeSet::new();
        for s in self.services {
            s.validate()
                .map_err(|e| format!("service {:?}: {e}", s.name.as_str()))?;
            let key = (s.route.host.clone(), s.route.path_prefix.clone());
            if !routes.insert(key) {
                return Err(format!(
                    "service {:?}: route (host {:?}, path_prefix {:?}) is already used by another service",
                    s.name.as_str(),
                    s.route.host,
                    s.route.path_prefix
                ));
            }
            if out.contains_key(&s.name) {
                return Err(format!("service {:?} is declared twice", s.name.as_str()));
            }
            out.insert(s.name.clone(), s);
        }
        Ok(Services(out))
    }
}

impl ServiceConfig {
    fn validate(&self) -> Result<(), String> {
        if self.name.as_str().len() > MAX_SERVICE_NAME {
            return Err(format!("name must be at most {MAX_SERVICE_NAME} bytes"));
        }
        if self.command.first().is_some_and(|c| c.trim().is_empty()) {
            return Err("command[0] must not be empty".into());
        }
        if self.port == 0 {
            return Err("port must be 1..=65535".into());
        }
        self.rebalance.validate()?;
        use acs_events::Validate;
        // What a worker would refuse (no command or image, health_path, limits) is refused here
        // by the same check, so a file that loads never produces commands workers reject.
        self.replica_spec().validate()?;
        self.route.validate()?;
        self.policy.validate().map_err(|e| format!("policy.{e}"))
    }

    /// One line for `vim-brain --check`.
    pub fn summary(&self) -> String {
        let p = &self.policy;
        format!(
            "service {}: min {} max {}, targets: {}, route {:?}",
            self.name,
            p.min_replicas,
            p.max_replicas,
            crate::policy::describe_targets(p),
            self.route
        )
    }

    /// What a worker needs to start one replica.
    pub fn replica_spec(&self) -> acs_events::ReplicaSpec {
        acs_events::ReplicaSpec {
            service: self.name.clone(),
            command: self.command.clone(),
            image: self.image.clone(),
            port: self.port,
            health_path: self.health_path.clone(),
            env: self.env.clone(),
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            secrets: self.secrets.clone(),
        }
    }
}

impl Policy {
    fn validate(&self) -> Result<(), String> {
        if self.max_replicas == 0 {
            return Err("max_replicas must be >= 1".into());
        }
        if self.min_replicas > self.max_replicas {
            return Err(format!(
                "min_replicas ({}) must be <= max_replicas ({})",
                self.min_replicas, self.max_replicas
            ));
        }
        if self.max_replicas as i64 > acs_events::MAX_REPLICAS {
            return Err(format!(
                "max_replicas must be <= {}",
                acs_events::MAX_REPLICAS
            ));
        }
        for signal in crate::policy::SIGNALS {
            if let Some(v) = (signal.target)(self) {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{} must be > 0, got {v}", signal.key));
                }
            }
        }
        for (name, v) in [
            ("tolerance", self.tolerance),
            ("scale_up_window", self.scale_up_window_s),
            ("scale_down_window", self.scale_down_window_s),
            ("step_interval", self.step_interval_s),
            ("drain_timeout", self.drain_timeout_s),
            ("stop_grace", self.stop_grace_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be >= 0, got {v}"));
            }
        }
        if self.tolerance >= 1.0 {
            return Err(format!("tolerance must be < 1, got {}", self.tolerance));
        }
        if self.max_step_up == 0 || self.max_step_down == 0 {
            return Err("max_step_up and max_step_down must be >= 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
