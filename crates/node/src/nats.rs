//! The NATS connection every binary shares: servers, one authentication method, TLS,
//! reconnects, and errors that say what to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, ServerError};
use tracing::{info, warn};

mod refusals;
pub use refusals::Refusals;

/// Default server: the local cluster's embedded `nats-server`.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS options: {0}")]
    Options(String),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {servers}: {hint} ({detail})")]
    Connect {
        servers: String,
        hint: String,
        detail: String,
    },
}

/// How a process proves who it is to the NATS server. At most one per connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    /// A `.creds` file: user JWT plus nkey seed (decentralised auth).
    CredsFile(PathBuf),
    /// A file holding an nkey seed (`SU...`); the server knows the public key.
    NkeySeedFile(PathBuf),
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
}

impl Auth {
    fn describe(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::CredsFile(_) => "creds file",
            Auth::NkeySeedFile(_) => "nkey",
            Auth::UserPassword { .. } => "user and password",
            Auth::Token(_) => "token",
        }
    }
}

/// TLS towards the server. Any field set turns TLS on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA that signed the server's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Refuse a server that does not offer TLS.
    pub required: bool,
}

impl Tls {
    pub fn enabled(&self) -> bool {
        self.required || self.ca.is_some() || self.client.is_some()
    }
}

/// The `--nats*` flags, flattened into each binary's own `clap` arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated: every server of the cluster, so a client survives
    /// the loss of any one.
    #[arg(global = true, long = "nats", env = "NATS_URL", default_value = DEFAULT_URL, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Credentials file (user JWT + nkey seed).
    #[arg(global = true, long = "nats-creds", env = "NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(global = true, long = "nats-nkey", env = "NATS_NKEY")]
    pub nkey: Option<PathBuf>,
    /// User name (with --nats-password).
    #[arg(global = true, long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,
    /// Password (with --nats-user).
    #[arg(
        global = true,
        long = "nats-password",
        env = "NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Authentication token.
    #[arg(
        global = true,
        long = "nats-token",
        env = "NATS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; turns TLS on.
    #[arg(global = true, long = "nats-ca", env = "NATS_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --nats-key).
    #[arg(global = true, long = "nats-cert", env = "NATS_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS (with --nats-cert).
    #[arg(global = true, long = "nats-key", env = "NATS_KEY")]
    pub key: Option<PathBuf>,
    /// Require TLS even without a CA or client certificate (system roots).
    #[arg(global = true, long = "nats-tls", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, env = "NATS_TLS")]
    pub tls: bool,
    /// Prefix of this process's reply subjects (default `_INBOX`). With per-role credentials
    /// (`acsctl auth`) each requester has its own, and only it may subscribe below it.
    #[arg(global = true, long = "nats-inbox-prefix", env = "NATS_INBOX_PREFIX")]
    pub inbox_prefix: Option<String>,
    /// Connect with no credentials at all. Only for tests and throwaway set-ups: anyone who
    /// reaches such a server can steer the cluster. Without this flag, a binary given no
    /// credentials refuses to start.
    #[arg(global = true, long = "nats-insecure", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, env = "ACS_NATS_INSECURE")]
    pub insecure: bool,
}

impl NatsArgs {
    /// Checks the flags and names the connection `name` (shown by the server's monitoring).
    pub fn into_options(self, name: impl Into<String>) -> Result<NatsOptions, NatsError> {
        let mut methods = Vec::new();
        if let Some(p) = self.creds {
            methods.push(Auth::CredsFile(p));
        }
        if let Some(p) = self.nkey {
            methods.push(Auth::NkeySeedFile(p));
        }
        match (self.user, self.password) {
            (Some(user), Some(password)) => methods.push(Auth::UserPassword { user, password }),
            (Some(_), None) => return Err(opt("--nats-user needs --nats-password")),
            (None, Some(_)) => return Err(opt("--nats-password needs --nats-user")),
            (None, None) => {}
        }
        if let Some(t) = self.token {
            methods.push(Auth::Token(t));
        }
        if methods.len() > 1 {
            let names: Vec<_> = methods.iter().map(Auth::describe).collect();
            return Err(opt(format!(
                "give one way to authenticate, not {}: {}",
                methods.len(),
                names.join(", ")
            )));
        }
        let client = match (self.cert, self.key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(opt("--nats-cert needs --nats-key")),
            (None, Some(_)) => return Err(opt("--nats-key needs --nats-cert")),
        };
        if methods.is_empty() && !self.insecure {
            return Err(opt(
                "no NATS credentials given: pass --nats-creds, --nats-nkey, --nats-user and \
                 --nats-password, or --nats-token (or NATS_CREDS, NATS_NKEY, ...); \
                 --nats-insecure runs without, for tests only",
            ));
        }
        let options = NatsOptions {
            servers: self.servers,
            name: name.into(),
            auth: methods.pop().unwrap_or_default(),
            tls: Tls {
                ca: self.ca,
                client,
                required: self.tls,
            },
            inbox_prefix: self.inbox_prefix,
        };
        options.validate()?;
        Ok(options)
    }
}

