use super::*;

fn args() -> NatsArgs {
    NatsArgs {
        servers: vec![DEFAULT_URL.into()],
        insecure: true,
        ..NatsArgs::default()
    }
}

#[test]
fn plain_by_default() {
    let o = args().into_options("t").unwrap();
    assert_eq!(o.auth, Auth::None);
    assert!(!o.tls.enabled());
    assert_eq!(o.name, "t");
}

#[test]
fn one_auth_method_only() {
    let a = NatsArgs {
        token: Some("x".into()),
        creds: Some("/tmp/a.creds".into()),
        ..args()
    };
    let e = a.into_options("t").unwrap_err().to_string();
    assert!(
        e.contains("one way to authenticate") && e.contains("token") && e.contains("creds file"),
        "{e}"
    );
}

#[test]
fn user_needs_password_and_cert_needs_key() {
    let e = NatsArgs {
        user: Some("u".into()),
        ..args()
    }
    .into_options("t")
    .unwrap_err();
    assert!(e.to_string().contains("--nats-password"), "{e}");
    let e = NatsArgs {
        cert: Some("c.pem".into()),
        ..args()
    }
    .into_options("t")
    .unwrap_err();
    assert!(e.to_string().contains("--nats-key"), "{e}");
    let o = NatsArgs {
        user: Some("u".into()),
        password: Some("p".into()),
        ..args()
    }
    .into_options("t")
    .unwrap();
    assert_eq!(
        o.auth,
        Auth::UserPassword {
            user: "u".into(),
            password: "p".into()
        }
    );
}

#[test]
fn bad_or_missing_servers_are_refused() {
    let e = NatsArgs {
        servers: vec![],
        ..args()
    }
    .into_options("t")
    .unwrap_err();
    assert!(e.to_string().contains("at least one server"), "{e}");
    let e = NatsArgs {
        servers: vec!["nats://[::1".into()],
        ..args()
    }
    .into_options("t")
    .unwrap_err();
    assert!(e.to_string().contains("bad server URL"), "{e}");
}

#[test]
fn ca_turns_tls_on() {
    let o = NatsArgs {
        ca: Some("ca.pem".into()),
        ..args()
    }
    .into_options("t")
    .unwrap();
    assert!(o.tls.enabled());
}

#[test]
fn new_splits_a_server_list() {
    let o = NatsOptions::new("nats://a:4222, nats://b:4222");
    assert_eq!(o.servers, vec!["nats://a:4222", "nats://b:4222"]);
}

#[tokio::test]
async fn unreadable_files_name_the_file() {
    let o =
        NatsOptions::new(DEFAULT_URL).with_auth(Auth::NkeySeedFile("/nonexistent/seed.nk".into()));
    let e = o.connect_options().await.unwrap_err().to_string();
    assert!(
        e.contains("nkey seed file") && e.contains("/nonexistent/seed.nk"),
        "{e}"
    );
    let o = NatsOptions::new(DEFAULT_URL).with_tls(Tls {
        ca: Some("/nonexistent/ca.pem".into()),
        ..Tls::default()
    });
    let e = o.connect_options().await.unwrap_err().to_string();
    assert!(e.contains("CA file"), "{e}");
}

#[test]
fn a_seed_file_without_a_seed_is_refused() {
    let dir = std::env::temp_dir().join(format!("acs-node-seed-{}", std::process::id()));
    std::fs::write(&dir, "# nothing here\n").unwrap();
    let e = read_seed(&dir).unwrap_err().to_string();
    let _ = std::fs::remove_file(&dir);
    assert!(e.contains("no nkey seed"), "{e}");
}

#[test]
fn no_credentials_needs_the_insecure_flag() {
    let e = NatsArgs {
        insecure: false,
        ..args()
    }
    .into_options("t")
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no NATS credentials") && e.contains("--nats-insecure"),
        "{e}"
    );
    let o = NatsArgs {
        insecure: false,
        token: Some("t".into()),
        ..args()
    }
    .into_options("t")
    .unwrap();
    assert_eq!(o.auth, Auth::Token("t".into()));
}
