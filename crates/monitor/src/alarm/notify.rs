//! The channels: a JSON webhook, a Slack-compatible webhook and SMTP e-mail.
//!
//! Each channel has its own queue and task, so a slow or dead receiver delays only itself and
//! its notices stay in order. A failed send is retried with doubling, jittered backoff (so
//! monitors and channels that failed together do not retry in step), then given up;
//! every failure is logged and counted, nothing panics. The queue is bounded: when a receiver
//! has been down long enough to fill it, new notices are dropped (and counted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::book::Notice;
use super::message::{mail_body, slack_text, subject, webhook_body};
use super::rules::{Channel, Email, SmtpTls};

/// Notices waiting per channel before new ones are dropped.
pub const QUEUE: usize = 1000;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct NotifyCounters {
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    /// Given up after the last retry.
    pub failed: AtomicU64,
    /// Queue full.
    pub dropped: AtomicU64,
}

/// How often and how patiently a send is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("alarm channel {channel:?}: {message}")]
    Setup { channel: String, message: String },
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

enum Sender {
    Webhook {
        url: hyper::Uri,
        http: HttpsClient,
    },
    Slack {
        url: hyper::Uri,
        http: HttpsClient,
    },
    Email {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        cfg: Box<Email>,
    },
}

/// The running channels. Dropping it stops their tasks.
pub struct Notifier {
    queues: BTreeMap<String, mpsc::Sender<Notice>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub counters: Arc<NotifyCounters>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Notifier {
    pub fn start(
        channels: &BTreeMap<String, Channel>,
        retry: Retry,
    ) -> Result<Notifier, NotifyError> {
        let counters = Arc::new(NotifyCounters::default());
        let http = https_client(None).map_err(|message| NotifyError::Setup {
            channel: String::new(),
            message,
        })?;
        let mut queues = BTreeMap::new();
        let mut tasks = Vec::new();
        for (name, ch) in channels {
            let setup = |message: String| NotifyError::Setup {
                channel: name.clone(),
                message,
            };
            // A channel with its own CA gets its own client; the others share one.
            let client = |ca: &Option<Vec<u8>>| match ca {
                None => Ok(http.clone()),
                Some(pem) => https_client(Some(pem)).map_err(setup),
            };
            let sender = match ch {
                Channel::Webhook { url, ca_pem } => Sender::Webhook {
                    url: url.clone(),
                    http: client(ca_pem)?,
                },
                Channel::Slack { url, ca_pem } => Sender::Slack {
                    url: url.clone(),
                    http: client(ca_pem)?,
                },
                Channel::Email(cfg) => Sender::Email {
                    transport: smtp(cfg).map_err(setup)?,
                    cfg: cfg.clone(),
                },
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            tasks.push(tokio::spawn(worker(
                name.clone(),
                sender,
                rx,
                retry,
                counters.clone(),
            )));
            queues.insert(name.clone(), tx);
        }
        Ok(Notifier {
            queues,
            tasks,
            counters,
        })
    }

    /// Queues one notice; never waits.
    pub fn send(&self, notice: Notice) {
        let Some(q) = self.queues.get(&notice.channel) else {
            tracing::warn!(channel = %notice.channel, "notice for an unknown channel dropped");
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Err(e) = q.try_send(notice) {
            let n = match e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(channel = %n.channel, rule = %n.alarm.rule, id = %n.alarm.id, dropped, "alarm channel queue full: notice dropped");
        }
    }
}

/// The certificates of a PEM file; an error when it holds none.
pub fn parse_ca(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it (want PEM: -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// A client for webhooks: http or https, trusting Mozilla's roots (as lettre does) and
/// `extra_ca` (PEM) when given.
fn https_client(extra_ca: Option<&[u8]>) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca {
        for cert in parse_ca(pem)? {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: unusable certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(SEND_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

fn smtp(cfg: &Email) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = |host: &str| {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(pem) = &cfg.ca_pem {
            b = b.add_root_certificate(
                Certificate::from_pem(pem).map_err(|e| format!("ca_file: {e}"))?,
            );
        }
        b.build_rustls()
            .map_err(|e| format!("TLS setup for {host}: {e}"))
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .timeout(Some(SEND_TIMEOUT));
    b = match cfg.tls {
        SmtpTls::None => b.tls(Tls::None),
        SmtpTls::Starttls => b.tls(Tls::Required(tls(&cfg.host)?)),
        SmtpTls::Tls => b.tls(Tls::Wrapper(tls(&cfg.host)?)),
    };
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        b = b.credentials(Credentials::new(user.clone(), pass.0.clone()));
    }
    Ok(b.build())
}

async fn worker(
    channel: String,
    sender: Sender,
    mut rx: mpsc::Receiver<Notice>,
    retry: Retry,
    counters: Arc<NotifyCounters>,
) {
    while let Some(n) = rx.recv().await {
        let span = tracing::info_span!("notify", channel = %channel, kind = sender.kind(), rule = %n.alarm.rule, id = %n.alarm.id, notice = n.kind.as_str());
        deliver(&sender, &n, retry, &counters)
            .instrument(span)
            .await;
    }
}

/// The waits between attempts: doubling from `first` up to `max`, each with random jitter.
fn backoff(retry: Retry) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(retry.first)
        .with_max_delay(retry.max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(retry.attempts.saturating_sub(1) as usize)
        .build()
}

async fn deliver(sender: &Sender, n: &Notice, retry: Retry, counters: &NotifyCounters) {
    let attempts = retry.attempts.max(1);
    let mut waits = backoff(retry);
    for attempt in 1..=attempts {
        let res = tokio::time::timeout(SEND_TIMEOUT * 2, sender.send(n))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match res {
            Ok(()) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(attempt, "alarm notice sent");
                return;
            }
            Err(error) if attempt < attempts => {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                let wait = waits.next().unwrap_or(retry.max);
                tracing::warn!(attempt, %error, retry_in = ?wait, "alarm notice failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) => {
                let failed = counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(attempt, %error, failed, "alarm notice given up");
            }
        }
    }
}

impl Sender {
    fn kind(&self) -> &'static str {
        match self {
            Sender::Webhook { .. } => "webhook",
            Sender::Slack { .. } => "slack",
            Sender::Email { .. } => "email",
        }
    }

    async fn send(&self, n: &Notice) -> Result<(), String> {
        match self {
            Sender::Webhook { url, http } => post(http, url, webhook_body(n)).await,
            Sender::Slack { url, http } => {
                post(
                    http,
                    url,
                    serde_json::to_vec(&serde_json::json!({ "text": slack_text(n) }))
                        .unwrap_or_default(),
                )
                .await
            }
            Sender::Email { transport, cfg } => {
                let mut b = Message::builder()
                    .from(cfg.from.clone())
                    .subject(subject(n))
                    .header(ContentType::TEXT_PLAIN);
                for to in &cfg.to {
                    b = b.to(to.clone());
                }
                let msg = b
                    .body(mail_body(n))
                    .map_err(|e| format!("building the mail: {e}"))?;
                transport
                    .send(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("SMTP {}:{}: {e}", cfg.host, cfg.port))
            }
        }
    }
}

async fn post(http: &HttpsClient, url: &hyper::Uri, body: Vec<u8>) -> Result<(), String> {
    let req = hyper::Request::post(url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("acs-monitor/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = http
        .request(req)
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    Err(format!("POST {url}: HTTP {status}: {excerpt}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_with_jitter_up_to_the_cap() {
        let retry = Retry {
            attempts: 6,
            first: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        let waits: Vec<Duration> = backoff(retry).collect();
        assert_eq!(waits.len(), 5, "one wait between each two attempts");
        // Each wait is its step (1, 2, 4, 4, 4 s) plus up to as much again of jitter.
        for (w, base) in waits.iter().zip([1, 2, 4, 4, 4]) {
            let base = Duration::from_secs(base);
            assert!(*w >= base && *w <= base * 2, "{waits:?}");
        }
        let again: Vec<Duration> = (0..8).flat_map(|_| backoff(retry)).collect();
        assert!(
            again.iter().any(|w| w.subsec_nanos() != 0),
            "no jitter: {again:?}"
        );
    }

    #[test]
    fn a_webhook_ca_must_hold_a_certificate() {
        assert!(parse_ca(b"not pem").unwrap_err().contains("no certificate"));
        let ca = rcgen::generate_simple_self_signed(vec!["hooks.example".into()]).unwrap();
        let pem = ca.cert.pem();
        assert_eq!(parse_ca(pem.as_bytes()).unwrap().len(), 1);
        assert!(https_client(Some(pem.as_bytes())).is_ok());
    }
}
