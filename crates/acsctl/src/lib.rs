//! `acsctl`: the Auto Cloud Scaler command line, and the local cluster launcher (`acsctl up`).
//!
//! # Layout
//!
//! - [`cli`]: the clap definitions (every flag also from an environment variable) and the small
//!   parsers behind them (durations like `30s`, scale targets like `3` or `auto`).
//! - [`client`]: NATS connection and the request/reply helpers (`status`, `scale`) that turn
//!   "no responders", timeouts and `{"ok":false}` replies into readable [`Error`]s.
//! - [`status`]: renders a `StatusReply` as tables (pure).
//! - [`maintenance`]: `cordon`, `uncordon`, `drain [--wait]` on `acs.cmd.maintenance`.
//! - [`scale`]: builds the `ScaleRequest` and renders the `ScaleReply` (pure).
//! - [`replace`]: `replace REPLICA [--wait]` on `acs.cmd.replica`.
//! - [`stats`], [`alarms`]: `acs.monitor.stats` and `acs.monitor.alarms` requests to acs-monitor,
//!   rendered as tables (pure renderers); [`history`]: `acs.monitor.history`, one line per kept event.
//! - [`top`]: the live hosts and services table (`render` is pure; the loop gathers status and
//!   metrics).
//! - [`watch`]: the subscription loop, a readable `nats sub 'acs.>'`; `watch/describe.rs`:
//!   `describe(subject, payload)`, one readable line per NATS message (pure), with one formatter
//!   per message type in `watch/lines.rs`.
//! - [`load`]: a small open-loop HTTP load generator (hyper client) with per-second reports:
//!   options in `load/mod.rs`, the request schedule in `load/generator.rs`, the counts and
//!   latency histogram in `load/report.rs`.
//! - [`auth`]: the `acsctl auth` command (init, add, revoke, list) over `acs-auth`, which keeps
//!   an nkey per identity, the least-privilege `auth.conf` a nats-server includes, and a local
//!   CA with server and client certificates.
//! - [`up`]: the `acsctl up` command: an `acs_cluster::LocalCluster` (nats-server, the monitor,
//!   vim-brain, N vmm-workers and the proxy as child processes) in the foreground until Ctrl-C.
//!
//! `main.rs` only parses flags, sets up tracing and calls [`run`].

pub mod alarms;
pub mod auth;
pub mod cli;
pub mod client;
pub mod error;
pub mod history;
pub mod load;
pub mod maintenance;
pub mod replace;
pub mod scale;
pub mod stats;
pub mod status;
pub mod top;
pub mod up;
pub mod watch;

use std::future::Future;

pub use error::{Error, Result};

use cli::{Cli, Command};

