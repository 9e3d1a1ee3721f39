//! The integration tests of this crate, one module per area, linked as one binary: the crate's
//! dependencies are linked once, not once per test file.

mod harness;
mod proxy;
