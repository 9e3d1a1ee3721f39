//! `acsctl auth`: the flags, and what each command prints. The credentials, the permission
//! table and the TLS material are `acs-auth`'s; this is its command line.

use std::fmt::Write as _;
use std::path::PathBuf;

use acs_events::{ProxyId, Subjects, WorkerId};
use clap::{Args, Subcommand, ValueEnum};

use acs_auth::{AuthDir, AuthError, Changes, Identity, InitOptions, Role, DEFAULT_DIR};

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Folder of the credentials (git-ignored under .acs/).
    #[arg(long, env = "ACS_AUTH_DIR", default_value = DEFAULT_DIR, global = true)]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Make the missing identities (brain, operator, viewer, monitor, the given workers and
    /// proxies) and certificates; keep every one that exists; regenerate auth.conf.
    Init {
        /// Worker ids, comma-separated.
        #[arg(long, env = "ACS_AUTH_WORKERS", value_delimiter = ',', value_parser = parse_worker)]
        workers: Vec<WorkerId>,
        /// Proxy ids, comma-separated.
        #[arg(long, env = "ACS_AUTH_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
        proxies: Vec<ProxyId>,
        /// Also make a local CA, a server certificate and one client certificate per identity.
        #[arg(long, env = "ACS_AUTH_TLS")]
        tls: bool,
        /// A DNS name or IP address the server is reached by (repeat, or comma-separate);
        /// implies --tls. Default: localhost, 127.0.0.1, or the names of the existing certificate.
        #[arg(long = "tls-host", env = "ACS_AUTH_TLS_HOSTS", value_delimiter = ',')]
        tls_hosts: Vec<String>,
    },
    /// Add one worker or proxy; the other identities are left alone.
    Add { kind: Kind, id: String },
    /// Revoke one worker or proxy: its seed (and certificate) is removed and auth.conf
    /// regenerated; the other identities are left alone.
    Revoke { kind: Kind, id: String },
    /// List the identities with their public keys.
    List,
}

/// The identities that come and go one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Worker,
    Proxy,
}

impl Kind {
    pub fn role(self, id: &str) -> Result<Role, String> {
        match self {
            Kind::Worker => parse_worker(id).map(Role::Worker),
            Kind::Proxy => parse_proxy(id).map(Role::Proxy),
        }
    }
}

pub fn parse_worker(s: &str) -> Result<WorkerId, String> {
    WorkerId::new(s.trim()).map_err(|e| e.to_string())
}

pub fn parse_proxy(s: &str) -> Result<ProxyId, String> {
    ProxyId::new(s.trim()).map_err(|e| e.to_string())
}

/// Runs one `acsctl auth` command and prints what it did.
pub fn run(args: AuthArgs, subjects: Subjects) -> crate::Result<()> {
    let dir = AuthDir::new(args.dir, subjects);
    match args.command {
        AuthCommand::Init {
            workers,
            proxies,
            tls,
            tls_hosts,
        } => {
            let tls = tls || !tls_hosts.is_empty();
            let changes = dir.init(&InitOptions {
                workers,
                proxies,
                tls,
                tls_hosts,
            })?;
            print!("{}", render_changes(&dir, &changes));
        }
        AuthCommand::Add { kind, id } => {
            let changes = dir.add(&kind.role(&id).map_err(crate::Error::Usage)?)?;
            print!("{}", render_changes(&dir, &changes));
        }
        AuthCommand::Revoke { kind, id } => {
            let role = kind.role(&id).map_err(crate::Error::Usage)?;
            let changes = dir.revoke(&role)?;
            if changes.removed.is_empty() {
                println!("{role} had no credentials in {}", dir.root().display());
            }
            print!("{}", render_changes(&dir, &changes));
        }
        AuthCommand::List => print!("{}", render_list(&dir.identities()?)),
    }
    Ok(())
}

/// What changed, and how to make the server see it.
pub fn render_changes(dir: &AuthDir, c: &Changes) -> String {
    let mut out = String::new();
    let names = |roles: &[Role]| {
        roles
            .iter()
            .map(Role::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !c.created.is_empty() {
        let _ = writeln!(out, "created: {}", names(&c.created));
    }
    if !c.kept.is_empty() {
        let _ = writeln!(out, "kept:    {}", names(&c.kept));
    }
    if !c.removed.is_empty() {
        let _ = writeln!(out, "revoked: {}", names(&c.removed));
    }
    if !c.certificates.is_empty() {
        let _ = writeln!(out, "certificates made: {}", c.certificates.join(", "));
    }
    let _ = writeln!(out, "wrote {}", c.auth_conf.display());
    if dir.tls().enabled() {
        let _ = writeln!(out, "wrote {}", dir.tls_conf().display());
    }
    if !c.created.is_empty() || !c.removed.is_empty() || !c.certificates.is_empty() {
        out.push_str(
            "A nats-server whose config has `include auth.conf` applies this on reload:\n  \
             nats-server --signal reload=<pid>   (or kill -HUP <pid>)\n",
        );
    }
    out
}

/// One line per identity: role, public key, seed file.
pub fn render_list(ids: &[Identity]) -> String {
    if ids.is_empty() {
        return "no identities; run `acsctl auth init`\n".to_string();
    }
    let width = ids
        .iter()
        .map(|i| i.role.to_string().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for i in ids {
        let _ = writeln!(
            out,
            "{:width$}  {}  {}",
            i.role.to_string(),
            i.public_key,
            i.seed_file.display()
        );
    }
    out
}

impl From<AuthError> for crate::Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(m) => crate::Error::Usage(m),
            other => crate::Error::Failed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn p(id: &str) -> Role {
        Role::Proxy(ProxyId::new(id).unwrap())
    }

    #[test]
    fn ids_are_checked() {
        let err = Kind::Worker.role("w.1").unwrap_err();
        assert!(err.contains("worker id") && err.contains("'.'"), "{err}");
        assert!(Kind::Proxy
            .role("")
            .unwrap_err()
            .contains("must not be empty"));
        assert_eq!(Kind::Proxy.role("p1"), Ok(p("p1")));
    }

    #[test]
    fn command_line() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(std::iter::once("acsctl").chain(args.iter().copied()))
        };
        let cli = parse(&[
            "auth",
            "init",
            "--workers",
            "w1,w2",
            "--tls-host",
            "nats",
            "--tls-host",
            "127.0.0.1",
        ])
        .unwrap();
        let crate::cli::Command::Auth(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.dir, Path::new(DEFAULT_DIR));
        let AuthCommand::Init {
            workers, tls_hosts, ..
        } = a.command
        else {
            panic!()
        };
        assert_eq!(
            workers,
            [WorkerId::new("w1").unwrap(), WorkerId::new("w2").unwrap()]
        );
        assert_eq!(tls_hosts, ["nats", "127.0.0.1"]);
        let err = parse(&["auth", "init", "--workers", "w 1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker id"), "{err}");
        let cli = parse(&["auth", "revoke", "proxy", "p1", "--dir", "/tmp/x"]).unwrap();
        let crate::cli::Command::Auth(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.dir, Path::new("/tmp/x"));
        assert!(matches!(
            a.command,
            AuthCommand::Revoke {
                kind: Kind::Proxy,
                ..
            }
        ));
        assert!(parse(&["auth", "add", "replica", "r1"]).is_err());
    }
}
