//! vmm-worker: one per host. Publishes host and replica metrics (the heartbeat), runs replicas
//! through a [`Runtime`](runtime::Runtime) on command, health-checks them and reports their state
//! changes at once.
//!
//! # Layout
//!
//! - [`config`]: [`Config`], built from flags by `main.rs`.
//! - [`worker`]: [`run`] / [`run_with_runtime`], the loop that owns the replica table and talks
//!   to NATS (commands in, metrics / replica events / acks out).
//! - [`commands`]: decoding, idempotency by command id, capacity, the replica table. Pure apart
//!   from launching through the runtime; unit-tested with the fake runtime.
//! - [`health`]: HTTP health checks (`starting` → `healthy` ⇄ `unhealthy`).
//! - [`metrics`]: sysinfo sampling of the host and of replica pids.
//! - [`runtime`]: the `Runtime` trait and its implementations: [`runtime::process`] (default),
//!   [`runtime::docker`] (containers), [`runtime::fake`] (tests).
//!
//! Subjects (prefix `acs`): publishes `acs.metrics.worker.<id>` every interval,
//! `acs.events.replica.<id>` on every replica state change, `acs.events.error.vmm-worker` for
//! refused messages nobody waits on; answers requests on `acs.cmd.worker.<id>`.

pub mod commands;
pub mod config;
pub mod health;
pub mod metrics;
pub mod runtime;
pub mod worker;

pub use config::Config;
pub use worker::{run, run_with_runtime, Error};
