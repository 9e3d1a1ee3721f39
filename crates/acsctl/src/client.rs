//! NATS connection and the request/reply helpers behind `status` and `scale`.

use std::time::Duration;

use acs_events::{
    decode, encode, DecodeError, ScaleReply, ScaleRequest, StatusReply, Subjects, Validate,
};
use acs_node::{NatsArgs, NatsOptions, Refusals};

use acs_auth::{AuthDir, Role};
use async_nats::{Client, Request, RequestErrorKind};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Where `acsctl` looks for an operator identity when no credential flag is given: the local
/// cluster's (`acsctl up` writes `$ACS_DIR/auth`, default `.acs/auth`) and the compose demo's
/// (`scripts/compose-demo.sh` writes `.acs/compose/auth`), relative to the working directory
/// or the workspace.
pub const COMPOSE_AUTH_DIR: &str = ".acs/compose/auth";

/// The ways to connect, best first. Explicit flags (or `--nats-insecure`) give exactly one;
/// without them, one per cluster whose operator credentials are found on disk.
pub fn candidates(args: &NatsArgs, subjects: &Subjects, name: &str) -> Result<Vec<NatsOptions>> {
    let explicit = args.creds.is_some()
        || args.nkey.is_some()
        || args.user.is_some()
        || args.token.is_some()
        || args.insecure;
    if explicit {
        return Ok(vec![args.clone().into_options(name)?]);
    }
    let local = std::env::var_os("ACS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ".acs".into())
        .join("auth");
    let mut found = Vec::new();
    for dir in [local, COMPOSE_AUTH_DIR.into()] {
        let dir = acs_cluster::resolve_path(&dir);
        let auth = AuthDir::new(&dir, subjects.clone());
        if auth.seed_file(&Role::Operator).is_file() {
            for url in &args.servers {
                let mut o = auth.nats_options(&Role::Operator, url).with_name(name);
                o.servers = args.servers.clone();
                if !found.contains(&o) {
                    found.push(o);
                }
            }
        }
    }
    if found.is_empty() {
        // No cluster credentials on disk: the plain error says which flags to pass.
        return Ok(vec![args.clone().into_options(name)?]);
    }
    Ok(found)
}

/// [`connect`] with each candidate in turn; the first that is admitted wins. Also returns the
/// server's refusals on that connection, for [`unless_refused`].
pub async fn connect_any(
    candidates: &[NatsOptions],
    timeout: Duration,
) -> Result<(Client, NatsOptions, Refusals)> {
    let mut last = None;
    for c in candidates {
        match c.connect_once_watched(timeout).await {
            Ok((nc, refusals)) => return Ok((nc, c.clone(), refusals)),
            Err(e) => last = Some(Error::from(e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::Usage("no way to connect to NATS".into())))
}

/// Runs a request, and fails at once with [`Error::Denied`] if the server refuses something on
/// the connection meanwhile (a permissions violation: the request itself would only time out).
pub async fn unless_refused<T>(
    refusals: &Refusals,
    request: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let mark = refusals.mark();
    tokio::select! {
        r = request => r,
        e = refusals.since(mark) => Err(Error::Denied(e)),
    }
}

/// Connects once and fails fast with a readable error: for one-shot commands, where a user waits.
pub async fn connect(nats: &NatsOptions, timeout: Duration) -> Result<Client> {
    Ok(nats.connect_once(timeout).await?)
}

/// Connects in the background and keeps reconnecting: for long-running commands (`watch`),
/// which should survive a NATS restart. Disconnects are reported on stderr.
pub async fn connect_background(nats: &NatsOptions) -> Result<Client> {
    let who = nats.name.clone();
    nats.connect_options()
        .await?
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let who = who.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        eprintln!("-- disconnected from NATS; reconnecting")
                    }
                    async_nats::Event::Connected => eprintln!("-- connected to NATS"),
                    // Failed reconnect attempts repeat with backoff; one "disconnected" says enough.
                    async_nats::Event::ClientError(_) => {}
                    other => acs_node::nats::log_event(&who, &other),
                }
            }
        })
        .connect(&nats.servers)
        .await
        .map_err(|e| Error::Connect {
            url: nats.servers_display(),
            reason: e.to_string(),
        })
}

