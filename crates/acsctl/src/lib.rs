//! `acsctl`: the Auto Cloud Scaler command line, and the local cluster launcher (`acsctl up`).
//!
//! # Layout
//!
//! - [`cli`]: the clap definitions (every flag also from an environment variable) and the small
//!   parsers behind them (scale targets like `3` or `auto`); `acsctl completions` comes from
//!   them through `clap_complete` ([`completions`]); its tests in `cli_tests.rs`.
//! - [`output`]: `-o table|wide|json` on every command that prints, the one table style
//!   (`comfy-table`, aligned by display width), JSON documents, and `NO_COLOR`.
//! - [`clock`]: durations (`30s`, `7d`), `--from/--to` as RFC 3339, local time, unix ms or
//!   `-2h` / `2h ago`, and dates in the system's time zone (`jiff`).
//! - [`client`]: NATS connection and the request/reply helpers (`status`, `scale`) that turn
//!   "no responders", timeouts and `{"ok":false}` replies into readable [`Error`]s.
//! - [`status`]: renders a `StatusReply` as tables, `-o wide` with more columns (pure).
//! - [`maintenance`]: `cordon`, `uncordon`, `drain [--wait]` on `acs.cmd.maintenance`.
//! - [`scale`]: builds the `ScaleRequest` and renders the `ScaleReply` (pure).
//! - [`replace`]: `replace REPLICA [--wait]` on `acs.cmd.replica`.
//! - [`wait`]: what `drain --wait` and `replace --wait` share: the worker's own status page or
//!   the service's pages (so a summarised status still works), `blocked` decisions, `--timeout`.
//! - [`stats`], [`alarms`]: `acs.monitor.stats` and `acs.monitor.alarms` requests to acs-monitor,
//!   rendered as tables (pure renderers); [`history`]: `acs.monitor.history`, one line per kept
//!   event with its local date and time.
//! - [`top`]: live hosts and services: `top/frame.rs` builds a frame from plain data (pure),
//!   `top/tui.rs` draws it full-screen with `ratatui` on a terminal, the loop in `top/mod.rs`
//!   gathers status and metrics and prints plain frames when stdout is not a terminal.
//! - [`watch`]: the subscription loop, a readable `nats sub 'acs.>'`; `watch/describe.rs`:
//!   `describe(subject, payload)`, one readable line per NATS message (pure), with one formatter
//!   per message type in `watch/lines.rs`.
//! - [`load`]: a small open-loop HTTP load generator (hyper client) with per-second reports:
//!   options and the command in `load/mod.rs`, the request schedule in `load/generator.rs`, the
//!   counts and the `hdrhistogram` of latency in `load/report.rs`.
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
pub mod clock;
pub mod error;
pub mod history;
pub mod load;
pub mod maintenance;
pub mod output;
pub mod replace;
pub mod scale;
pub mod stats;
pub mod status;
pub mod top;
pub mod up;
pub mod wait;
pub mod watch;

use std::future::Future;

pub use error::{Error, Result};

use cli::{Cli, Command};
use output::Format;

/// Runs one `acsctl` command. `shutdown` resolves on Ctrl-C / SIGTERM; long-running commands
/// (`watch`, `load`, `top`, `up`) stop cleanly when it does, one-shot commands ignore it.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let subjects = acs_events::Subjects::new(cli.prefix.clone()).map_err(Error::Usage)?;
    let nats = || client::candidates(&cli.nats, &subjects, "acsctl");
    let timeout = cli.reply_timeout();
    let wait_timeout = cli.wait_timeout();
    match cli.command {
        Command::Top {
            interval,
            once,
            output,
        } => {
            let args = top::TopArgs {
                interval,
                once,
                format: output.format(),
            };
            top::run(&nats()?, timeout, &subjects, args, shutdown).await
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
            watch(&nats()?, timeout, &subjects, &opts, shutdown).await
        }
        Command::Load(args) => load::run_command(args, shutdown).await,
        Command::Auth(args) => auth::run(args, subjects),
        Command::Up(args) => {
            let opts = args.into_options(cli.prefix.clone());
            up::run(opts, shutdown).await
        }
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout());
            Ok(())
        }
        command => {
            let ask = Ask {
                candidates: nats()?,
                timeout,
                wait_timeout,
                subjects: &subjects,
            };
            ask.run(command).await
        }
    }
}

/// What a one-shot command needs: whom to ask, how long to wait for a reply and for `--wait`.
struct Ask<'a> {
    candidates: Vec<acs_node::NatsOptions>,
    timeout: std::time::Duration,
    wait_timeout: std::time::Duration,
    subjects: &'a acs_events::Subjects,
}

