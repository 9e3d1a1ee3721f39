//! `acs-monitor`: parse flags, set up tracing, run.

use std::time::Duration;

use acs_events::Subjects;
use acs_monitor::http::HttpAuth;
use acs_monitor::rollup::{tier_name, TierSpec};
use acs_node::legacy::Legacy;
use anyhow::Context;
use clap::Parser;

/// Auto Cloud Scaler monitor: keeps metrics history and answers statistics queries.
#[derive(Debug, Parser)]
#[command(name = "acs-monitor", version)]
struct Args {
    #[command(flatten)]
    nats: acs_node::NatsArgs,
    /// `--metrics-listen` (default off), `--metrics-token-file`: Prometheus `GET /metrics`.
    #[command(flatten)]
    metrics: acs_node::MetricsArgs,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// How long the ACS_METRICS stream keeps raw messages: the raw tier's durable keep, what a
    /// restart replays to rebuild the in-memory tiers.
    #[arg(long, env = "ACS_MONITOR_STREAM_MAX_AGE", default_value = "1h", value_parser = acs_node::parse_duration)]
    stream_max_age: Duration,
    /// Raw tier (1 s slots): how long it is kept in memory.
    #[arg(long, env = "ACS_MONITOR_RAW_KEEP", default_value = "10m", value_parser = acs_node::parse_duration)]
    raw_keep: Duration,
    /// Minute tier: how long it is kept in memory.
    #[arg(long, env = "ACS_MONITOR_MINUTE_KEEP", default_value = "1h", value_parser = acs_node::parse_duration)]
    minute_keep: Duration,
    /// Minute tier: how long ACS_ROLLUPS keeps it.
    #[arg(long, env = "ACS_MONITOR_MINUTE_DURABLE", default_value = "1d", value_parser = acs_node::parse_duration)]
    minute_durable: Duration,
    /// Hour tier: how long it is kept in memory.
    #[arg(long, env = "ACS_MONITOR_HOUR_KEEP", default_value = "2h", value_parser = acs_node::parse_duration)]
    hour_keep: Duration,
    /// Hour tier: how long ACS_ROLLUPS keeps it.
    #[arg(long, env = "ACS_MONITOR_HOUR_DURABLE", default_value = "30d", value_parser = acs_node::parse_duration)]
    hour_durable: Duration,
    /// Every tier at once, finest first, as WIDTH:MEMORY:DURABLE (durations like 1s, 10m, 1h,
    /// 30d), e.g. `1s:10m:1h,1m:1h:1d,1h:2h:30d`; the raw tier's DURABLE is the stream's max
    /// age. Replaces the flags above.
    #[arg(long, env = "ACS_MONITOR_TIERS", conflicts_with_all = TIER_FLAGS)]
    tiers: Option<String>,
    /// How long a bucket waits for late samples before it closes.
    #[arg(long, env = "ACS_MONITOR_GRACE", default_value = DEFAULT_GRACE, value_parser = acs_node::parse_duration)]
    grace: Duration,
    /// How long the event history (stream ACS_EVENTS: decisions, alarms, replica and worker
    /// events) keeps events (at least 1s).
    #[arg(long, env = "ACS_MONITOR_EVENTS_MAX_AGE", default_value = "7d", value_parser = acs_node::parse_duration)]
    events_max_age: Duration,
    /// Where the REST stats API listens (`GET /api/v1/stats`).
    #[arg(long, env = "ACS_MONITOR_HTTP", default_value = "127.0.0.1:9470")]
    http: std::net::SocketAddr,
    /// No REST API at all: NATS only.
    #[arg(long, conflicts_with_all = ["token_file", "insecure_no_auth"])]
    no_http: bool,
    /// File holding the bearer token every REST request must carry (keep it mode 0600).
    #[arg(long, env = "ACS_MONITOR_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Serve the REST API without a token. Only for tests: anyone who reaches it reads the stats.
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// Alarm rules and channels (TOML; see config/alarms.example.toml). Without it, no alarms.
    #[arg(long, env = "ACS_MONITOR_ALARMS")]
    alarms: Option<std::path::PathBuf>,
    /// Replicas of the alarm state's KV bucket `acs_monitor` (3 on a 3-node NATS cluster).
    #[arg(long, env = "ACS_MONITOR_KV_REPLICAS", default_value_t = 1)]
    kv_replicas: usize,
    /// Check the flags and the alarm rules, print what was found, and exit (no token needed,
    /// nothing started).
    #[arg(long)]
    check: bool,
    /// Ask `URL` (e.g. `http://127.0.0.1:9470/healthz`) and exit 0 if it answers 200, 1
    /// otherwise: the container health check of an image without a shell.
    #[arg(long, value_name = "URL")]
    healthcheck: Option<String>,
    /// `--log-format text|json`.
    #[command(flatten)]
    log: acs_node::LogArgs,
}

