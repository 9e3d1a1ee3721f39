//! Live updates from NATS: subscribe to `Subjects::backends_all()`, fold every update into the
//! [`RouteTable`](crate::RouteTable) the moment it arrives and swap in a new
//! [`Snapshot`](crate::snapshot::Snapshot); ask for a snapshot on `Subjects::backends_sync()` at
//! start (retrying with backoff until answered), after a version gap and after every
//! NATS (re)connect. Also publishes the traffic metrics every interval, and `BackendDrained` the
//! moment a draining backend has nothing in flight.
//!
//! - [`Updater`]: the synchronous part (decode, check, apply, buffer out-of-order deltas, rebuild
//!   the snapshot); unit-tested without NATS.
//! - [`run`]: the async loop around it; runs on a Pingora background service in the binary, or
//!   on any tokio runtime in tests.
//!
//! Files: `updater.rs` ([`Updater`], [`Refused`]), `nats.rs` ([`run`], [`NatsSettings`] and the
//! sync, metrics, drained and rejection tasks around it).

mod nats;
mod updater;

pub use nats::{run, NatsSettings};
pub use updater::{Refused, Updater};