impl Ask<'_> {
    /// The one-shot commands: one request (and, with `--wait`, polls), printed in `-o` format.
    async fn run(self, command: Command) -> Result<()> {
        use acs_events::MaintenanceAction as M;
        let (c, t, s) = (&self.candidates[..], self.timeout, self.subjects);
        let maintain = |worker, action, wait: bool, output: output::OutputArgs| {
            let wait = wait.then_some(self.wait_timeout);
            let format = output.format();
            maintenance::MaintenanceArgs {
                worker,
                action,
                wait,
                format,
            }
        };
        match command {
            Command::Status {
                output,
                service,
                workers,
                offset,
                limit,
            } => {
                let req = acs_events::StatusRequest {
                    service,
                    workers,
                    offset,
                    limit,
                    ..Default::default()
                };
                status(c, t, s, &req, output.format()).await
            }
            Command::Scale {
                service,
                target,
                output,
            } => scale(c, t, s, scale::request(service, target), output.format()).await,
            Command::Cordon { worker, output } => {
                maintenance::run(c, t, s, maintain(worker, M::Cordon, false, output)).await
            }
            Command::Uncordon { worker, output } => {
                maintenance::run(c, t, s, maintain(worker, M::Uncordon, false, output)).await
            }
            Command::Drain {
                worker,
                wait,
                output,
            } => maintenance::run(c, t, s, maintain(worker, M::Drain, wait, output)).await,
            Command::Replace {
                replica,
                wait,
                output,
            } => {
                let wait = wait.then_some(self.wait_timeout);
                replace::run(c, t, s, replica, wait, output.format()).await
            }
            Command::Stats(a) => {
                let format = a.output.format();
                stats::run(c, t, s, stats::StatsQuery::from(a), format).await
            }
            Command::Alarms { command, output } => {
                let args = alarms::AlarmArgs::from_command(command);
                alarms::run(c, t, s, args, output.format()).await
            }
            Command::History {
                kind,
                id,
                last,
                from,
                to,
                limit,
                output,
            } => {
                let args = history::HistoryArgs {
                    kind,
                    id,
                    last,
                    from_ms: from,
                    to_ms: to,
                    limit,
                };
                history::run(c, t, s, args, output.format()).await
            }
            other => Err(Error::Usage(format!("not a one-shot command: {other:?}"))),
        }
    }
}

/// `acsctl watch`: picks the cluster that admits us, then stays connected through outages.
async fn watch(
    candidates: &[acs_node::NatsOptions],
    timeout: std::time::Duration,
    subjects: &acs_events::Subjects,
    opts: &watch::WatchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let chosen = match client::connect_any(candidates, timeout).await {
        Ok((probe, chosen, _)) => {
            drop(probe);
            chosen
        }
        // Nothing answers yet: wait for the first candidate's server to come up.
        Err(_) => candidates[0].clone(),
    };
    let nc = client::connect_background(&chosen.with_name("acsctl watch")).await?;
    watch::run(&nc, subjects, opts, shutdown).await
}

/// `acsctl scale`: one request, the reply in words or as JSON.
async fn scale(
    candidates: &[acs_node::NatsOptions],
    timeout: std::time::Duration,
    subjects: &acs_events::Subjects,
    req: acs_events::ScaleRequest,
    format: Format,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let reply =
        client::unless_refused(&refusals, client::scale(&nc, subjects, &req, timeout)).await?;
    match format {
        Format::Json => output::print_json(&reply),
        Format::Table | Format::Wide => println!("{}", scale::render(&req, &reply)),
    }
    Ok(())
}

/// `acsctl status`: the brain's reply as tables, or as it came (checked) with `-o json`.
async fn status(
    candidates: &[acs_node::NatsOptions],
    timeout: std::time::Duration,
    subjects: &acs_events::Subjects,
    req: &acs_events::StatusRequest,
    format: Format,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    if format == Format::Json {
        let raw = client::status_raw(&nc, subjects, req, timeout);
        output::print_json(&client::unless_refused(&refusals, raw).await?);
    } else {
        let page = client::status_page(&nc, subjects, req, timeout);
        let reply = client::unless_refused(&refusals, page).await?;
        print!("{}", status::render_as(&reply, format == Format::Wide));
    }
    Ok(())
}

/// The completion script of `shell` for every command and flag.
pub fn completions(shell: clap_complete::Shell, out: &mut impl std::io::Write) {
    use clap::CommandFactory as _;
    clap_complete::generate(shell, &mut Cli::command(), "acsctl", out);
}
