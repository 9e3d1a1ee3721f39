//! The shared connection against a real nats-server that demands credentials.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use acs_node::{Auth, NatsOptions};
use acs_testkit::{free_port, nats_server_bin, wait_for_port};

struct Server(Child, u16);

impl Server {
    fn start(auth_args: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(auth_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10))
            .expect("nats-server up");
        Server(child, port)
    }
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const T: Duration = Duration::from_secs(3);

#[tokio::test]
async fn token_right_and_wrong() {
    let s = Server::start(&["--auth", "s3cret"]);
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
    let s = Server::start(&["--user", "op", "--pass", "pw"]);
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