/// Sends `payload` on `subject` and returns the raw reply payload.
pub async fn request(
    nc: &Client,
    subjects: &Subjects,
    subject: String,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<bytes::Bytes> {
    let req = Request::new()
        .payload(payload.into())
        .timeout(Some(timeout));
    match nc.send_request(subject.clone(), req).await {
        Ok(msg) => Ok(msg.payload),
        Err(e) => Err(match e.kind() {
            RequestErrorKind::NoResponders => Error::NoResponders {
                subject,
                prefix: subjects.prefix().to_string(),
            },
            RequestErrorKind::TimedOut => Error::Timeout { subject, timeout },
            _ => Error::Request {
                subject,
                reason: e.to_string(),
            },
        }),
    }
}

/// Decodes a reply: `{"ok":false,"error":..}` becomes [`Error::Refused`], anything else must
/// decode as `T`.
pub fn parse_reply<T>(subject: &str, payload: &[u8]) -> Result<T>
where
    T: DeserializeOwned + Validate + acs_events::codec::Versioned,
{
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(payload)
    {
        if obj.get("ok") == Some(&serde_json::Value::Bool(false)) {
            let msg = obj
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("(the reply gave no reason)")
                .to_string();
            return Err(Error::Refused(msg));
        }
    }
    decode::<T>(payload).map_err(|e: DecodeError| Error::BadReply {
        subject: subject.to_string(),
        reason: format!("{e} (payload: {})", crate::watch::raw_text(payload, 200)),
    })
}

/// Asks the brain for its status: whole while small, else a summary without lists.
pub async fn status(nc: &Client, subjects: &Subjects, timeout: Duration) -> Result<StatusReply> {
    status_page(nc, subjects, &acs_events::StatusRequest::default(), timeout).await
}

/// Asks the brain for its status, or for a page of one service's replicas or of the workers.
pub async fn status_page(
    nc: &Client,
    subjects: &Subjects,
    req: &acs_events::StatusRequest,
    timeout: Duration,
) -> Result<StatusReply> {
    let subject = subjects.status();
    let payload = request(nc, subjects, subject.clone(), status_request(req), timeout).await?;
    parse_reply(&subject, &payload)
}

/// `{}` for the default request (what every brain understands), else the page request at v1.
fn status_request(req: &acs_events::StatusRequest) -> Vec<u8> {
    if *req == acs_events::StatusRequest::default() {
        return b"{}".to_vec();
    }
    acs_events::encode(&acs_events::StatusRequest {
        v: acs_events::SCHEMA_VERSION,
        ..req.clone()
    })
}

/// Asks the brain for its status and returns the reply as JSON, checked but not reshaped.
pub async fn status_raw(
    nc: &Client,
    subjects: &Subjects,
    req: &acs_events::StatusRequest,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let subject = subjects.status();
    let payload = request(nc, subjects, subject.clone(), status_request(req), timeout).await?;
    let _: StatusReply = parse_reply(&subject, &payload)?;
    serde_json::from_slice(&payload).map_err(|e| Error::BadReply {
        subject,
        reason: e.to_string(),
    })
}

/// Sends a manual scale request.
pub async fn scale(
    nc: &Client,
    subjects: &Subjects,
    req: &ScaleRequest,
    timeout: Duration,
) -> Result<ScaleReply> {
    ask(nc, subjects, subjects.scale(), req, timeout).await
}

/// `acs.cmd.maintenance`: cordon, uncordon or drain a worker.
pub async fn maintenance(
    nc: &Client,
    subjects: &Subjects,
    req: &acs_events::MaintenanceRequest,
    timeout: Duration,
) -> Result<acs_events::MaintenanceReply> {
    ask(nc, subjects, subjects.maintenance(), req, timeout).await
}

/// One checked request: `req` is validated first (a bad one never leaves), the reply is
/// decoded as `Rep`, and `{"ok":false}` becomes [`Error::Refused`].
pub async fn ask<Req, Rep>(
    nc: &Client,
    subjects: &Subjects,
    subject: String,
    req: &Req,
    timeout: Duration,
) -> Result<Rep>
where
    Req: serde::Serialize + Validate,
    Rep: DeserializeOwned + Validate + acs_events::codec::Versioned,
{
    req.validate().map_err(Error::Usage)?;
    let payload = request(nc, subjects, subject.clone(), encode(req), timeout).await?;
    parse_reply(&subject, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_brains_words() {
        let err = parse_reply::<ScaleReply>(
            "acs.cmd.scale",
            br#"{"ok":false,"error":"unknown service \"x\""}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Refused(m) if m == "unknown service \"x\""),
            "{err}"
        );
        let err = parse_reply::<StatusReply>("acs.status", br#"{"ok":false}"#).unwrap_err();
        assert!(err.to_string().contains("no reason"), "{err}");
    }

    #[test]
    fn garbage_replies_are_reported_not_panicked_on() {
        for bad in [&b"not json"[..], b"", b"[1,2]", br#"{"ok":true}"#] {
            let err = parse_reply::<StatusReply>("acs.status", bad).unwrap_err();
            assert!(matches!(err, Error::BadReply { .. }), "{err}");
        }
    }

    #[test]
    fn good_scale_reply() {
        let r: ScaleReply = parse_reply(
            "acs.cmd.scale",
            br#"{"ok":true,"service":"web","previous":2,"replicas":3,"mode":"manual"}"#,
        )
        .unwrap();
        assert_eq!(r.replicas, Some(3));
    }
}
