//! vim-brain: decides how many replicas each service needs and where they run.
//!
//! # Layout
//!
//! - [`config`]: the services file (TOML), validated into [`Services`]; `--check` uses it.
//! - [`world`]: the [`World`], folded from events by a synchronous `apply`, its only door
//!   (reports, command results, manual pins, maintenance, replaces, the brain's own NATS link,
//!   sent plans). Each service's state is grouped by concern (`world/service.rs`: scale,
//!   routing, status, crash history, moves); `world/fold.rs` folds reports and answers in,
//!   `world/sent.rs` a sent plan's [`world::Bookkeeping`]; `world/crash.rs` keeps the
//!   crash-loop counts; `world/digest.rs` the route hashes and backend-set digests;
//!   `world/liveness.rs` the link, the full-disruption rule and duplicate worker ids. The world
//!   imports nothing from the plan.
//! - [`policy`]: [`policy::SIGNALS`], the one list of scaling signals; target tracking,
//!   stabilisation windows, step limits. Pure.
//! - [`placement`]: which worker gets a replica, which replica goes first. Pure.
//! - [`plan`](mod@plan): `plan(&World, &Services, now) -> Plan`, the whole decision, one file
//!   per step (`health`, `members`, `lost`, `desired`, `scale_out`, `rebalance`, `maintenance`,
//!   `scale_in`, `backends`, `withdraw`), run in order for each service by `plan/service.rs`,
//!   with `backoff` (the crash-loop hold) and `lifecycle` (each service's state); `plan/output.rs`
//!   builds what it emits. Pure: no clock, no I/O; tested with plain data (each step's unit
//!   tests, and `tests/it/plan.rs`).
//! - [`control`]: answers to `acs.cmd.scale`, `acs.cmd.maintenance`, `acs.cmd.replica`,
//!   `acs.status` (`control/status.rs`: whole while small, else a summary, with pages of one
//!   service's replicas or of the workers on request) and `acs.sync.backends` (within the
//!   payload limit; a service cut short is republished split). Pure over a `&World`: each
//!   returns its reply and the events to fold in.
//! - [`reconciler`]: the thin loop that does the I/O: it takes one `Input` at a time from its
//!   `Inbox` (tick, deferred plan, subscriptions, command results, elections), dispatches it
//!   once, and folds every event into the world in one place (`Brain::fold`); before each plan
//!   it folds in what is already queued. `reconciler/inbox.rs`: what the loop waits on, each
//!   subscription resubscribed with backoff if its stream ends; `pass.rs`: one plan-and-send
//!   pass and a new leader's take-over; `reports.rs`: workers' and proxies' reports, refusals
//!   counted; `requests.rs`: the requests only the leader answers; `send.rs`: publishing a
//!   plan; `pace.rs`: whether the loop keeps up (each pass's latency, inbox lag and backlog,
//!   throttled warnings).
//! - [`prom`]: the Prometheus metrics behind `--metrics-listen` (`GET /metrics`, served by
//!   `acs_node::metrics`): decisions, placements, plan duration, decision loop latency, inbox lag
//!   and backlog, largest message published, leader and term, refusals. The same server (and
//!   `--health-listen`) answers `/healthz` and `/readyz`: ready while NATS is connected and the
//!   reconciler's tick turns.
//! - [`lease`]: many brains, one leader. The lease's driver task and the JetStream KV bucket
//!   (`acs_brain`: key `leader`, `pin.<service>`, `maintenance`), which is what outlives a
//!   brain; `lease/machine.rs` is the lease as a pure state machine (renewal, expiry on the
//!   standby's own clock, step-down before a standby can take over, CAS loss). Only a brain
//!   inside its acting window plans, sends and answers; every command, decision and backend
//!   version carries its term.
//! - `fleet` (feature `fleet`, dev and bench builds only): a plain-data fleet of any size for
//!   the scale test and `benches/` (criterion: the plan at 10,000 workers, the lease machine).

pub mod config;
pub mod control;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod lease;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod prom;
pub mod reconciler;
pub mod world;

pub use config::{ConfigError, Policy, ServiceConfig, Services};
pub use plan::{plan, Plan};
pub use reconciler::{run, Config, Error};
pub use world::{Event, Millis, Now, Settings, World};
