//! `acs-auth`: who may connect to a cluster's NATS server, and what each one may do.
//!
//! Every component connects as its own NATS user, authenticated by an nkey: the brain, each
//! worker, each proxy, an operator, a read-only viewer and the monitor. The server config
//! `include`s the generated `auth.conf`, which gives each user only the subjects its role needs
//! ([`permissions`], every subject from [`acs_events::Subjects`]); with TLS, a local CA signs
//! the server's certificate and one client certificate per identity (mutual TLS). The
//! `acsctl auth` command and the local cluster (`acs-cluster`) use it; so do tests that run a
//! server with auth on.
//!
//! # Layout
//!
//! - [`role`]: [`Role`], [`Permissions`] and [`permissions`], the permission table (pure), and
//!   each role's own inbox prefix ([`Role::inbox_prefix`]).
//! - [`conf`]: renders `auth.conf` and `tls.conf` (pure).
//! - [`store`]: [`AuthDir`], the folder of seeds: `init`, `add`, `revoke`, `identities`, and how
//!   a process connects as a role ([`AuthDir::nats_options`], [`AuthDir::connect_env`]).
//! - [`tls`]: the local CA and certificates (rcgen).
//! - `lib.rs`: [`AuthError`].

pub mod conf;
pub mod role;
pub mod store;
pub mod tls;

use std::path::{Path, PathBuf};

pub use conf::{render_auth_conf, render_tls_conf, User};
pub use role::{permissions, Permissions, Role};
pub use store::{AuthDir, Changes, Identity, InitOptions, DEFAULT_DIR, DEFAULT_TLS_HOSTS};

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a usable nkey seed ({reason}); remove the file and run `acsctl auth init` (or `add`) to make a new one", path.display())]
    Seed { path: PathBuf, reason: String },
    #[error("{}: cannot make the certificate: {reason}", path.display())]
    Tls { path: PathBuf, reason: String },
    /// The directory is not in a state we can work with; the message says what to do.
    #[error("{0}")]
    Invalid(String),
}

impl AuthError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        AuthError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn seed(path: &Path, reason: impl std::fmt::Display) -> Self {
        AuthError::Seed {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
    fn tls(path: &Path, reason: impl std::fmt::Display) -> Self {
        AuthError::Tls {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
