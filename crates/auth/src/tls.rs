//! A local CA and the certificates it signs (rcgen): one server certificate for the names the
//! server is reached by, one client certificate per identity for mutual TLS.
//!
//! Files, under `<auth dir>/tls/`: `ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem`,
//! `server.hosts` (the names the server certificate was made for), and per identity
//! `<stem>.pem` / `<stem>-key.pem` (`brain.pem`, `workers/w1.pem`, ...). Keys are written 0600.
//! Everything that exists is kept: the CA is made once, a server certificate is made again only
//! when the host list changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::store::{write_new, write_replace, Secret};
use super::{AuthError, Result};

/// How long the certificates made here are valid.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 86400);
const CA_NAME: &str = "acs local CA";

/// The TLS folder of an auth directory.
#[derive(Debug, Clone)]
pub struct TlsDir {
    root: PathBuf,
}

/// The loaded CA, ready to sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Made by this call, so every certificate signed by an older CA must be made again.
    pub created: bool,
}

impl TlsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server-key.pem")
    }
    fn server_hosts(&self) -> PathBuf {
        self.root.join("server.hosts")
    }
    /// `(certificate, key)` of an identity.
    pub fn client(&self, stem: &Path) -> (PathBuf, PathBuf) {
        let base = self.root.join(stem);
        let name = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            base.with_file_name(format!("{name}.pem")),
            base.with_file_name(format!("{name}-key.pem")),
        )
    }

    /// TLS is set up when the CA and its key are there.
    pub fn enabled(&self) -> bool {
        self.ca().is_file() && self.ca_key().is_file()
    }

    /// Loads the CA, or makes one when there is none.
    pub fn ensure_ca(&self) -> Result<Ca> {
        let (cert, key) = (self.ca(), self.ca_key());
        if key.is_file() {
            let pem = std::fs::read_to_string(&key).map_err(|e| AuthError::io(&key, e))?;
            let key_pair = KeyPair::from_pem(&pem).map_err(|e| AuthError::tls(&key, e))?;
            if !cert.is_file() {
                return Err(AuthError::Invalid(format!(
                    "{} exists without {}: remove the tls folder to make a new CA",
                    key.display(),
                    cert.display()
                )));
            }
            // Same name, key and key-id method as when it was made: what signing needs.
            let issuer = Issuer::new(ca_params(), key_pair);
            return Ok(Ca {
                issuer,
                created: false,
            });
        }
        if cert.is_file() {
            return Err(AuthError::Invalid(format!(
                "{} exists without its key {}: remove the tls folder to make a new CA",
                cert.display(),
                key.display()
            )));
        }
        let key_pair = KeyPair::generate().map_err(|e| AuthError::tls(&key, e))?;
        let params = ca_params();
        let pem = params
            .self_signed(&key_pair)
            .map_err(|e| AuthError::tls(&cert, e))?
            .pem();
        write_new(&key, key_pair.serialize_pem().as_bytes(), Secret::Yes)?;
        write_new(&cert, pem.as_bytes(), Secret::No)?;
        Ok(Ca {
            issuer: Issuer::new(params, key_pair),
            created: true,
        })
    }

    /// Makes the server certificate for `hosts` (DNS names or IP addresses) unless one for the
    /// same hosts, from the same CA, is there. Returns whether it made one.
    pub fn ensure_server(&self, ca: &Ca, hosts: &[String]) -> Result<bool> {
        let wanted = hosts.join("\n") + "\n";
        let current = std::fs::read_to_string(self.server_hosts()).unwrap_or_default();
        if !ca.created
            && current == wanted
            && self.server_cert().is_file()
            && self.server_key().is_file()
        {
            return Ok(false);
        }
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(|e| AuthError::tls(&self.server_cert(), e))?;
        params.distinguished_name = name(hosts.first().map_or("acs nats-server", |h| h.as_str()));
        // ClientAuth too: in a NATS cluster each server dials the others' route port with this
        // certificate, and nats-server always verifies route peers (mutual TLS).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(ca, params, &self.server_cert(), &self.server_key())?;
        write_replace(&self.server_hosts(), wanted.as_bytes(), Secret::No)?;
        Ok(true)
    }

    /// Makes a client certificate for an identity unless it is there. `common_name` names it.
    pub fn ensure_client(&self, ca: &Ca, stem: &Path, common_name: &str) -> Result<bool> {
        let (cert, key) = self.client(stem);
        if !ca.created && cert.is_file() && key.is_file() {
            return Ok(false);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(ca, params, &cert, &key)?;
        Ok(true)
    }

    /// Removes an identity's client certificate and key (revocation proper is the nkey's
    /// removal from `auth.conf`: there is no CRL, so a copied certificate still passes TLS).
    pub fn remove_client(&self, stem: &Path) -> Result<()> {
        let (cert, key) = self.client(stem);
        for p in [cert, key] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AuthError::io(&p, e)),
            }
        }
        Ok(())
    }

    fn issue(&self, ca: &Ca, mut params: CertificateParams, cert: &Path, key: &Path) -> Result<()> {
        set_validity(&mut params);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key_pair = KeyPair::generate().map_err(|e| AuthError::tls(key, e))?;
        let signed = params
            .signed_by(&key_pair, &ca.issuer)
            .map_err(|e| AuthError::tls(cert, e))?;
        write_replace(key, key_pair.serialize_pem().as_bytes(), Secret::Yes)?;
        write_replace(cert, signed.pem().as_bytes(), Secret::No)
    }
}

/// The CA's parameters; deterministic (but for validity, which signing does not use), so that a
/// saved CA key plus these is the same issuer as when the CA was made.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Auto Cloud Scaler");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from a day ago (clock skew between containers) for [`VALIDITY`].
fn set_validity(params: &mut CertificateParams) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    params.not_before =
        rcgen::date_time_ymd(1970, 1, 1) + since_epoch.saturating_sub(Duration::from_secs(86400));
    params.not_after = params.not_before + VALIDITY;
}