/// The per-tier flags `--tiers` replaces.
const TIER_FLAGS: [&str; 6] = [
    "stream_max_age",
    "raw_keep",
    "minute_keep",
    "minute_durable",
    "hour_keep",
    "hour_durable",
];

/// The integer flags in seconds (and milliseconds) the duration flags replaced, still read.
const LEGACY: &[Legacy] = &[
    Legacy::secs(
        "stream-max-age-s",
        "stream-max-age",
        ["ACS_MONITOR_STREAM_MAX_AGE_S", "ACS_MONITOR_STREAM_MAX_AGE"],
    ),
    Legacy::secs(
        "raw-keep-s",
        "raw-keep",
        ["ACS_MONITOR_RAW_KEEP_S", "ACS_MONITOR_RAW_KEEP"],
    ),
    Legacy::secs(
        "minute-keep-s",
        "minute-keep",
        ["ACS_MONITOR_MINUTE_KEEP_S", "ACS_MONITOR_MINUTE_KEEP"],
    ),
    Legacy::secs(
        "minute-durable-s",
        "minute-durable",
        ["ACS_MONITOR_MINUTE_DURABLE_S", "ACS_MONITOR_MINUTE_DURABLE"],
    ),
    Legacy::secs(
        "hour-keep-s",
        "hour-keep",
        ["ACS_MONITOR_HOUR_KEEP_S", "ACS_MONITOR_HOUR_KEEP"],
    ),
    Legacy::secs(
        "hour-durable-s",
        "hour-durable",
        ["ACS_MONITOR_HOUR_DURABLE_S", "ACS_MONITOR_HOUR_DURABLE"],
    ),
    Legacy::ms(
        "grace-ms",
        "grace",
        ["ACS_MONITOR_GRACE_MS", "ACS_MONITOR_GRACE"],
    ),
    Legacy::secs(
        "events-max-age-s",
        "events-max-age",
        ["ACS_MONITOR_EVENTS_MAX_AGE_S", "ACS_MONITOR_EVENTS_MAX_AGE"],
    ),
];

/// `acs_monitor::store::DEFAULT_GRACE_MS` as a flag default (checked by a test).
const DEFAULT_GRACE: &str = "2s";

/// Whole milliseconds, as the monitor's tiers keep them.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The per-tier flags, in milliseconds.
fn tier_flags(a: &Args) -> [u64; 6] {
    [
        a.raw_keep,
        a.stream_max_age,
        a.minute_keep,
        a.minute_durable,
        a.hour_keep,
        a.hour_durable,
    ]
    .map(ms)
}

fn grace_ms(a: &Args) -> u64 {
    ms(a.grace)
}

/// The REST API's address and auth, or `None` with `--no-http`; no token is an error.
fn http(args: &Args) -> anyhow::Result<Option<(std::net::SocketAddr, HttpAuth)>> {
    if args.no_http {
        return Ok(None);
    }
    let auth = match (&args.token_file, args.insecure_no_auth) {
        (_, true) => HttpAuth::Insecure,
        (Some(path), false) => HttpAuth::Bearer(acs_node::metrics::read_token(path.clone())?),
        (None, false) => anyhow::bail!(
            "the REST API needs a bearer token: pass --token-file FILE (or ACS_MONITOR_TOKEN_FILE); \
             --no-http turns it off, --insecure-no-auth serves without (tests only)"
        ),
    };
    Ok(Some((args.http, auth)))
}

