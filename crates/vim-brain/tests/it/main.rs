//! The integration tests of this crate, one module per area, linked as one binary: the crate's
//! dependencies are linked once, not once per test file.

mod common;
mod duplicates;
mod leader;
mod lifecycle_plan;
mod nats;
mod pins;
mod plan;
mod plan_scale;
mod scale;