fn opt(message: impl Into<String>) -> NatsError {
    NatsError::Options(message.into())
}

/// A validated way to reach the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    pub servers: Vec<String>,
    /// Connection name, shown in the server's connection list.
    pub name: String,
    pub auth: Auth,
    pub tls: Tls,
    /// Reply-subject prefix instead of `_INBOX` (async-nats `custom_inbox_prefix`).
    pub inbox_prefix: Option<String>,
}

impl NatsOptions {
    /// Plain connection to one URL (or a comma-separated list), no credentials: tests and the
    /// unauthenticated local set-up.
    pub fn new(url: impl AsRef<str>) -> Self {
        NatsOptions {
            servers: url
                .as_ref()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            name: String::new(),
            auth: Auth::None,
            tls: Tls::default(),
            inbox_prefix: None,
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_inbox_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.inbox_prefix = Some(prefix.into());
        self
    }

    /// The servers as one display string, for logs.
    pub fn servers_display(&self) -> String {
        self.servers.join(",")
    }

    fn validate(&self) -> Result<(), NatsError> {
        if self.servers.iter().all(|s| s.trim().is_empty()) {
            return Err(opt("--nats needs at least one server URL"));
        }
        for s in &self.servers {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| opt(format!("bad server URL {s:?}: {e}")))?;
        }
        if let Some(p) = &self.inbox_prefix {
            let bad = |t: &str| {
                t.is_empty() || t.contains(['*', '>']) || t.chars().any(char::is_whitespace)
            };
            if p.split('.').any(bad) {
                return Err(opt(format!(
                    "bad inbox prefix {p:?}: dot-separated tokens without wildcards or spaces"
                )));
            }
        }
        Ok(())
    }

    /// The client options with credentials, TLS and the connection name applied, and endless
    /// reconnects; callers add what is theirs (an event callback, timeouts) and connect to
    /// [`Self::servers`].
    pub async fn connect_options(&self) -> Result<ConnectOptions, NatsError> {
        self.validate()?;
        let mut o = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::CredsFile(p) => ConnectOptions::with_credentials_file(p)
                .await
                .map_err(|source| read_error("creds file", p, source))?,
            Auth::NkeySeedFile(p) => ConnectOptions::with_nkey(read_seed(p)?),
            Auth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Token(t) => ConnectOptions::with_token(t.clone()),
        };
        if !self.name.is_empty() {
            o = o.name(&self.name);
        }
        if let Some(prefix) = &self.inbox_prefix {
            o = o.custom_inbox_prefix(prefix);
        }
        if self.tls.enabled() {
            o = o.require_tls(true);
            if let Some(ca) = &self.tls.ca {
                readable("CA file", ca)?;
                o = o.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &self.tls.client {
                readable("client certificate", cert)?;
                readable("client key", key)?;
                o = o.add_client_certificate(cert.clone(), key.clone());
            }
        }
        Ok(o.max_reconnects(None))
    }

