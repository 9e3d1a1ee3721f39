//! The auth directory on disk: one nkey seed file per identity, and `auth.conf` generated from
//! the seeds present.
//!
//! ```text
//! <dir>/prefix             subject prefix the permissions were made for
//! <dir>/brain.nk           operator.nk, viewer.nk, monitor.nk
//! <dir>/workers/<id>.nk    <dir>/proxies/<id>.nk
//! <dir>/auth.conf          GENERATED: `include` it from the nats-server config
//! <dir>/tls.conf, tls/     with TLS (see [`super::tls`])
//! ```
//!
//! A seed is never overwritten: adding or revoking one identity leaves every other seed as it
//! was, and `init` only fills in what is missing.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use acs_events::{ProxyId, Subjects, WorkerId};
use acs_node::{Auth, NatsOptions, Tls};
use nkeys::KeyPair;

use super::conf::{render_auth_conf, render_tls_conf, User};
use super::role::Role;
use super::tls::TlsDir;
use super::{AuthError, Result};

/// Where `acsctl auth` keeps credentials unless told otherwise (git-ignored with `.acs/`).
pub const DEFAULT_DIR: &str = ".acs/auth";
/// Names the server certificate is made for when `--tls-host` is not given.
pub const DEFAULT_TLS_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// An auth directory for one subject prefix.
#[derive(Debug, Clone)]
pub struct AuthDir {
    root: PathBuf,
    subjects: Subjects,
}

/// What `init` should make sure exists.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub workers: Vec<WorkerId>,
    pub proxies: Vec<ProxyId>,
    /// Turn TLS on (or keep it on) with a server certificate for these hosts; empty means the
    /// hosts of the existing server certificate, or [`DEFAULT_TLS_HOSTS`].
    pub tls: bool,
    pub tls_hosts: Vec<String>,
}

/// What a command changed, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub created: Vec<Role>,
    pub kept: Vec<Role>,
    pub removed: Vec<Role>,
    /// Certificates made, as short descriptions (`CA`, `server certificate`, `brain`, ...).
    pub certificates: Vec<String>,
    pub auth_conf: PathBuf,
}

/// An identity found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub public_key: String,
    pub seed_file: PathBuf,
}

