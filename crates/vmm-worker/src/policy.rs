//! What this worker's host allows it to run, checked before any runtime call: the worker is the
//! last line of defence when a credential for its command subject leaks.
//!
//! - Docker: `spec.image` must match an `--allow-image` entry (exact `repo:tag`, or a prefix
//!   ending in `*`, like `acs/demo-web:*`).
//! - Process: `spec.command[0]`, resolved through `PATH` like the runtime does and made
//!   canonical (symlinks and `..` followed), must be the canonical path of an `--allow-command`
//!   entry. The spec handed to the runtime names that canonical path, so what runs is what was
//!   checked.
//! - Both: environment variables that change how programs load or run are refused
//!   ([`crate::spec::check_env_name`]), and `spec.secrets` are read from `--secrets-dir`
//!   ([`secrets`]) into the environment.
//!
//! Secure by default: a runtime with an empty allow-list runs nothing. [`Policy::admit`] is the
//! one entry point; [`PolicyFile`] is the `--policy FILE` format.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use acs_events::{ReplicaSpec, RuntimeKind};
use serde::Deserialize;

use crate::runtime::process::resolve_program;
use crate::spec::check_env;

pub mod secrets;

/// Linux capabilities `--allow-cap` accepts (without the `CAP_` prefix).
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// The allow-lists and where secrets are. `Default` allows nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Docker images: exact references, or prefixes ending in `*`.
    pub allow_images: Vec<String>,
    /// Process runtime: absolute program paths (compared after following symlinks).
    pub allow_commands: Vec<PathBuf>,
    /// Capabilities Docker replicas keep (all others are dropped), upper case without `CAP_`.
    pub allow_caps: Vec<String>,
    /// `<dir>/<secret name>` holds a secret's value.
    pub secrets_dir: Option<PathBuf>,
}

/// The `--policy FILE` format (TOML); its lists add to the flags', the flag's `secrets_dir` wins.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub allow_images: Vec<String>,
    #[serde(default)]
    pub allow_commands: Vec<PathBuf>,
    #[serde(default)]
    pub allow_caps: Vec<String>,
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
}

impl PolicyFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Why a start was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not allowed on this host: image, program or environment variable.
    #[error("{0}")]
    Forbidden(String),
    /// A secret the spec names is missing or unreadable here.
    #[error("{0}")]
    Secret(String),
    /// Not a policy matter (for example a program that does not exist): a plain error.
    #[error("{0}")]
    Invalid(String),
}

impl Refused {
    /// The `Rejection` kind, when the refusal is counted and published (not for [`Refused::Invalid`]).
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Refused::Forbidden(_) => Some("forbidden"),
            Refused::Secret(_) => Some("secret"),
            Refused::Invalid(_) => None,
        }
    }
}

impl Policy {
    /// Merges `file` into these settings (lists appended, `secrets_dir` kept when set).
    pub fn merge(&mut self, file: PolicyFile) {
        self.allow_images.extend(file.allow_images);
        self.allow_commands.extend(file.allow_commands);
        self.allow_caps.extend(file.allow_caps);
        if self.secrets_dir.is_none() {
            self.secrets_dir = file.secrets_dir;
        }
    }

    /// Checks the entries: image patterns, absolute command paths, known capabilities.
    pub fn validate(&self) -> Result<(), String> {
        for i in &self.allow_images {
            let star = i.find('*');
            if i.is_empty()
                || i.chars().any(char::is_whitespace)
                || star.is_some_and(|s| s + 1 != i.len())
            {
                return Err(format!(
                    "--allow-image {i:?}: an image reference, or a prefix ending in '*'"
                ));
            }
        }
        for c in &self.allow_commands {
            if !c.is_absolute() {
                return Err(format!(
                    "--allow-command {}: must be an absolute path",
                    c.display()
                ));
            }
        }
        for cap in &self.allow_caps {
            if cap_name(cap).is_none() {
                return Err(format!(
                    "--allow-cap {cap:?}: not a Linux capability (e.g. NET_BIND_SERVICE)"
                ));
            }
        }
        Ok(())
    }

