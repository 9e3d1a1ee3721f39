//! The Auto Cloud Scaler contract: what travels over NATS, and under which subject.
//!
//! # Layout
//!
//! - [`subjects`]: every subject name, built from one configurable prefix (default `acs`).
//! - [`id`]: validated identifiers (`WorkerId`, `ServiceName`, `ReplicaId`, ...). Ids become
//!   subject tokens, so `.`, `*`, `>` and whitespace are refused at the edge.
//! - [`msg`]: the typed messages, one module per concern (metrics, commands, backends, traffic,
//!   decisions, control, drains). Every message carries a schema version `v`. Messages that can
//!   outgrow [`MAX_PAYLOAD`] are split and put back together here too: backend snapshots
//!   ([`split_change`]) and proxy reports ([`split_metrics`], [`MetricsAssembler`]).
//! - [`codec`]: `encode` / `decode` with payload-size bounds and semantic validation; every
//!   subscriber decodes through it so that bad input always yields a readable [`DecodeError`].
//!
//! This crate does no I/O: no tokio, no NATS client (the `kube-core` of the project). Components
//! put their own transport around it.

pub mod codec;
pub mod id;
pub mod msg;
pub mod subjects;

pub use codec::{decode, decode_with_limit, encode, DecodeError, Validate, MAX_PAYLOAD};
pub use id::{IdError, ReplicaId, ServiceName, WorkerId};
pub use msg::*;
pub use subjects::{check_sender, Subjects};

/// The schema version this build writes. Readers accept any version `<=` this one; fields added
/// in later versions carry `#[serde(default)]` so older payloads still parse.
pub const SCHEMA_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch. Messages carry wall-clock timestamps as plain integers so
/// that they read well in `nats sub` output and need no time library.
pub type UnixMs = u64;
