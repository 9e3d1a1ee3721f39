//! The alarms over HTTP, for the routes in `crate::http` (which have already checked the
//! caller): `GET /api/v1/alarms[?rule=..&id=..]`, `POST /api/v1/alarms/{rule}/ack`, `/unack`,
//! `/silence`, `/unsilence` with a JSON body `{"id":"w1","by":"ana","for_ms":3600000,
//! "comment":"..."}`. Each becomes an `AlarmRequest` on `acs.monitor.alarms`, so whichever
//! monitor serves the page, the lease holder answers; the body is its `AlarmReply`.

use std::time::Duration;

use acs_events::{encode, AlarmAction, AlarmReply, AlarmRequest, Subjects, SCHEMA_VERSION};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;

use super::book::NO_RULE;
use crate::http::problem::{Problem, Result};

pub const ALARMS_PATH: &str = "/api/v1/alarms";
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// The query of a list: `?rule=..&id=..`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

/// The body of an ack or silence.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    for_ms: Option<u64>,
    #[serde(default)]
    comment: Option<String>,
}

fn new_request(action: AlarmAction) -> AlarmRequest {
    AlarmRequest {
        v: SCHEMA_VERSION,
        action,
        rule: None,
        id: None,
        by: None,
        for_ms: None,
        comment: None,
    }
}

/// `GET /api/v1/alarms`.
pub fn list_request(q: ListQuery) -> AlarmRequest {
    AlarmRequest {
        rule: q.rule,
        id: q.id,
        ..new_request(AlarmAction::List)
    }
}

/// `POST /api/v1/alarms/{rule}/{action}` with its JSON body (empty: no fields).
pub fn action_request(rule: &str, action: &str, body: &[u8]) -> Result<AlarmRequest> {
    let action = match action {
        "ack" => AlarmAction::Ack,
        "unack" => AlarmAction::Unack,
        "silence" => AlarmAction::Silence,
        "unsilence" => AlarmAction::Unsilence,
        other => {
            return Err(Problem::not_found(format!(
                "no alarm action {other:?}; POST {ALARMS_PATH}/{{rule}}/ack, unack, silence or unsilence"
            )))
        }
    };
    let b: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Problem::bad_request(format!("bad JSON body: {e}")))?
    };
    Ok(AlarmRequest {
        rule: Some(rule.to_string()),
        id: b.id,
        by: b.by,
        for_ms: b.for_ms,
        comment: b.comment,
        ..new_request(action)
    })
}

/// Sends `req` on `acs.monitor.alarms`; the lease holder's `AlarmReply` JSON, or the problem.
pub async fn ask(
    client: &async_nats::Client,
    subjects: &Subjects,
    req: &AlarmRequest,
) -> Result<Bytes> {
    acs_events::Validate::validate(req).map_err(Problem::bad_request)?;
    let asked = tokio::time::timeout(
        ASK_TIMEOUT,
        client.request(subjects.monitor_alarms(), encode(req).into()),
    )
    .await;
    let msg = match asked {
        Ok(Ok(m)) => m,
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no monitor evaluates alarms: start acs-monitor with --alarms FILE (or one is taking over the lease; retry)",
            ))
        }
        Ok(Err(e)) => return Err(Problem::bad_gateway(format!("asking {}: {e}", subjects.monitor_alarms()))),
        Err(_) => return Err(Problem::new(StatusCode::GATEWAY_TIMEOUT, format!("no answer on {} within {ASK_TIMEOUT:?}", subjects.monitor_alarms()))),
    };
    match acs_events::decode::<AlarmReply>(&msg.payload) {
        Ok(r) if r.ok => Ok(msg.payload),
        Ok(r) => {
            let e = r.error.unwrap_or_default();
            let status = if e.starts_with(NO_RULE) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(Problem::new(status, e))
        }
        Err(e) => Err(Problem::bad_gateway(format!(
            "the monitor's alarm reply is unreadable: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_bodies_become_requests() {
        let r = list_request(ListQuery {
            rule: Some("cpu_high".into()),
            id: Some("w1".into()),
        });
        assert_eq!(
            (r.action, r.rule.as_deref(), r.id.as_deref()),
            (AlarmAction::List, Some("cpu_high"), Some("w1"))
        );
        let r = action_request(
            "cpu_high",
            "ack",
            br#"{"id":"w1","by":"ana","for_ms":60000}"#,
        )
        .unwrap();
        assert_eq!(
            (r.action, r.by.as_deref(), r.for_ms),
            (AlarmAction::Ack, Some("ana"), Some(60000))
        );
        assert_eq!(
            action_request("cpu_high", "mute", b"").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(action_request("cpu_high", "ack", b"  ").unwrap().by, None);
        let e = action_request("cpu_high", "ack", br#"{"who":"ana"}"#).unwrap_err();
        assert!(
            e.status == StatusCode::BAD_REQUEST && e.detail.contains("who"),
            "{e:?}"
        );
    }

    /// docs/monitor-openapi.yaml documents every alarm path.
    #[test]
    fn the_openapi_document_matches() {
        let doc = include_str!("../../../../docs/monitor-openapi.yaml");
        assert!(doc.contains(&format!("  {ALARMS_PATH}:")));
        for a in ["ack", "unack", "silence", "unsilence"] {
            assert!(
                doc.contains(&format!("  {ALARMS_PATH}/{{rule}}/{a}:")),
                "{a} is not documented"
            );
        }
    }
}
