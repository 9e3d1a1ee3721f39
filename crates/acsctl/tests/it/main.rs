//! The integration tests of this crate, one module per area, linked as one binary: the crate's
//! dependencies are linked once, not once per test file.

mod auth;
mod cli;
mod cluster;
mod common;
mod dashboard;
mod docker_e2e;
mod docker_rig;
mod e2e;
mod lifecycle;
mod load;
mod maintenance;
mod prometheus;
mod scale_in;
