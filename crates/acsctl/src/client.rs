//! NATS connection and the request/reply helpers behind `status` and `scale`.

use std::time::Duration;

use acs_events::{
    decode, encode, DecodeError, ScaleReply, ScaleRequest, StatusReply, Subjects, Validate,
};
use async_nats::{Client, ConnectOptions, Request, RequestErrorKind};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Connects once and fails fast with a readable error: for one-shot commands, where a user waits.
pub async fn connect(url: &str, timeout: Duration) -> Result<Client> {
    ConnectOptions::new()
        .name("acsctl")
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .connect(url)
        .await
        .map_err(|e| Error::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// Connects in the background and keeps reconnecting: for long-running commands (`watch`),
/// which should survive a NATS restart. Disconnects are reported on stderr.
pub async fn connect_background(url: &str, name: &str) -> Result<Client> {
    ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    eprintln!("-- disconnected from NATS; reconnecting")
                }
                async_nats::Event::Connected => eprintln!("-- connected to NATS"),
                // Failed reconnect attempts repeat with backoff; one "disconnected" says enough.
                async_nats::Event::ClientError(_) => {}
                other => eprintln!("-- NATS: {other}"),
            }
        })
        .connect(url)
        .await
        .map_err(|e| Error::Connect {
            url: url.to_string(),
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

/// Asks the brain for its status.
pub async fn status(nc: &Client, subjects: &Subjects, timeout: Duration) -> Result<StatusReply> {
    let subject = subjects.status();
    let payload = request(nc, subjects, subject.clone(), b"{}".to_vec(), timeout).await?;
    parse_reply(&subject, &payload)
}

/// Asks the brain for its status and returns the reply as JSON, checked but not reshaped.
pub async fn status_raw(
    nc: &Client,
    subjects: &Subjects,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let subject = subjects.status();
    let payload = request(nc, subjects, subject.clone(), b"{}".to_vec(), timeout).await?;
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
    req.validate().map_err(Error::Usage)?;
    let subject = subjects.scale();
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
