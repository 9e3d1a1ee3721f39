//! vmm-worker: one per host. Publishes host and replica metrics (the heartbeat), runs replicas
//! through a [`Runtime`](runtime::Runtime) on command, health-checks them and reports their state
//! changes at once.
//!
//! # Layout
//!
//! - [`config`]: [`Config`], built from flags by `main.rs`.
//! - [`worker`]: [`run`] / [`run_with_runtime`], the loop that owns the replica table and talks
//!   to NATS (commands in, replica events / acks out) without waiting for the runtime;
//!   `worker/handle.rs` reacts to commands, health reports and exits, `worker/starts.rs` runs
//!   starts in the background (bounded, with deadlines), `worker/heartbeat.rs` is the metrics
//!   task (reads a snapshot of the table), `worker/publish.rs` sends through a queue.
//! - [`commands`]: decoding, idempotency by command id, staleness (`issued_ms`), capacity
//!   (starts in flight included); pure: [`commands::Commands::decide`] answers or hands back a
//!   launch, `commands/launch.rs` turns its result into the answer.
//! - [`replicas`]: the replica table ([`replicas::Replica`], [`replicas::Replicas`]) and how many
//!   slots it takes.
//! - [`policy`]: what this host allows ([`policy::Policy`]: `--allow-image`, `--allow-command`,
//!   `--allow-cap`, `--secrets-dir`, `--policy FILE`), checked by [`commands`] before any runtime
//!   call; `policy/secrets.rs` reads secrets by name.
//! - [`spec`]: what a `ReplicaSpec` means for any runtime: placeholders in the command, the
//!   replica's environment, the environment variables refused, the spec without secret values.
//! - [`clock`]: [`clock::unix_now_ms`], the wall clock for timestamps that leave the worker.
//! - [`health`]: HTTP health checks (`starting` → `healthy` ⇄ `unhealthy`).
//! - [`metrics`]: sampling of the host (sysinfo CPU/memory, `/proc/net/dev`, `/proc/diskstats`,
//!   disk space) and of the replicas' process trees only (never every process on the host).
//! - [`prom`]: the Prometheus metrics behind `--metrics-listen` (`GET /metrics`, served by
//!   `acs_node::metrics`): the replica table read at scrape time, command / start / runtime
//!   error counters. The same server (and `--health-listen`) answers `/healthz` and `/readyz`:
//!   ready while NATS is connected and the runtime answers the heartbeat's ping.
//! - [`runtime`]: the `Runtime` trait and its implementations: [`runtime::process`] (default;
//!   state files and `/proc` checks in its submodules), [`runtime::docker`] (containers; the
//!   create body is a pure function in `docker/body.rs`), [`runtime::fake`] (tests).
//!
//! Subjects (prefix `acs`): publishes `acs.metrics.worker.<id>` every interval,
//! `acs.events.replica.<id>` on every replica state change, `acs.events.error.vmm-worker` for
//! refused messages nobody waits on and for starts the policy refused; answers requests on
//! `acs.cmd.worker.<id>`.

pub mod clock;
pub mod commands;
pub mod config;
pub mod health;
pub mod metrics;
pub mod policy;
pub mod prom;
pub mod replicas;
pub mod runtime;
pub mod spec;
pub mod worker;

pub use config::Config;
pub use worker::{run, run_with_runtime, Error};
