use super::*;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "0123456789abcdef0123";

/// One raw HTTP/1.1 request on a fresh connection; the status code and the whole answer.
async fn ask(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

async fn server(auth: MetricsAuth) -> (SocketAddr, Counter) {
    let mut registry = Registry::default();
    let c = Counter::default();
    registry.register("acs_test_things", "Things", c.clone());
    c.inc_by(7);
    let listen = MetricsListen {
        addr: "127.0.0.1:0".parse().unwrap(),
        auth,
    };
    let (addr, _task) = spawn(&listen, registry).await.unwrap();
    (addr, c)
}

#[tokio::test]
async fn the_token_is_required_and_only_get_metrics_is_served() {
    let (addr, c) = server(MetricsAuth::Bearer(TOKEN.into())).await;

    let (code, out) = ask(addr, "GET", "/metrics", None).await;
    assert_eq!(code, 401, "{out}");
    assert!(
        out.to_lowercase().contains("www-authenticate: bearer"),
        "{out}"
    );
    assert!(!out.contains("acs_test_things"), "{out}");
    let (code, _) = ask(addr, "GET", "/metrics", Some("0123456789abcdef0124")).await;
    assert_eq!(code, 401);
    let (code, _) = ask(addr, "GET", "/metrics", Some("short")).await;
    assert_eq!(code, 401);
    // Unauthenticated, other paths look the same as /metrics: nothing to probe.
    let (code, _) = ask(addr, "GET", "/other", None).await;
    assert_eq!(code, 401);

    c.inc();
    let (code, out) = ask(addr, "GET", "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 200, "{out}");
    assert!(
        out.contains(&format!("content-type: {CONTENT_TYPE}")),
        "{out}"
    );
    assert!(
        out.contains("# TYPE acs_test_things_total counter\n"),
        "{out}"
    );
    assert!(out.contains("\nacs_test_things_total 8\n"), "{out}");
    // Four refusals so far.
    assert!(
        out.contains("\nacs_metrics_http_refused_total 4\n"),
        "{out}"
    );

    let (code, out) = ask(addr, "HEAD", "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 200, "{out}");
    assert!(
        !out.contains("acs_test_things"),
        "a HEAD answer has no body: {out}"
    );

    let (code, out) = ask(addr, "GET", "/metricsx", Some(TOKEN)).await;
    assert_eq!(code, 404, "{out}");
    assert!(out.contains("try GET /metrics"), "{out}");
    let (code, out) = ask(addr, "POST", "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 405, "{out}");
    assert!(out.to_lowercase().contains("allow: get, head"), "{out}");
}

#[tokio::test]
async fn insecure_serves_without_a_token() {
    let (addr, _c) = server(MetricsAuth::Insecure).await;
    let (code, out) = ask(addr, "GET", "/metrics", None).await;
    assert_eq!(code, 200, "{out}");
    assert!(out.contains("acs_test_things_total 7"), "{out}");
}

#[tokio::test]
async fn a_client_that_sends_nothing_does_not_block_others() {
    let (addr, _c) = server(MetricsAuth::Bearer(TOKEN.into())).await;
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (code, _) = ask(addr, "GET", "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 200);
}

#[test]
fn flags_turn_into_a_listener_or_say_what_is_missing() {
    let addr: SocketAddr = "127.0.0.1:9480".parse().unwrap();
    let off = MetricsArgs::default();
    assert_eq!(off.into_listen().unwrap(), None);

    let no_token = MetricsArgs {
        metrics_listen: Some(addr),
        ..Default::default()
    };
    let err = no_token.into_listen().unwrap_err().to_string();
    assert!(
        err.contains("--metrics-token-file") && err.contains("--metrics-insecure-no-auth"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("acs-metrics-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short.token");
    std::fs::write(&short, "abc\n").unwrap();
    let err = MetricsArgs {
        metrics_listen: Some(addr),
        metrics_token_file: Some(short),
        metrics_insecure_no_auth: false,
    }
    .into_listen()
    .unwrap_err();
    assert!(matches!(err, MetricsError::ShortToken(_)), "{err}");

    let good = dir.join("good.token");
    std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
    let l = MetricsArgs {
        metrics_listen: Some(addr),
        metrics_token_file: Some(good),
        metrics_insecure_no_auth: false,
    }
    .into_listen()
    .unwrap()
    .unwrap();
    assert_eq!(
        l,
        MetricsListen {
            addr,
            auth: MetricsAuth::Bearer(TOKEN.into())
        }
    );

    let missing = MetricsArgs {
        metrics_listen: Some(addr),
        metrics_token_file: Some(dir.join("nope")),
        metrics_insecure_no_auth: false,
    };
    assert!(matches!(
        missing.into_listen(),
        Err(MetricsError::Read { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clap_reads_the_flags() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        metrics: MetricsArgs,
    }
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "x",
        "--metrics-listen",
        "127.0.0.1:1",
        "--metrics-insecure-no-auth",
    ])
    .unwrap();
    assert_eq!(
        cli.metrics.into_listen().unwrap().unwrap().auth,
        MetricsAuth::Insecure
    );
    assert!(Cli::try_parse_from([
        "x",
        "--metrics-token-file",
        "f",
        "--metrics-insecure-no-auth"
    ])
    .is_err());
}
