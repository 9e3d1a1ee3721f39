//! The shared connection against a real nats-server that demands credentials.

use std::time::Duration;

use acs_node::{Auth, NatsOptions};
use acs_testkit::{free_port, NatsServer, ServerAuth};

fn flags(f: &[&str]) -> ServerAuth {
    ServerAuth::Flags(f.iter().map(|s| s.to_string()).collect())
}

const T: Duration = Duration::from_secs(3);

#[tokio::test]
async fn token_right_and_wrong() {
    let s = NatsServer::with_auth(flags(&["--auth", "s3cret"]));
    let ok = NatsOptions::new(s.url()).with_auth(Auth::Token("s3cret".into()));
    let c = ok.connect_once(T).await.expect("right token connects");
    c.flush().await.unwrap();

    let bad = NatsOptions::new(s.url()).with_auth(Auth::Token("guess".into()));
    let e = bad.connect_once(T).await.unwrap_err().to_string();
    assert!(e.contains("refused these credentials"), "{e}");

    let none = NatsOptions::new(s.url());
    let e = none.connect_once(T).await.unwrap_err().to_string();
    assert!(e.contains("refused these credentials"), "{e}");
}

#[tokio::test]
async fn user_and_password() {
    let s = NatsServer::with_auth(flags(&["--user", "op", "--pass", "pw"]));
    let ok = NatsOptions::new(s.url()).with_auth(Auth::UserPassword {
        user: "op".into(),
        password: "pw".into(),
    });
    ok.connect_once(T).await.expect("right password connects");
    let bad = NatsOptions::new(s.url()).with_auth(Auth::UserPassword {
        user: "op".into(),
        password: "no".into(),
    });
    assert!(bad.connect_once(T).await.is_err());
}

#[tokio::test]
async fn nothing_listening_says_so() {
    let o = NatsOptions::new(format!("nats://127.0.0.1:{}", free_port()));
    let e = o
        .connect_once(Duration::from_millis(500))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no server answered"), "{e}");
}
