//! `acs-sim`: simulated acs workers and proxies that speak real NATS messages, and a load
//! generator for the monitor's statistics API. The load benchmarks (bench/monitor-load.sh and
//! bench/brain-scale.sh) run it against real components.
//!
//! # Layout
//!
//! - [`schedule`]: the time wheel. N senders once per interval, spread evenly; message `k` is
//!   due at `k * interval / N`. Pure.
//! - [`fleet`]: the simulated workers (ids, replicas, addresses) and the `WorkerMetrics` /
//!   `ProxyMetrics` they send, with values that vary like a real host's. Pure, deterministic.
//! - [`publish`]: the one publisher loop over the wheel (a single task for any N), with a
//!   report line every 10 s: sent/s, publish errors, how far behind schedule.
//! - [`workers`]: `acs-sim workers` / `acs-sim proxies`: a fleet on the wheel.
//! - [`query`]: `acs-sim query`: open-loop `StatsRequest`s on `acs.monitor.stats`, latency
//!   p50/p99/max, errors, and how fresh the answered data is.
//! - [`stats`]: latency samples and percentiles. Pure.

pub mod fleet;
pub mod publish;
pub mod query;
pub mod schedule;
pub mod stats;
pub mod workers;
