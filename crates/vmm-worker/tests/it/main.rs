//! The integration tests of this crate, one module per area, linked as one binary: the crate's
//! dependencies are linked once, not once per test file.

mod allow;
mod common;
mod docker;
mod fencing;
mod slow_runtime;
mod worker;
