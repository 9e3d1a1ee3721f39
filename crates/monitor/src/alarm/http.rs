//! The alarms over HTTP, for the router in `crate::http` (which has already checked the
//! caller): `GET /api/v1/alarms[?rule=..&id=..]`, `POST /api/v1/alarms/{rule}/ack`, `/unack`,
//! `/silence`, `/unsilence` with a JSON body `{"id":"w1","by":"ana","for_ms":3600000,
//! "comment":"..."}`. Each becomes an `AlarmRequest` on `acs.monitor.alarms`, so whichever
//! monitor serves the page, the lease holder answers; the body is its `AlarmReply`.

use std::time::Duration;

use acs_events::{encode, AlarmAction, AlarmReply, AlarmRequest, Subjects, SCHEMA_VERSION};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::book::NO_RULE;

pub const ALARMS_PATH: &str = "/api/v1/alarms";
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Answers one request below `/api/v1/alarms`. `rest` is the path after it, split on `/`
/// (`[]` or `["cpu_high", "ack"]`); `query` the raw query string; `body` the request body.
/// Returns the status and the `AlarmReply` JSON.
pub async fn answer(
    client: &async_nats::Client,
    subjects: &Subjects,
    method: &Method,
    rest: &[&str],
    query: &str,
    body: Result<Bytes, String>,
) -> (StatusCode, String) {
    let bad = |status: StatusCode, e: String| {
        (
            status,
            String::from_utf8(encode(&AlarmReply::error(e))).unwrap_or_default(),
        )
    };
    let req = match request(method, rest, query, body) {
        Ok(r) => r,
        Err((status, e)) => return bad(status, e),
    };
    if let Err(e) = acs_events::Validate::validate(&req) {
        return bad(StatusCode::BAD_REQUEST, e);
    }
    let asked = tokio::time::timeout(
        ASK_TIMEOUT,
        client.request(subjects.monitor_alarms(), encode(&req).into()),
    )
    .await;
    let msg = match asked {
        Ok(Ok(m)) => m,
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
            return bad(
                StatusCode::SERVICE_UNAVAILABLE,
                "no monitor evaluates alarms: start acs-monitor with --alarms FILE (or one is taking over the lease; retry)".into(),
            )
        }
        Ok(Err(e)) => return bad(StatusCode::BAD_GATEWAY, format!("asking {}: {e}", subjects.monitor_alarms())),
        Err(_) => return bad(StatusCode::GATEWAY_TIMEOUT, format!("no answer on {} within {ASK_TIMEOUT:?}", subjects.monitor_alarms())),
    };
    match acs_events::decode::<AlarmReply>(&msg.payload) {
        Ok(r) if r.ok => (
            StatusCode::OK,
            String::from_utf8_lossy(&msg.payload).into_owned(),
        ),
        Ok(r) => {
            let e = r.error.unwrap_or_default();
            let status = if e.starts_with(NO_RULE) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            bad(status, e)
        }
        Err(e) => bad(
            StatusCode::BAD_GATEWAY,
            format!("the monitor's alarm reply is unreadable: {e}"),
        ),
    }
}

fn request(
    method: &Method,
    rest: &[&str],
    query: &str,
    body: Result<Bytes, String>,
) -> Result<AlarmRequest, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let mut req = AlarmRequest {
        v: SCHEMA_VERSION,
        action: AlarmAction::List,
        rule: None,
        id: None,
        by: None,
        for_ms: None,
        comment: None,
    };
    match (method, rest) {
        (&Method::GET, [] | [""]) => {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match k {
                    "rule" => req.rule = Some(v.to_string()),
                    "id" => req.id = Some(v.to_string()),
                    other => {
                        return Err(bad(format!(
                            "unknown parameter {other:?} (known: rule, id)"
                        )))
                    }
                }
            }
            Ok(req)
        }
        (_, [] | [""]) => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {ALARMS_PATH}; use GET"),
        )),
        (&Method::POST, [rule, action]) => {
            req.action = match *action {
                "ack" => AlarmAction::Ack,
                "unack" => AlarmAction::Unack,
                "silence" => AlarmAction::Silence,
                "unsilence" => AlarmAction::Unsilence,
                other => {
                    return Err((
                        StatusCode::NOT_FOUND,
                        format!(
                            "no alarm action {other:?}; POST {ALARMS_PATH}/{{rule}}/ack, unack, silence or unsilence"
                        ),
                    ))
                }
            };
            let body = body.map_err(bad)?;
            let b: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
                ActionBody::default()
            } else {
                serde_json::from_slice(&body).map_err(|e| bad(format!("bad JSON body: {e}")))?
            };
            req.rule = Some(rule.to_string());
            (req.id, req.by, req.for_ms, req.comment) = (b.id, b.by, b.for_ms, b.comment);
            Ok(req)
        }
        (_, [_, _]) => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed; use POST"),
        )),
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no such endpoint {ALARMS_PATH}/{}", rest.join("/")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        method: Method,
        rest: &[&str],
        query: &str,
        body: &str,
    ) -> Result<AlarmRequest, (StatusCode, String)> {
        request(&method, rest, query, Ok(Bytes::from(body.to_string())))
    }

    #[test]
    fn paths_and_bodies_become_requests() {
        let r = req(Method::GET, &[], "rule=cpu_high&id=w1", "").unwrap();
        assert_eq!(
            (r.action, r.rule.as_deref(), r.id.as_deref()),
            (AlarmAction::List, Some("cpu_high"), Some("w1"))
        );
        let r = req(
            Method::POST,
            &["cpu_high", "ack"],
            "",
            r#"{"id":"w1","by":"ana","for_ms":60000}"#,
        )
        .unwrap();
        assert_eq!(
            (r.action, r.by.as_deref(), r.for_ms),
            (AlarmAction::Ack, Some("ana"), Some(60000))
        );
        assert_eq!(
            req(Method::POST, &["cpu_high", "mute"], "", "")
                .unwrap_err()
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            req(Method::DELETE, &[], "", "").unwrap_err().0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            req(Method::GET, &["cpu_high", "ack"], "", "")
                .unwrap_err()
                .0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let e = req(Method::POST, &["cpu_high", "ack"], "", r#"{"who":"ana"}"#).unwrap_err();
        assert!(
            e.0 == StatusCode::BAD_REQUEST && e.1.contains("who"),
            "{e:?}"
        );
        assert!(req(Method::GET, &[], "colour=red", "")
            .unwrap_err()
            .1
            .contains("colour"));
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
