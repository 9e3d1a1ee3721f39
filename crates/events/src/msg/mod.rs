//! Message types, one module per concern. Field names are the JSON names; see `docs/EVENTS.md`.

mod alarm;
mod backends;
mod command;
mod control;
mod decision;
mod drain;
mod leader;
mod metrics;
mod monitor;
mod traffic;
mod traffic_parts;

pub use alarm::*;
pub use backends::*;
pub use command::*;
pub use control::*;
pub use decision::*;
pub use drain::*;
pub use leader::*;
pub use metrics::*;
pub use monitor::*;
pub use traffic::*;
pub use traffic_parts::*;

pub use crate::id::{CommandId, ProxyId};

pub(crate) fn v1() -> u32 {
    crate::SCHEMA_VERSION
}

/// Implements `Versioned` for types with a `v` field.
macro_rules! versioned {
    ($($t:ty),* $(,)?) => {
        $(impl crate::codec::Versioned for $t {
            fn version(&self) -> u32 { self.v }
        })*
    };
}
pub(crate) use versioned;

/// `true` when `x` is a finite, non-negative number (metrics must not carry NaN or negatives).
pub(crate) fn sane(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}
