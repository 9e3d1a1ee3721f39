//! Tests of the command line: flags, parsers and their errors.

use super::*;
use crate::output::Format;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("acsctl").chain(args.iter().copied()))
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    for bad in ["", "s", "abc", "10x", "-1s", "1e999s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn scale_targets() {
    assert_eq!(parse_scale_target("3").unwrap(), ScaleTarget::Replicas(3));
    assert_eq!(parse_scale_target("0").unwrap(), ScaleTarget::Replicas(0));
    assert_eq!(parse_scale_target("auto").unwrap(), ScaleTarget::Auto);
    assert_eq!(parse_scale_target("AUTO").unwrap(), ScaleTarget::Auto);
    assert!(parse_scale_target("-1").unwrap_err().contains(">= 0"));
    assert!(parse_scale_target("10001")
        .unwrap_err()
        .contains("<= 10000"));
    assert!(parse_scale_target("three").unwrap_err().contains("auto"));
    assert!(parse_scale_target("2.5").is_err());
}

#[test]
fn scale_command_line() {
    let cli = parse(&["scale", "web", "3"]).unwrap();
    match cli.command {
        Command::Scale {
            service, target, ..
        } => {
            assert_eq!(service.as_str(), "web");
            assert_eq!(target, ScaleTarget::Replicas(3));
        }
        other => panic!("{other:?}"),
    }
    let err = parse(&["scale", "web", "-2"]).unwrap_err().to_string();
    assert!(err.contains("replicas must be >= 0"), "{err}");
    let err = parse(&["scale", "we.b", "2"]).unwrap_err().to_string();
    assert!(err.contains("service name"), "{err}");
    assert!(parse(&["scale", "web"]).is_err());
}

#[test]
fn global_flags_anywhere() {
    let cli = parse(&["status", "--json", "--prefix", "t1", "--timeout", "2s"]).unwrap();
    assert_eq!(cli.prefix, "t1");
    assert_eq!(cli.reply_timeout(), Duration::from_secs(2));
    assert!(matches!(cli.command, Command::Status { ref output, .. } if output.json));
    let cli = parse(&["status", "-o", "wide"]).unwrap();
    assert_eq!(cli.reply_timeout(), Duration::from_secs(5), "the default");
    assert!(
        matches!(cli.command, Command::Status { ref output, .. } if output.format() == Format::Wide)
    );
    let cli = parse(&["status", "--service", "web", "--offset", "500"]).unwrap();
    match cli.command {
        Command::Status {
            service,
            workers,
            offset,
            ..
        } => {
            assert_eq!(
                (service.unwrap().as_str(), workers, offset),
                ("web", false, 500)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(parse(&["status", "--service", "web", "--workers"]).is_err());
}

#[test]
fn windows_take_times_and_days() {
    let cli = parse(&["history", "--last", "7d"]).unwrap();
    let Command::History { last, .. } = cli.command else {
        panic!()
    };
    assert_eq!(last, Some(Duration::from_secs(7 * 86_400)));
    let cli = parse(&["history", "--from", "-2h", "--to", "2025-12-07T18:00:00Z"]).unwrap();
    let Command::History { from, to, .. } = cli.command else {
        panic!()
    };
    let two_hours_ago = crate::clock::now_ms() - 7_200_000;
    assert!(from.unwrap().abs_diff(two_hours_ago) < 60_000, "{from:?}");
    assert_eq!(to, Some(1_765_130_400_000));
    let cli = parse(&[
        "stats", "worker", "w1", "cpu", "--from", "2h ago", "-o", "json",
    ])
    .unwrap();
    let Command::Stats(a) = cli.command else {
        panic!()
    };
    assert!(a.from.is_some() && a.output.format() == Format::Json);
    let err = parse(&["history", "--from", "yesterday-ish"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn up_defaults() {
    let cli = parse(&["up"]).unwrap();
    let Command::Up(up) = cli.command else {
        panic!()
    };
    assert_eq!(up.workers, 2);
    assert_eq!(up.max_replicas, 4);
    assert_eq!(up.proxy_listen, "127.0.0.1:8080".parse().unwrap());
    assert!(parse(&["up", "--workers", "0"]).is_err());
}

#[test]
fn load_args() {
    let cli = parse(&[
        "load",
        "http://127.0.0.1:1/x",
        "--rps",
        "5",
        "--duration",
        "2s",
    ])
    .unwrap();
    let Command::Load(l) = cli.command else {
        panic!()
    };
    let o = l.into_options();
    assert_eq!(o.rps, 5.0);
    assert_eq!(o.duration, Duration::from_secs(2));
}
