//! Alarms: rules from a TOML file, evaluated every second against the metrics history; state
//! changes published on `acs.events.alarm.<rule>`, notifications by webhook, Slack and e-mail.
//!
//! # Layout
//! - [`rules`]: the rules file (`--alarms FILE`) checked into typed rules and channels.
//! - [`channels`]: its channels (webhook, Slack, e-mail), with their URLs, CAs and passwords.
//! - [`machine`]: one alarm (rule × target) as plain data: pending → firing → resolved,
//!   severity, repeats, escalation, ack. Pure.
//! - [`book`]: every alarm and silence; a tick over the store, a person's request. Pure.
//! - [`notify`]: the channels: JSON webhook, Slack webhook, SMTP; queues with jittered retry.
//! - [`message`]: what a notice says in each channel. Pure.
//! - [`kv`]: the JetStream KV bucket `acs_monitor`: saved alarms and silences, and the
//!   lease that makes one monitor of several the one that evaluates and notifies.
//! - [`task`]: the loop: lease, tick, save, publish, notify; `acs.monitor.alarms` requests.
//! - [`http`]: `GET /api/v1/alarms`, `POST /api/v1/alarms/{rule}/ack|silence`.

pub mod book;
pub mod channels;
pub mod http;
pub mod kv;
pub mod machine;
pub mod message;
pub mod notify;
pub mod rules;
pub mod task;

pub use task::{AlarmConfig, AlarmCounters};
