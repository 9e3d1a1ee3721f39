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
//!   to fix), `connect_once` for one-shot commands where a user waits.
//! - [`logging`]: [`init_tracing`], the `RUST_LOG` filter on stderr, with Pingora's `log`
//!   records bridged in.
//! - [`shutdown`]: [`shutdown_signal`], SIGINT or SIGTERM, never a panic.
//! - [`duration`]: [`parse_duration`] for every duration flag (`500ms`, `30s`, `2m`, `1h`).
//! - [`metrics`]: `GET /metrics` in the Prometheus text format: [`MetricsArgs`] (the
//!   `--metrics-*` flags, off by default; a listen address needs a bearer token file) and
//!   [`metrics::spawn`], which serves a `prometheus_client` registry (re-exported).

pub mod duration;
pub mod logging;
pub mod metrics;
pub mod nats;
pub mod shutdown;

pub use duration::parse_duration;
pub use logging::init_tracing;
pub use metrics::{MetricsArgs, MetricsAuth, MetricsListen};
pub use nats::{Auth, NatsArgs, NatsError, NatsOptions, Refusals, Tls};
pub use shutdown::shutdown_signal;
