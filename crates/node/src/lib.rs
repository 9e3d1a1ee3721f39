//! How an acs process joins the cluster. Every binary (worker, brain, proxy, acsctl, and any
//! later one) connects, logs and stops the same way through this crate, so a change here (a
//! new credential type, a TLS option) lands everywhere at once.
//!
//! # Layout
//!
//! - [`nats`]: [`NatsArgs`] (the `--nats*` flags and `NATS_*` environment variables every
//!   binary takes), validated into [`NatsOptions`]: server list, one authentication method
//!   (creds file, nkey seed file, user and password, token), TLS (CA, client certificate).
//!   `connect` for long-running processes (retries, logs connection events with a hint of what
//!   to fix), `connect_once` for one-shot commands where a user waits; [`Refusals`]
//!   (`nats/refusals.rs`), the server's errors on a one-shot connection, waited on beside a
//!   request.
//! - [`logging`]: [`init_tracing`], the `RUST_LOG` filter on stderr, with Pingora's `log`
//!   records bridged in; [`LogArgs`], the daemons' `--log-format text|json`.
//! - [`shutdown`]: [`shutdown_signal`], SIGINT or SIGTERM, never a panic.
//! - [`duration`]: [`parse_duration`] (humantime: `1.5s`, `500ms`, `2m`, `1h 30m`) for every
//!   duration flag and config field (a TOML number of seconds still read, with a warning).
//! - [`legacy`]: the deprecated `--*-ms`/`--*-s` flags and `*_MS`/`*_S` variables, rewritten
//!   into the duration flags that replaced them before clap parses, with a warning each.
//! - [`clock`]: [`unix_ms`], the one wall-clock read for timestamps that leave a process.
//! - [`stats`]: [`percentile`] (nearest rank), the one percentile of every latency report.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format: [`MetricsArgs`] (the
//!   `--metrics-*` flags, off by default; a listen address needs a bearer token file) and
//!   [`metrics::spawn`], which serves a `prometheus_client` registry (re-exported); tests in
//!   `metrics/tests.rs`.
//! - [`health`]: `/healthz` and `/readyz`: [`Readiness`] (NATS connected, the loop turning,
//!   what must be loaded), served by the metrics server ([`metrics::spawn_with_health`]) or
//!   alone on `--health-listen` ([`HealthArgs`]); `--healthcheck URL` ([`health::probe`]) for
//!   images without a shell.

pub mod clock;
pub mod duration;
pub mod health;
pub mod legacy;
pub mod logging;
pub mod metrics;
pub mod nats;
pub mod shutdown;
pub mod stats;

pub use clock::unix_ms;
pub use duration::parse_duration;
pub use health::{HealthArgs, Readiness, ReadyWhen};
pub use logging::{init_tracing, LogArgs, LogFormat};
pub use metrics::{MetricsArgs, MetricsAuth, MetricsListen};
pub use nats::{Auth, NatsArgs, NatsError, NatsOptions, Refusals, Tls};
pub use shutdown::shutdown_signal;
pub use stats::percentile;
