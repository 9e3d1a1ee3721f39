//! The channels of the rules file (`[channels.<name>]`): a JSON webhook, a Slack-compatible
//! webhook (each may trust its own CA for https) and SMTP e-mail, checked into typed values.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use serde::Deserialize;

use super::rules::RulesError;

type Result<T, E = RulesError> = std::result::Result<T, E>;

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text: only for a test server on loopback.
    None,
    /// Plain connect, then STARTTLS (required; port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A password read from a file; never printed.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// An extra CA (PEM) to trust for this server, e.g. a private one; Mozilla's roots always.
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    /// POST of the alarm as JSON. `ca_pem`: an extra CA (PEM) trusted for an https URL.
    Webhook {
        url: hyper::Uri,
        ca_pem: Option<Vec<u8>>,
    },
    /// POST of `{"text": "..."}` (Slack incoming webhooks, Mattermost, Rocket.Chat...).
    Slack {
        url: hyper::Uri,
        ca_pem: Option<Vec<u8>>,
    },
    Email(Box<Email>),
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Slack { .. } => "slack",
            Channel::Email(_) => "email",
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawChannel {
    Webhook {
        url: String,
        #[serde(default)]
        ca_file: Option<PathBuf>,
    },
    Slack {
        url: String,
        #[serde(default)]
        ca_file: Option<PathBuf>,
    },
    Email {
        host: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        tls: Option<SmtpTls>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
        #[serde(default)]
        ca_file: Option<PathBuf>,
        from: String,
        to: Vec<String>,
    },
}

/// The error of one field of the rule or channel being checked.
pub(super) type BadField<'a> = &'a dyn Fn(&'static str, String) -> RulesError;

pub(super) fn check_channel(raw: RawChannel, base: &Path, bad: BadField) -> Result<Channel> {
    Ok(match raw {
        RawChannel::Webhook { url, ca_file } => Channel::Webhook {
            ca_pem: webhook_ca(&url, ca_file, base).map_err(|e| bad("ca_file", e))?,
            url: check_url(&url).map_err(|e| bad("url", e))?,
        },
        RawChannel::Slack { url, ca_file } => Channel::Slack {
            ca_pem: webhook_ca(&url, ca_file, base).map_err(|e| bad("ca_file", e))?,
            url: check_url(&url).map_err(|e| bad("url", e))?,
        },
        RawChannel::Email {
            host,
            port,
            tls,
            username,
            password_file,
            ca_file,
            from,
            to,
        } => {
            if host.is_empty() {
                return Err(bad("host", "must not be empty".into()));
            }
            let tls = tls.unwrap_or(SmtpTls::Starttls);
            let port = port.unwrap_or(match tls {
                SmtpTls::None => 25,
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
            });
            let password = smtp_password(username.as_deref(), password_file, base, bad)?;
            if tls == SmtpTls::None && password.is_some() && !is_loopback(&host) {
                return Err(bad(
                    "tls",
                    "\"none\" would send the password in clear to a remote host; use starttls or tls".into(),
                ));
            }
            let from: Mailbox = from
                .parse()
                .map_err(|e| bad("from", format!("{from:?} is not an e-mail address: {e}")))?;
            if to.is_empty() {
                return Err(bad("to", "name at least one recipient".into()));
            }
            let to = to
                .iter()
                .map(|t| {
                    t.parse::<Mailbox>()
                        .map_err(|e| bad("to", format!("{t:?} is not an e-mail address: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let ca_pem = smtp_ca(ca_file, tls, base, bad)?;
            Channel::Email(Box::new(Email {
                host,
                port,
                tls,
                username,
                password,
                from,
                to,
                ca_pem,
            }))
        }
    })
}

/// The SMTP password, read from `password_file` (relative to the rules file); both it and a
/// username, or neither.
fn smtp_password(
    username: Option<&str>,
    password_file: Option<PathBuf>,
    base: &Path,
    bad: BadField,
) -> Result<Option<Secret>> {
    Ok(match (username, password_file) {
        (None, Some(_)) => return Err(bad("password_file", "given without a username".into())),
        (Some(_), None) => {
            return Err(bad(
                "password_file",
                "a username needs a password_file".into(),
            ))
        }
        (None, None) => None,
        (Some(_), Some(p)) => {
            let p = if p.is_relative() { base.join(p) } else { p };
            let text = std::fs::read_to_string(&p)
                .map_err(|e| bad("password_file", format!("{}: {e}", p.display())))?;
            Some(Secret(text.trim_end_matches(['\r', '\n']).to_string()))
        }
    })
}

/// The PEM of the SMTP server's `ca_file` (relative to the rules file), only with TLS.
fn smtp_ca(
    ca_file: Option<PathBuf>,
    tls: SmtpTls,
    base: &Path,
    bad: BadField,
) -> Result<Option<Vec<u8>>> {
    Ok(match ca_file {
        None => None,
        Some(_) if tls == SmtpTls::None => {
            return Err(bad(
                "ca_file",
                "is only for tls = \"starttls\" or \"tls\"".into(),
            ))
        }
        Some(p) => {
            let p = if p.is_relative() { base.join(p) } else { p };
            let pem =
                std::fs::read(&p).map_err(|e| bad("ca_file", format!("{}: {e}", p.display())))?;
            lettre::transport::smtp::client::Certificate::from_pem(&pem).map_err(|e| {
                bad(
                    "ca_file",
                    format!("{}: not a PEM certificate: {e}", p.display()),
                )
            })?;
            Some(pem)
        }
    })
}

/// The PEM of a webhook's `ca_file` (relative to the rules file), checked to hold certificates.
fn webhook_ca(url: &str, ca_file: Option<PathBuf>, base: &Path) -> Result<Option<Vec<u8>>, String> {
    let Some(p) = ca_file else {
        return Ok(None);
    };
    if !url.starts_with("https://") {
        return Err(format!("is only for https:// URLs, not {url:?}"));
    }
    let p = if p.is_relative() { base.join(p) } else { p };
    let pem = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    super::notify::parse_ca(&pem).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(Some(pem))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(uri)
}