/// Runs one `acsctl` command. `shutdown` resolves on Ctrl-C / SIGTERM; long-running commands
/// (`watch`, `load`, `up`) stop cleanly when it does, one-shot commands ignore it.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let subjects = acs_events::Subjects::new(cli.prefix.clone()).map_err(Error::Usage)?;
    let nats = || client::candidates(&cli.nats, &subjects, "acsctl");
    match cli.command {
        Command::Status {
            json,
            service,
            workers,
            offset,
            limit,
        } => {
            let (nc, _, refusals) = client::connect_any(&nats()?, cli.timeout).await?;
            let req = acs_events::StatusRequest {
                service,
                workers,
                offset,
                limit,
                ..Default::default()
            };
            if json {
                let raw = client::unless_refused(
                    &refusals,
                    client::status_raw(&nc, &subjects, &req, cli.timeout),
                )
                .await?;
                println!("{}", serde_json::to_string_pretty(&raw).unwrap_or_default());
            } else {
                let reply = client::unless_refused(
                    &refusals,
                    client::status_page(&nc, &subjects, &req, cli.timeout),
                )
                .await?;
                print!("{}", status::render(&reply));
            }
            Ok(())
        }
        Command::Scale { service, target } => {
            let (nc, _, refusals) = client::connect_any(&nats()?, cli.timeout).await?;
            let req = scale::request(service, target);
            let reply =
                client::unless_refused(&refusals, client::scale(&nc, &subjects, &req, cli.timeout))
                    .await?;
            println!("{}", scale::render(&req, &reply));
            Ok(())
        }
        Command::Cordon { worker } => {
            maintenance::run(
                &nats()?,
                cli.timeout,
                &subjects,
                worker,
                acs_events::MaintenanceAction::Cordon,
                false,
            )
            .await
        }
        Command::Uncordon { worker } => {
            maintenance::run(
                &nats()?,
                cli.timeout,
                &subjects,
                worker,
                acs_events::MaintenanceAction::Uncordon,
                false,
            )
            .await
        }
        Command::Drain { worker, wait } => {
            maintenance::run(
                &nats()?,
                cli.timeout,
                &subjects,
                worker,
                acs_events::MaintenanceAction::Drain,
                wait,
            )
            .await
        }
        Command::Replace { replica, wait } => {
            replace::run(&nats()?, cli.timeout, &subjects, replica, wait).await
        }
        Command::Stats(a) => {
            let q = stats::StatsQuery {
                scope: a.scope,
                id: a.id,
                metric: a.metric,
                last: a.last,
                from_ms: a.from,
                to_ms: a.to,
                step: a.step,
                hourly: a.hourly,
            };
            stats::run(&nats()?, cli.timeout, &subjects, q, a.json).await
        }
        Command::Alarms { command, json } => {
            use acs_events::AlarmAction as A;
            use cli::AlarmsCommand as C;
            let (action, t) = match command {
                None | Some(C::List) => (A::List, None),
                Some(C::Ack(t)) => (A::Ack, Some(t)),
                Some(C::Unack(t)) => (A::Unack, Some(t)),
                Some(C::Silence(t)) => (A::Silence, Some(t)),
                Some(C::Unsilence(t)) => (A::Unsilence, Some(t)),
            };
            let args = match t {
                None => alarms::AlarmArgs {
                    action,
                    rule: None,
                    id: None,
                    for_: None,
                    by: None,
                    comment: None,
                },
                Some(t) => alarms::AlarmArgs {
                    action,
                    rule: Some(t.rule),
                    id: t.id,
                    for_: t.for_,
                    by: t.by,
                    comment: t.comment,
                },
            };
            alarms::run(&nats()?, cli.timeout, &subjects, args, json).await
        }
        Command::History {
            kind,
            id,
            last,
            from,
            to,
            limit,
            json,
        } => {
            let args = history::HistoryArgs {
                kind,
                id,
                last,
                from_ms: from,
                to_ms: to,
                limit,
            };
            history::run(&nats()?, cli.timeout, &subjects, args, json).await
        }
        Command::Top { interval, once } => {
            top::run(&nats()?, cli.timeout, &subjects, interval, once, shutdown).await
        }
        Command::Watch {
            subject,
            json,
            no_metrics,
        } => {
            let opts = watch::WatchOptions {
                subject: subject.unwrap_or_else(|| subjects.all()),
                json,
                no_metrics,
            };
            // Pick the cluster that admits us, then stay connected through outages.
            let candidates = nats()?;
            let chosen = match client::connect_any(&candidates, cli.timeout).await {
                Ok((probe, chosen, _)) => {
                    drop(probe);
                    chosen
                }
                // Nothing answers yet: wait for the first candidate's server to come up.
                Err(_) => candidates[0].clone(),
            };
            let nc = client::connect_background(&chosen.with_name("acsctl watch")).await?;
            watch::run(&nc, &subjects, &opts, shutdown).await
        }
        Command::Load(args) => {
            let json = args.json;
            let opts = args.into_options();
            let report = load::run(&opts, shutdown, |tick| {
                if json {
                    println!("{}", tick.to_json());
                } else {
                    println!("{tick}");
                }
            })
            .await?;
            if json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
                println!("{}", report.latency_table());
            }
            if report.ok == 0 && report.sent > 0 {
                return Err(Error::Failed("no request succeeded".into()));
            }
            Ok(())
        }
        Command::Auth(args) => auth::run(args, subjects),
        Command::Up(args) => {
            let opts = args.into_options(cli.prefix.clone());
            up::run(opts, shutdown).await
        }
    }
}