impl AuthDir {
    pub fn new(root: impl Into<PathBuf>, subjects: Subjects) -> Self {
        Self {
            root: root.into(),
            subjects,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }
    pub fn seed_file(&self, role: &Role) -> PathBuf {
        self.root.join(role.file_stem()).with_extension("nk")
    }
    pub fn auth_conf(&self) -> PathBuf {
        self.root.join("auth.conf")
    }
    pub fn tls_conf(&self) -> PathBuf {
        self.root.join("tls.conf")
    }
    pub fn tls(&self) -> TlsDir {
        TlsDir::new(self.root.join("tls"))
    }

    /// Creates the fixed identities, the given workers and proxies and (with `tls`) the
    /// certificates that are missing; keeps everything that exists; regenerates `auth.conf`.
    pub fn init(&self, opts: &InitOptions) -> Result<Changes> {
        self.prepare()?;
        let mut changes = Changes::default();
        let wanted: BTreeSet<Role> = Role::FIXED
            .into_iter()
            .chain(opts.workers.iter().cloned().map(Role::Worker))
            .chain(opts.proxies.iter().cloned().map(Role::Proxy))
            .collect();
        for role in wanted {
            if self.ensure_seed(&role)? {
                changes.created.push(role);
            } else {
                changes.kept.push(role);
            }
        }
        if opts.tls || self.tls().enabled() {
            changes.certificates = self.ensure_tls(&opts.tls_hosts)?;
        }
        changes.auth_conf = self.write_auth_conf()?;
        Ok(changes)
    }

    /// Adds one identity (and its client certificate when TLS is set up); other identities are
    /// left alone. Adding one that exists keeps its seed.
    pub fn add(&self, role: &Role) -> Result<Changes> {
        self.prepare()?;
        let mut changes = Changes::default();
        if self.ensure_seed(role)? {
            changes.created.push(role.clone());
        } else {
            changes.kept.push(role.clone());
        }
        let tls = self.tls();
        if tls.enabled() {
            let ca = tls.ensure_ca()?;
            if tls.ensure_client(&ca, &role.file_stem(), &role.to_string())? {
                changes.certificates.push(role.to_string());
            }
        }
        changes.auth_conf = self.write_auth_conf()?;
        Ok(changes)
    }

    /// Removes one identity's seed (and client certificate); it can no longer connect once the
    /// server has reloaded the regenerated `auth.conf`.
    pub fn revoke(&self, role: &Role) -> Result<Changes> {
        self.prepare()?;
        let mut changes = Changes::default();
        let seed = self.seed_file(role);
        match std::fs::remove_file(&seed) {
            Ok(()) => changes.removed.push(role.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AuthError::io(&seed, e)),
        }
        self.tls().remove_client(&role.file_stem())?;
        changes.auth_conf = self.write_auth_conf()?;
        Ok(changes)
    }

    /// Every identity with a seed file: the fixed ones first, then workers and proxies by id.
    pub fn identities(&self) -> Result<Vec<Identity>> {
        let mut roles: Vec<Role> = Role::FIXED
            .into_iter()
            .filter(|r| self.seed_file(r).is_file())
            .collect();
        roles.extend(self.ids_in("workers", "worker id", |id| {
            WorkerId::new(id).map(Role::Worker)
        })?);
        roles.extend(self.ids_in("proxies", "proxy id", |id| {
            ProxyId::new(id).map(Role::Proxy)
        })?);
        roles
            .into_iter()
            .map(|role| {
                let seed_file = self.seed_file(&role);
                let public_key = read_key(&seed_file)?.public_key();
                Ok(Identity {
                    role,
                    public_key,
                    seed_file,
                })
            })
            .collect()
    }

    /// Regenerates `auth.conf` from the seeds present (atomically: a reload never reads half a
    /// file).
    pub fn write_auth_conf(&self) -> Result<PathBuf> {
        let users: Vec<User> = self
            .identities()?
            .into_iter()
            .map(|i| User {
                role: i.role,
                public_key: i.public_key,
            })
            .collect();
        let path = self.auth_conf();
        write_replace(
            &path,
            render_auth_conf(&users, &self.subjects).as_bytes(),
            Secret::No,
        )?;
        Ok(path)
    }

    /// How `role` connects from this process: its nkey, its inbox prefix and, when TLS is set
    /// up, the CA and its client certificate.
    pub fn nats_options(&self, role: &Role, url: &str) -> NatsOptions {
        let mut o = NatsOptions::new(url)
            .with_name(format!("acs-{}", role.to_string().replace(' ', "-")))
            .with_auth(Auth::NkeySeedFile(self.seed_file(role)));
        if let Some(prefix) = role.inbox_prefix() {
            o = o.with_inbox_prefix(prefix);
        }
        if let Some(tls) = self.client_tls(role) {
            o = o.with_tls(tls);
        }
        o
    }

    /// The client side of TLS for `role`, when this directory has a CA.
    pub fn client_tls(&self, role: &Role) -> Option<Tls> {
        let tls = self.tls();
        tls.enabled().then(|| Tls {
            ca: Some(tls.ca()),
            client: Some(tls.client(&role.file_stem())),
            required: true,
        })
    }

    /// The `NATS_*` environment variables (acs-node's `NatsArgs`) that make a child process
    /// connect as `role`, with paths as that process sees this directory (`seen_as`; pass
    /// [`Self::root`] for a local process, the mount point for a container).
    pub fn connect_env(&self, role: &Role, seen_as: &Path) -> Vec<(&'static str, String)> {
        let show = |p: PathBuf| seen_as.join(p).display().to_string();
        let mut env = vec![("NATS_NKEY", show(role.file_stem().with_extension("nk")))];
        if let Some(prefix) = role.inbox_prefix() {
            env.push(("NATS_INBOX_PREFIX", prefix));
        }
        if self.tls().enabled() {
            let tls = TlsDir::new("tls");
            let (cert, key) = tls.client(&role.file_stem());
            env.push(("NATS_CA", show(tls.ca())));
            env.push(("NATS_CERT", show(cert)));
            env.push(("NATS_KEY", show(key)));
        }
        env
    }

    /// Creates the folder (0700) and checks or records the subject prefix.
    fn prepare(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.root.join("workers"),
            self.root.join("proxies"),
        ] {
            create_private_dir(&dir)?;
        }
        let path = self.root.join("prefix");
        match std::fs::read_to_string(&path) {
            Ok(saved) if saved.trim() == self.subjects.prefix() => Ok(()),
            Ok(saved) => Err(AuthError::Invalid(format!(
                "{} holds credentials for subject prefix {:?}, not {:?}: pass --prefix {} or use another --dir",
                self.root.display(),
                saved.trim(),
                self.subjects.prefix(),
                saved.trim()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_replace(&path, format!("{}\n", self.subjects.prefix()).as_bytes(), Secret::No)
            }
            Err(e) => Err(AuthError::io(&path, e)),
        }
    }

    /// Makes a seed file for `role` unless there is one. Returns whether it made one.
    fn ensure_seed(&self, role: &Role) -> Result<bool> {
        let path = self.seed_file(role);
        if path.is_file() {
            read_key(&path)?; // a damaged seed is an error now, not at the next connect
            return Ok(false);
        }
        let seed = KeyPair::new_user()
            .seed()
            .map_err(|e| AuthError::seed(&path, e))?;
        write_new(&path, format!("{seed}\n").as_bytes(), Secret::Yes)?;
        Ok(true)
    }

    /// Makes the CA, the server certificate and one client certificate per identity, as far as
    /// they are missing; writes `tls.conf`. Returns what it made.
    fn ensure_tls(&self, hosts: &[String]) -> Result<Vec<String>> {
        let tls = self.tls();
        create_private_dir(tls.root())?;
        let ca = tls.ensure_ca()?;
        let mut made = Vec::new();
        if ca.created {
            made.push("CA".to_string());
        }
        let hosts = if hosts.is_empty() {
            self.saved_tls_hosts()
        } else {
            hosts.to_vec()
        };
        if tls.ensure_server(&ca, &hosts)? {
            made.push(format!("server certificate for {}", hosts.join(", ")));
        }
        for identity in self.identities()? {
            if tls.ensure_client(&ca, &identity.role.file_stem(), &identity.role.to_string())? {
                made.push(identity.role.to_string());
            }
        }
        let absolute =
            std::fs::canonicalize(tls.root()).map_err(|e| AuthError::io(tls.root(), e))?;
        write_replace(
            &self.tls_conf(),
            render_tls_conf(&absolute).as_bytes(),
            Secret::No,
        )?;
        Ok(made)
    }

    fn saved_tls_hosts(&self) -> Vec<String> {
        let saved =
            std::fs::read_to_string(self.tls().root().join("server.hosts")).unwrap_or_default();
        let hosts: Vec<String> = saved
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if hosts.is_empty() {
            DEFAULT_TLS_HOSTS.iter().map(|h| h.to_string()).collect()
        } else {
            hosts
        }
    }

    /// The roles named by `<sub>/<id>.nk` files, sorted by id.
    fn ids_in<E: std::fmt::Display>(
        &self,
        sub: &str,
        what: &str,
        role: impl Fn(&str) -> std::result::Result<Role, E>,
    ) -> Result<Vec<Role>> {
        let dir = self.root.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AuthError::io(&dir, e)),
        };
        let mut roles = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| AuthError::io(&dir, e))?.path();
            if path.extension().is_none_or(|x| x != "nk") {
                continue;
            }
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            roles.push(role(&id).map_err(|e| {
                AuthError::Invalid(format!(
                    "{}: the file name is not a valid {what}: {e}",
                    path.display()
                ))
            })?);
        }
        roles.sort();
        Ok(roles)
    }
}

fn read_key(path: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::io(path, e))?;
    KeyPair::from_seed(text.trim()).map_err(|e| AuthError::seed(path, e))
}

/// Whether a file holds a secret (written 0600) or not (0644).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Secret {
    Yes,
    No,
}

impl Secret {
    fn mode(self) -> u32 {
        match self {
            Secret::Yes => 0o600,
            Secret::No => 0o644,
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| AuthError::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AuthError::io(dir, e))?;
    }
    Ok(())
}

/// Writes a file that must not exist yet (a seed or a CA key is never overwritten).
pub(super) fn write_new(path: &Path, bytes: &[u8], secret: Secret) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(secret.mode())
        .open(path)
        .map_err(|e| AuthError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| AuthError::io(path, e))
}

/// Replaces a file atomically (write a sibling, then rename over it).
pub(super) fn write_replace(path: &Path, bytes: &[u8], secret: Secret) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes, secret)?;
    std::fs::rename(&tmp, path).map_err(|e| AuthError::io(path, e))
}