    /// The capabilities Docker replicas keep, upper case without `CAP_`, sorted, unknown ones
    /// left out ([`Policy::validate`] refuses them).
    pub fn docker_caps(&self) -> Vec<String> {
        let mut caps: Vec<String> = self.allow_caps.iter().filter_map(|c| cap_name(c)).collect();
        caps.sort();
        caps.dedup();
        caps
    }

    /// The spec to hand to the `kind` runtime, or why it may not run here. Process runtime: the
    /// program resolved through `path` (the worker's `PATH`) to its canonical path. Both: the
    /// secrets' values added to `env`.
    pub fn admit(
        &self,
        kind: RuntimeKind,
        mut spec: ReplicaSpec,
        path: Option<&OsStr>,
    ) -> Result<ReplicaSpec, Refused> {
        match kind {
            RuntimeKind::Docker => self.check_image(&spec)?,
            RuntimeKind::Process => {
                if let Some(program) = spec.command.first().filter(|p| !p.is_empty()) {
                    let checked = self.check_program(program, path)?;
                    spec.command[0] = checked.to_string_lossy().into_owned();
                }
            }
        }
        check_env(&spec).map_err(Refused::Forbidden)?;
        let values = secrets::resolve(self.secrets_dir.as_deref(), &spec.secrets)?;
        spec.env.extend(values);
        Ok(spec)
    }

    /// A spec without an image passes: the runtime refuses it with its own error.
    fn check_image(&self, spec: &ReplicaSpec) -> Result<(), Refused> {
        let Some(image) = spec.image.as_deref().filter(|i| !i.is_empty()) else {
            return Ok(());
        };
        if self.allow_images.iter().any(|p| image_matches(p, image)) {
            return Ok(());
        }
        Err(Refused::Forbidden(if self.allow_images.is_empty() {
            format!("image {image:?} is not allowed: this worker allows no images (set --allow-image or ACS_ALLOW_IMAGES)")
        } else {
            format!(
                "image {image:?} is not on this worker's allow-list (--allow-image {})",
                self.allow_images.join(",")
            )
        }))
    }

    /// The canonical path of `program` when it is allowed.
    fn check_program(&self, program: &str, path: Option<&OsStr>) -> Result<PathBuf, Refused> {
        let resolved = resolve_program(program, path).map_err(Refused::Invalid)?;
        let canonical = fs::canonicalize(&resolved)
            .map_err(|e| Refused::Invalid(format!("{}: {e}", resolved.display())))?;
        // Entries are made canonical at every check, so a program installed (or moved behind a
        // symlink) after the worker started is judged by what it is now.
        let allowed = self
            .allow_commands
            .iter()
            .any(|c| fs::canonicalize(c).is_ok_and(|c| c == canonical));
        if allowed {
            return Ok(canonical);
        }
        let shown = if canonical.as_os_str() == OsStr::new(program) {
            format!("{program:?}")
        } else {
            format!("{program:?} ({})", canonical.display())
        };
        Err(Refused::Forbidden(if self.allow_commands.is_empty() {
            format!("command {shown} is not allowed: this worker allows no commands (set --allow-command or ACS_ALLOW_COMMANDS)")
        } else {
            let list: Vec<String> = self
                .allow_commands
                .iter()
                .map(|c| c.display().to_string())
                .collect();
            format!(
                "command {shown} is not on this worker's allow-list (--allow-command {})",
                list.join(",")
            )
        }))
    }
}

/// `cap_net_raw`, `CAP_NET_RAW` and `net_raw` are `NET_RAW`; `None` for an unknown capability.
fn cap_name(cap: &str) -> Option<String> {
    let upper = cap.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.contains(&name).then(|| name.to_string())
}

/// `pattern` is an exact reference, or a prefix when it ends in `*`.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => image.starts_with(prefix),
        None => pattern == image,
    }
}

#[cfg(test)]
mod tests;
