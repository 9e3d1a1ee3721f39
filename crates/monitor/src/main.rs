//! `acs-monitor`: parse flags, set up tracing, run.

use acs_events::Subjects;
use acs_monitor::http::HttpAuth;
use acs_monitor::rollup::{tier_name, TierSpec};
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
    #[arg(long, env = "ACS_MONITOR_STREAM_MAX_AGE_S", default_value_t = 3600)]
    stream_max_age_s: u64,
    /// Raw tier (1 s slots): how long it is kept in memory.
    #[arg(long, env = "ACS_MONITOR_RAW_KEEP_S", default_value_t = 600)]
    raw_keep_s: u64,
    /// Minute tier: how long it is kept in memory.
    #[arg(long, env = "ACS_MONITOR_MINUTE_KEEP_S", default_value_t = 3600)]
    minute_keep_s: u64,
    /// Minute tier: how long ACS_ROLLUPS keeps it.
    #[arg(long, env = "ACS_MONITOR_MINUTE_DURABLE_S", default_value_t = 86_400)]
    minute_durable_s: u64,
    /// Hour tier: how long it is kept in memory.
    #[arg(long, env = "ACS_MONITOR_HOUR_KEEP_S", default_value_t = 7200)]
    hour_keep_s: u64,
    /// Hour tier: how long ACS_ROLLUPS keeps it.
    #[arg(long, env = "ACS_MONITOR_HOUR_DURABLE_S", default_value_t = 30 * 86_400)]
    hour_durable_s: u64,
    /// Every tier at once, finest first, as WIDTH:MEMORY:DURABLE (durations like 1s, 10m, 1h,
    /// 30d), e.g. `1s:10m:1h,1m:1h:1d,1h:2h:30d`; the raw tier's DURABLE is the stream's max
    /// age. Replaces the flags above.
    #[arg(long, env = "ACS_MONITOR_TIERS", conflicts_with_all = ["stream_max_age_s", "raw_keep_s", "minute_keep_s", "minute_durable_s", "hour_keep_s", "hour_durable_s"])]
    tiers: Option<String>,
    /// How long a bucket waits for late samples before it closes.
    #[arg(long, env = "ACS_MONITOR_GRACE_MS", default_value_t = acs_monitor::store::DEFAULT_GRACE_MS)]
    grace_ms: u64,
    /// How long the event history (stream ACS_EVENTS: decisions, alarms, replica and worker
    /// events) keeps events, in seconds.
    #[arg(long, env = "ACS_MONITOR_EVENTS_MAX_AGE_S", default_value_t = 7 * 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    events_max_age_s: u64,
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
        None => vec![
            TierSpec {
                width_ms: 1_000,
                keep_ms: args.raw_keep_s * 1000,
                durable_ms: args.stream_max_age_s * 1000,
            },
            TierSpec {
                width_ms: 60_000,
                keep_ms: args.minute_keep_s * 1000,
                durable_ms: args.minute_durable_s * 1000,
            },
            TierSpec {
                width_ms: 3_600_000,
                keep_ms: args.hour_keep_s * 1000,
                durable_ms: args.hour_durable_s * 1000,
            },
        ],
    };
    acs_monitor::rollup::validate(&tiers, args.grace_ms)
        .map_err(|e| anyhow::anyhow!("bad tiers: {e}"))?;
    Ok(tiers)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    acs_node::init_tracing("info");
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
    let http = http(&args)?;
    let nats = args.nats.into_options("acs-monitor")?;
    let mut config = acs_monitor::Config::new(nats);
    config.subjects = Subjects::new(&args.prefix).map_err(anyhow::Error::msg)?;
    config.events_max_age = std::time::Duration::from_secs(args.events_max_age_s);
    config.tiers = tiers;
    config.stream_max_age = std::time::Duration::from_millis(config.tiers[0].durable_ms);
    config.grace_ms = args.grace_ms;
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
