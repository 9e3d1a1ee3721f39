//! [`NatsServer`]: a real `nats-server` child process on a free loopback port, with or without
//! credentials ([`NatsServer::with_auth`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, nats_server_bin, wait_for_port, TempDir};

/// What a [`NatsServer::with_auth`] server demands of its clients.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// nats-server's own flags, such as `["--auth", "s3cret"]` or
    /// `["--user", "u", "--pass", "p"]`.
    Flags(Vec<String>),
    /// The `auth.conf` of an auth directory (the folder `acs_auth::AuthDir` writes), included
    /// from a server config written beside that folder; with `tls`, its `tls.conf` too. `extra`
    /// lines go at the end of the server config.
    Dir {
        dir: PathBuf,
        tls: bool,
        extra: String,
    },
}

impl ServerAuth {
    /// The auth directory `dir`, without TLS and without extra config.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        ServerAuth::Dir {
            dir: dir.into(),
            tls: false,
            extra: String::new(),
        }
    }
}

/// A real `nats-server` child process, killed on drop.
///
/// JetStream is on, as in every acs cluster (the brains' lease and state live in its KV), with
/// its store in a temporary directory that survives [`restart`](Self::restart).
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    auth: Option<ServerAuth>,
}

impl NatsServer {
    /// Starts a server that admits anyone on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts a server that admits only the clients `auth` describes.
    pub fn with_auth(auth: ServerAuth) -> Self {
        Self::launch(Some(auth))
    }

    fn launch(auth: Option<ServerAuth>) -> Self {
        let mut s = Self {
            child: None,
            port: free_port(),
            store: TempDir::new("nats-js"),
            auth,
        };
        s.spawn();
        s
    }

    /// Where JetStream keeps its files.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    fn args(&self) -> Vec<String> {
        let store = self.store.path().display().to_string();
        let listen = [
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        match &self.auth {
            None => [&listen[..], &["-js".into(), "-sd".into(), store]].concat(),
            Some(ServerAuth::Flags(flags)) => {
                [&listen[..], &["-js".into(), "-sd".into(), store], flags].concat()
            }
            Some(ServerAuth::Dir { dir, tls, extra }) => {
                let conf = write_conf(dir, *tls, extra, self.port, &store);
                vec!["-c".into(), conf.display().to_string()]
            }
        }
    }

    fn spawn(&mut self) {
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .args(self.args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/install-deps.sh",
                    bin.display()
                )
            });
        self.child = Some(child);
        wait_for_port(self.addr(), Duration::from_secs(10)).expect("nats-server did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nats://127.0.0.1:<port>`, or `tls://` when the server demands TLS.
    pub fn url(&self) -> String {
        let tls = matches!(self.auth, Some(ServerAuth::Dir { tls: true, .. }));
        let scheme = if tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Makes the server read its config again (`nats-server --signal reload=<pid>`, as
    /// `acsctl auth` tells its user to), so a changed `auth.conf` applies.
    pub fn reload(&self) {
        let Some(child) = &self.child else {
            panic!("reload: the server is stopped");
        };
        let status = Command::new(nats_server_bin())
            .arg("--signal")
            .arg(format!("reload={}", child.id()))
            .status()
            .expect("run nats-server --signal");
        assert!(status.success(), "nats-server --signal reload failed");
    }

    /// Kills the server (a NATS outage), keeping the port for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes the server config beside the auth folder: nats-server resolves an `include` relative
/// to the including file and never as an absolute path.
fn write_conf(dir: &Path, tls: bool, extra: &str, port: u16, store: &str) -> PathBuf {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let mut conf = format!(
        "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {store:?} }}\ninclude \"{name}/auth.conf\"\n"
    );
    if tls {
        conf.push_str(&format!("include \"{name}/tls.conf\"\n"));
    }
    conf.push_str(extra);
    conf.push('\n');
    let path = parent.join(format!("nats-server-{port}.conf"));
    std::fs::write(&path, conf).expect("write the nats-server config");
    path
}
