//! The one error type of the CLI. Every variant reads as a sentence a user can act on.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments that clap could not catch.
    #[error("{0}")]
    Usage(String),

    #[error("cannot connect to NATS at {url}: {reason}. Is nats-server running? (`acsctl up` starts a local cluster)")]
    Connect { url: String, reason: String },

    /// Bad NATS options, an unreadable credential, or a refused connection; says what to fix.
    #[error("{0}")]
    Nats(#[from] acs_node::NatsError),

    #[error("nothing answers on {subject}: no vim-brain is running on this NATS server with prefix {prefix:?} (start one, or `acsctl up`)")]
    NoResponders { subject: String, prefix: String },

    #[error("no reply on {subject} within {timeout:?}; the brain may be busy or stuck (raise --timeout to wait longer)")]
    Timeout { subject: String, timeout: Duration },

    #[error("request on {subject} failed: {reason}")]
    Request { subject: String, reason: String },

    /// The NATS server refused this identity something (a permissions violation).
    #[error("NATS refused it: {0}. This identity may not do that; steer with the operator's credential (docs/SECURITY.md)")]
    Denied(String),

    /// The brain answered `{"ok":false,"error":...}`.
    #[error("the brain refused: {0}")]
    Refused(String),

    #[error("unreadable reply on {subject}: {reason}")]
    BadReply { subject: String, reason: String },

    #[error("cannot subscribe to {subject:?}: {reason}")]
    Subscribe { subject: String, reason: String },

    #[error(transparent)]
    Cluster(#[from] acs_cluster::ClusterError),

    #[error(transparent)]
    Load(#[from] crate::load::LoadError),

    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Process exit code: 2 for usage errors (as clap does), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Load(crate::load::LoadError::Invalid(_)) => 2,
            _ => 1,
        }
    }
}