/// A duration: a number with `s`, `m`, `h` or `d` (a bare number is seconds), in ms.
fn duration_ms(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 5m, 1h or 30d"))?;
    let unit = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `WIDTH:MEMORY:DURABLE,...` into tiers.
fn parse_tiers(spec: &str) -> Result<Vec<TierSpec>, String> {
    spec.split(',')
        .map(|t| {
            let parts: Vec<&str> = t.trim().split(':').collect();
            let [w, k, d] = parts.as_slice() else {
                return Err(format!(
                    "tier {t:?}: want WIDTH:MEMORY:DURABLE, e.g. 1m:1h:1d"
                ));
            };
            let f = |what: &str, v: &str| {
                duration_ms(v).map_err(|e| format!("tier {t:?}, {what}: {e}"))
            };
            Ok(TierSpec {
                width_ms: f("width", w)?,
                keep_ms: f("memory keep", k)?,
                durable_ms: f("durable keep", d)?,
            })
        })
        .collect()
}

/// The tiers from `--tiers` or the per-tier flags, validated.
fn tiers(args: &Args) -> anyhow::Result<Vec<TierSpec>> {
    let tiers = match &args.tiers {
        Some(spec) => parse_tiers(spec).map_err(|e| anyhow::anyhow!("--tiers: {e}"))?,
        None => {
            let [raw, stream, minute, minute_durable, hour, hour_durable] = tier_flags(args);
            vec![
                TierSpec {
                    width_ms: 1_000,
                    keep_ms: raw,
                    durable_ms: stream,
                },
                TierSpec {
                    width_ms: 60_000,
                    keep_ms: minute,
                    durable_ms: minute_durable,
                },
                TierSpec {
                    width_ms: 3_600_000,
                    keep_ms: hour,
                    durable_ms: hour_durable,
                },
            ]
        }
    };
    acs_monitor::rollup::validate(&tiers, grace_ms(args))
        .map_err(|e| anyhow::anyhow!("bad tiers: {e}"))?;
    Ok(tiers)
}

fn main() -> anyhow::Result<()> {
    let (args, deprecated) = acs_node::legacy::parse::<Args>(LEGACY);
    if let Some(url) = &args.healthcheck {
        return acs_node::health::check(url).map_err(anyhow::Error::msg);
    }
    args.log.init("info");
    acs_node::legacy::warn(&deprecated);
    let tiers = tiers(&args)?;
    let alarms = match &args.alarms {
        Some(path) => {
            let rules = acs_monitor::alarm::rules::load(path)?;
            let mut cfg = acs_monitor::alarm::AlarmConfig::new(rules);
            cfg.replicas = args.kv_replicas;
            Some(cfg)
        }
        None => None,
    };
    if args.check {
        let t: Vec<String> = tiers
            .iter()
            .map(|t| {
                format!(
                    "{}:{}s:{}s",
                    tier_name(t.width_ms),
                    t.keep_ms / 1000,
                    t.durable_ms / 1000
                )
            })
            .collect();
        println!("ok: tiers {}", t.join(","));
        match &alarms {
            Some(a) => println!(
                "ok: {} alarm rules, {} channels",
                a.rules.rules.len(),
                a.rules.channels.len()
            ),
            None => println!("ok: no alarm rules (--alarms not given)"),
        }
        return Ok(());
    }
    // After --check: a check needs no token.
    let http = http(&args)?;
    let grace_ms = grace_ms(&args);
    let nats = args.nats.into_options("acs-monitor")?;
    let mut config = acs_monitor::Config::new(nats);
    config.subjects = Subjects::new(&args.prefix).map_err(anyhow::Error::msg)?;
    config.events_max_age = args.events_max_age;
    anyhow::ensure!(
        config.events_max_age >= Duration::from_secs(1),
        "--events-max-age: at least 1s"
    );
    config.tiers = tiers;
    config.stream_max_age = std::time::Duration::from_millis(config.tiers[0].durable_ms);
    config.grace_ms = grace_ms;
    config.http = http;
    config.metrics = args.metrics.clone().into_listen()?;
    config.alarms = alarms;
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    rt.block_on(acs_monitor::run(config, acs_node::shutdown_signal()))
        .context("acs-monitor failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        acs_node::legacy::try_parse(LEGACY, "acs-monitor", args)
    }

    #[test]
    fn old_second_flags_and_new_duration_flags_agree() {
        let new = parse(&["--raw-keep=5m", "--hour-durable=2d", "--grace=1.5s"]).unwrap();
        let old = parse(&[
            "--raw-keep-s=300",
            "--hour-durable-s=172800",
            "--grace-ms=1500",
        ]);
        let old = old.unwrap();
        assert_eq!(tier_flags(&new), tier_flags(&old));
        assert_eq!(tier_flags(&new)[0], 300_000);
        assert_eq!(grace_ms(&new), 1500);
        assert_eq!(grace_ms(&old), 1500);
        let defaults = parse(&[]).unwrap();
        assert_eq!(grace_ms(&defaults), acs_monitor::store::DEFAULT_GRACE_MS);
        assert_eq!(
            tiers(&defaults).unwrap(),
            acs_monitor::rollup::DEFAULT_TIERS.to_vec()
        );
        assert!(parse(&["--tiers=1s:10m:1h,1m:1h:1d,1h:2h:30d", "--raw-keep=1m"]).is_err());
        assert!(parse(&["--tiers=1s:10m:1h,1m:1h:1d,1h:2h:30d", "--raw-keep-s=60"]).is_err());
    }

    #[test]
    fn a_bad_duration_is_refused_naming_the_flag() {
        let e = parse(&["--events-max-age", "a week"]).err().unwrap();
        assert!(e.to_string().contains("--events-max-age"), "{e}");
    }

    #[test]
    fn tiers_parse_and_bad_ones_are_named() {
        let t = parse_tiers("1s:10m:1h,1m:1h:1d,1h:2h:30d").unwrap();
        assert_eq!(t, acs_monitor::rollup::DEFAULT_TIERS.to_vec());
        assert!(parse_tiers("1s:10m")
            .unwrap_err()
            .contains("WIDTH:MEMORY:DURABLE"));
        assert!(parse_tiers("1s:10x:1h")
            .unwrap_err()
            .contains("memory keep: \"10x\": unknown unit"));
        assert!(parse_tiers("1s:ten:1h")
            .unwrap_err()
            .contains("not a duration"));
    }
}
