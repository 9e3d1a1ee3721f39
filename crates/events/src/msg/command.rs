//! Commands from the brain to one worker (`acs.cmd.worker.<id>`), request-reply.
//!
//! Commands are idempotent by `id`: a worker that sees the same id twice answers with the first
//! answer and does nothing else. Starting a replica id that already runs, or stopping one that is
//! already gone, also succeeds, so a brain that retries after a lost reply is always safe.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::id::{CommandId, ReplicaId, ServiceName};
use crate::msg::ReplicaStatus;
use crate::UnixMs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerCommand {
    #[serde(default = "v1")]
    pub v: u32,
    pub id: CommandId,
    #[serde(default)]
    pub issued_ms: UnixMs,
    /// The leader term of the brain that sent it ([`crate::Term`]). A worker refuses a command
    /// from a term older than the newest it has seen (rejection kind `fenced`): a paused old
    /// leader that wakes up cannot undo the new leader's work. 0: sent by a brain without a lease.
    #[serde(default)]
    pub term: u64,
    /// The worker instance (`WorkerMetrics::instance`) this command is for. A second process
    /// that took the same worker id refuses commands meant for the first. `None`: any instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}
versioned!(WorkerCommand);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start `replica` of a service. The worker picks the host port.
    Start {
        replica: ReplicaId,
        spec: ReplicaSpec,
    },
    /// Stop `replica`: SIGTERM / `docker stop`, then kill after `grace_ms`.
    Stop {
        replica: ReplicaId,
        #[serde(default = "default_grace")]
        grace_ms: u64,
    },
}

fn default_grace() -> u64 {
    5_000
}

/// Everything a worker needs to run one replica; the worker holds no service config of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    pub service: ServiceName,
    /// Process runtime: argv. `{port}` and `{replica}` are substituted; `PORT` and `ACS_REPLICA`
    /// are also set in the environment.
    #[serde(default)]
    pub command: Vec<String>,
    /// Docker runtime: image reference (must exist locally).
    #[serde(default)]
    pub image: Option<String>,
    /// Port the service listens on inside a container. The process runtime ignores it and
    /// assigns a free host port.
    #[serde(default)]
    pub port: u16,
    /// HTTP path that must answer 2xx before the replica counts as healthy.
    #[serde(default = "default_health")]
    pub health_path: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CPU limit in cores (0.5 = half a core); `None` = unlimited.
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Secrets by reference: environment variable name → secret name. The worker reads each
    /// value from its own secrets dir (`<dir>/<secret name>`); values never travel on the bus.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// Longest secret name.
pub const MAX_SECRET_NAME: usize = 128;

/// A secret name is a plain file name: letters, digits, `.`, `_`, `-`, starting with a letter or
/// digit (so never `.`, `..` or a path), at most [`MAX_SECRET_NAME`] bytes.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "secret name {name:?} must be 1-{MAX_SECRET_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

fn default_health() -> String {
    "/healthz".into()
}

/// Reply to a `WorkerCommand`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAck {
    #[serde(default = "v1")]
    pub v: u32,
    /// The command id, or `None` when the command could not even be parsed.
    pub id: Option<CommandId>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The replica as it is after the command (for `start`: state `starting`, address known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaStatus>,
    /// True when this answer was replayed for a duplicate command id.
    #[serde(default)]
    pub duplicate: bool,
}
versioned!(CommandAck);

impl CommandAck {
    pub fn error(id: Option<CommandId>, error: impl Into<String>) -> Self {
        Self {
            v: v1(),
            id,
            ok: false,
            error: Some(error.into()),
            replica: None,
            duplicate: false,
        }
    }
}

impl Validate for WorkerCommand {
    fn validate(&self) -> Result<(), String> {
        match &self.action {
            Action::Start { spec, .. } => spec.validate(),
            Action::Stop { .. } => Ok(()),
        }
    }
}

impl Validate for ReplicaSpec {
    fn validate(&self) -> Result<(), String> {
        if self.command.is_empty() && self.image.is_none() {
            return Err(
                "needs a command or an image (`command` for the process runtime, `image` for Docker)".into(),
            );
        }
        if !self.health_path.starts_with('/') {
            return Err(format!(
                "health_path {:?} must start with '/'",
                self.health_path
            ));
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("cpus must be > 0, got {c}"));
            }
        }
        if self.memory_mb == Some(0) {
            return Err("memory_mb must be > 0".into());
        }
        for (var, secret) in &self.secrets {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(format!(
                    "secrets: {var:?} is not an environment variable name"
                ));
            }
            if self.env.contains_key(var) {
                return Err(format!("{var} is set both in env and in secrets"));
            }
            check_secret_name(secret).map_err(|e| format!("secrets.{var}: {e}"))?;
        }
        Ok(())
    }
}

impl Validate for CommandAck {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