    /// For long-running processes: returns at once and connects (and reconnects) in the
    /// background for ever, logging each connection event with a hint of what to fix.
    /// Fails only on options that can never work (an unreadable file, a bad URL).
    pub async fn connect(&self) -> Result<Client, NatsError> {
        self.warn_if_insecure();
        let who = self.name.clone();
        self.connect_options()
            .await?
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let who = who.clone();
                async move { log_event(&who, &event) }
            })
            .connect(&self.servers)
            .await
            .map_err(|e| self.connect_error(e.kind(), e.to_string()))
    }

    /// For one-shot commands, where a user waits: one attempt within `timeout`, and a clear
    /// error if it fails.
    pub async fn connect_once(&self, timeout: Duration) -> Result<Client, NatsError> {
        Ok(self.connect_once_watched(timeout).await?.0)
    }

    /// [`Self::connect_once`], plus the server's refusals on this connection: a permissions
    /// violation arrives as an event while the request itself only times out, so a one-shot
    /// command can wait on [`Refusals::since`] beside its request and fail at once, saying why.
    pub async fn connect_once_watched(
        &self,
        timeout: Duration,
    ) -> Result<(Client, Refusals), NatsError> {
        self.warn_if_insecure();
        let who = self.name.clone();
        let refusals = Refusals::default();
        let seen = refusals.clone();
        let client = self
            .connect_options()
            .await?
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .event_callback(move |event| {
                let (who, seen) = (who.clone(), seen.clone());
                async move {
                    if let Event::ServerError(e) = &event {
                        log_event(&who, &event);
                        seen.record(e.to_string());
                    }
                }
            })
            .connect(&self.servers)
            .await
            .map_err(|e| self.connect_error(e.kind(), e.to_string()))?;
        Ok((client, refusals))
    }

    fn warn_if_insecure(&self) {
        if self.auth == Auth::None {
            warn!(
                client = %self.name,
                servers = %self.servers_display(),
                "connecting to NATS without credentials: anyone who reaches this server can steer the cluster"
            );
        }
    }

    fn connect_error(&self, kind: ConnectErrorKind, detail: String) -> NatsError {
        // async-nats reports a failed TLS handshake (unknown CA, bad certificate) as `Io`.
        let lower = detail.to_ascii_lowercase();
        let kind = if kind == ConnectErrorKind::Io
            && ["certificate", "tls", "handshake", "unknownissuer"]
                .iter()
                .any(|w| lower.contains(w))
        {
            ConnectErrorKind::Tls
        } else {
            kind
        };
        NatsError::Connect {
            servers: self.servers_display(),
            hint: hint(kind).to_string(),
            detail,
        }
    }
}

/// What to fix, for each way a connection fails.
pub fn hint(kind: ConnectErrorKind) -> &'static str {
    match kind {
        ConnectErrorKind::AuthorizationViolation => {
            "the server refused these credentials: check --nats-creds, --nats-nkey, --nats-user or \
             --nats-token, and that this identity has not been revoked"
        }
        ConnectErrorKind::Authentication => {
            "cannot sign the server's challenge: the nkey seed or creds file is malformed"
        }
        ConnectErrorKind::Tls => {
            "TLS failed: check --nats-ca (the CA of the server's certificate), --nats-cert and \
             --nats-key, and that the server speaks TLS"
        }
        ConnectErrorKind::TimedOut | ConnectErrorKind::Io => {
            "no server answered: is nats-server running, and is --nats (NATS_URL) right?"
        }
        ConnectErrorKind::Dns => "the server's host name does not resolve: check --nats",
        ConnectErrorKind::ServerParse => "bad server URL: check --nats",
        ConnectErrorKind::MaxReconnects => "gave up reconnecting",
    }
}

/// Logs one connection event of client `who`, with a hint where the server refused something.
/// [`NatsOptions::connect`] installs it; processes with their own event handling call it for
/// the events they do not handle themselves.
pub fn log_event(who: &str, event: &Event) {
    match event {
        Event::Connected => info!(client = who, "connected to NATS"),
        Event::Disconnected => warn!(client = who, "disconnected from NATS; reconnecting"),
        Event::ServerError(ServerError::AuthorizationViolation) => warn!(
            client = who,
            "NATS refused the credentials (authorization violation): check the --nats-creds, \
             --nats-nkey, --nats-user or --nats-token this process was given"
        ),
        Event::ServerError(ServerError::Other(m))
            if m.to_ascii_lowercase().contains("permissions violation") =>
        {
            warn!(
                client = who,
                error = %m,
                "NATS refused a permission: this identity may not publish or subscribe there (docs/SECURITY.md lists each role's subjects)"
            )
        }
        other => warn!(client = who, event = %other, "NATS event"),
    }
}

fn read_error(what: &'static str, path: &Path, source: std::io::Error) -> NatsError {
    NatsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn readable(what: &'static str, path: &Path) -> Result<(), NatsError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|source| read_error(what, path, source))
}

/// Reads an nkey seed file: the seed is the first line that starts with `S` (nsc and
/// `acsctl auth` write the bare seed; a creds-style file with comment lines works too).
fn read_seed(path: &Path) -> Result<String, NatsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| read_error("nkey seed file", path, source))?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with('S') && l.len() > 50)
        .map(str::to_string)
        .ok_or_else(|| {
            opt(format!(
                "{} holds no nkey seed (a line starting with S)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests;
