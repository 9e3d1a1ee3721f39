//! What the dashboard may ask the brain, as request-reply on NATS: scale (`acs.cmd.scale`),
//! cordon/uncordon/drain (`acs.cmd.maintenance`), replace a replica (`acs.cmd.replica`) and
//! status (`acs.status`). Each answers with the brain's reply JSON, or a [`Problem`] naming why:
//! 400 for a bad request, 422 when the brain refuses, 502 when no brain answers.

use std::time::Duration;

use acs_events::{
    decode, encode, MaintenanceAction, MaintenanceReply, MaintenanceRequest, ReplicaAction,
    ReplicaReply, ReplicaRequest, ScaleReply, ScaleRequest, StatusReply, Validate, SCHEMA_VERSION,
};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Web;
use crate::http::problem::Problem;

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The brain's reply JSON as it goes to the browser, or why there is none.
pub type Answer = Result<String, Problem>;

/// Sends `req` on `subject`; the reply decoded as `R` (so a malformed one is refused), with
/// whether it says `ok`.
async fn ask<Q: Serialize, R>(web: &Web, subject: String, req: &Q) -> Result<R, String>
where
    R: DeserializeOwned + Validate + acs_events::codec::Versioned,
{
    let asked = web.nats.request(subject.clone(), encode(req).into());
    let m = match tokio::time::timeout(TIMEOUT, asked).await {
        Err(_) => return Err(format!("no answer on {subject} within {}s (is a brain leading?)", TIMEOUT.as_secs())),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(format!("nobody answers {subject}: no brain is running, or it does not handle this request yet"))
        }
        Ok(Err(e)) => return Err(format!("asking on {subject} failed: {e}")),
        Ok(Ok(m)) => m,
    };
    decode::<R>(&m.payload).map_err(|e| format!("the reply on {subject} is malformed: {e}"))
}

/// The reply as it goes to the browser: a refusal (`ok: false`) is a 422 naming the brain's
/// reason.
fn answer(ok: bool, json: Vec<u8>) -> Answer {
    let json = String::from_utf8_lossy(&json).into_owned();
    if ok {
        return Ok(json);
    }
    let error = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the brain refused without a reason".into());
    Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error))
}

/// The body of `POST /api/v1/services/{name}/scale`: `{"replicas":3}` or `{"auto":true}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    #[serde(default)]
    replicas: Option<i64>,
    #[serde(default)]
    auto: bool,
}

pub async fn scale(web: &Web, service: &str, body: &[u8]) -> Answer {
    let b: ScaleBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return Err(Problem::bad_request(format!(
                "body must be {{\"replicas\":N}} or {{\"auto\":true}}: {e}"
            )))
        }
    };
    let service = match service.parse() {
        Ok(s) => s,
        Err(e) => return Err(Problem::bad_request(format!("service {service:?}: {e}"))),
    };
    let req = ScaleRequest {
        v: SCHEMA_VERSION,
        service,
        replicas: b.replicas,
        auto: b.auto,
    };
    req.validate().map_err(Problem::bad_request)?;
    match ask::<_, ScaleReply>(web, web.subjects.scale(), &req).await {
        Ok(r) => answer(r.ok, encode(&r)),
        Err(e) => Err(Problem::bad_gateway(e)),
    }
}

pub async fn maintenance(web: &Web, worker: &str, action: &str) -> Answer {
    let action = match action {
        "cordon" => MaintenanceAction::Cordon,
        "uncordon" => MaintenanceAction::Uncordon,
        "drain" => MaintenanceAction::Drain,
        other => {
            return Err(Problem::bad_request(format!(
                "unknown action {other:?} (cordon, uncordon, drain)"
            )))
        }
    };
    let worker = match worker.parse() {
        Ok(w) => w,
        Err(e) => return Err(Problem::bad_request(format!("worker {worker:?}: {e}"))),
    };
    let req = MaintenanceRequest {
        v: SCHEMA_VERSION,
        worker,
        action,
    };
    match ask::<_, MaintenanceReply>(web, web.subjects.maintenance(), &req).await {
        Ok(r) => answer(r.ok, encode(&r)),
        Err(e) => Err(Problem::bad_gateway(e)),
    }
}

pub async fn replace(web: &Web, replica: &str) -> Answer {
    let req = ReplicaRequest {
        v: SCHEMA_VERSION,
        replica: replica.to_string(),
        action: ReplicaAction::Replace,
    };
    req.validate().map_err(Problem::bad_request)?;
    match ask::<_, ReplicaReply>(web, web.subjects.replica_command(), &req).await {
        Ok(r) => answer(r.ok, encode(&r)),
        Err(e) => Err(Problem::bad_gateway(e)),
    }
}

/// `acs.status`, as one line of JSON.
pub async fn status(web: &Web) -> Result<String, String> {
    let r: StatusReply = ask(
        web,
        web.subjects.status(),
        &acs_events::StatusRequest {
            v: SCHEMA_VERSION,
            ..Default::default()
        },
    )
    .await?;
    Ok(String::from_utf8_lossy(&encode(&r)).into_owned())
}
