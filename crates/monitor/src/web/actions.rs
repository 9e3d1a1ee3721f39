//! What the dashboard may ask the brain, as request-reply on NATS: scale (`acs.cmd.scale`),
//! cordon/uncordon/drain (`acs.cmd.maintenance`), replace a replica (`acs.cmd.replica`) and
//! status (`acs.status`). Each answers with the brain's reply JSON, or an error naming why.

use std::time::Duration;

use acs_events::{
    decode, encode, MaintenanceAction, MaintenanceReply, MaintenanceRequest, ReplicaAction,
    ReplicaReply, ReplicaRequest, ScaleReply, ScaleRequest, StatusReply, Validate, SCHEMA_VERSION,
};
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Web;

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The brain's answer as it goes to the browser: HTTP status and JSON.
pub type Answer = (StatusCode, String);

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

fn answer(ok: bool, json: Vec<u8>) -> Answer {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, String::from_utf8_lossy(&json).into_owned())
}

fn unreachable(error: String) -> Answer {
    (
        StatusCode::BAD_GATEWAY,
        serde_json::json!({ "ok": false, "error": error }).to_string(),
    )
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
    let bad = |e: String| (StatusCode::BAD_REQUEST, encode(&ScaleReply::error(e))).into_answer();
    let b: ScaleBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return bad(format!(
                "body must be {{\"replicas\":N}} or {{\"auto\":true}}: {e}"
            ))
        }
    };
    let service = match service.parse() {
        Ok(s) => s,
        Err(e) => return bad(format!("service {service:?}: {e}")),
    };
    let req = ScaleRequest {
        v: SCHEMA_VERSION,
        service,
        replicas: b.replicas,
        auto: b.auto,
    };
    if let Err(e) = req.validate() {
        return bad(e);
    }
    match ask::<_, ScaleReply>(web, web.subjects.scale(), &req).await {
        Ok(r) => answer(r.ok, encode(&r)),
        Err(e) => unreachable(e),
    }
}

pub async fn maintenance(web: &Web, worker: &str, action: &str) -> Answer {
    let bad =
        |e: String| (StatusCode::BAD_REQUEST, encode(&MaintenanceReply::error(e))).into_answer();
    let action = match action {
        "cordon" => MaintenanceAction::Cordon,
        "uncordon" => MaintenanceAction::Uncordon,
        "drain" => MaintenanceAction::Drain,
        other => {
            return bad(format!(
                "unknown action {other:?} (cordon, uncordon, drain)"
            ))
        }
    };
    let worker = match worker.parse() {
        Ok(w) => w,
        Err(e) => return bad(format!("worker {worker:?}: {e}")),
    };
    let req = MaintenanceRequest {
        v: SCHEMA_VERSION,
        worker,
        action,
    };
    match ask::<_, MaintenanceReply>(web, web.subjects.maintenance(), &req).await {
        Ok(r) => answer(r.ok, encode(&r)),
        Err(e) => unreachable(e),
    }
}

pub async fn replace(web: &Web, replica: &str) -> Answer {
    let req = ReplicaRequest {
        v: SCHEMA_VERSION,
        replica: replica.to_string(),
        action: ReplicaAction::Replace,
    };
    if let Err(e) = req.validate() {
        return (StatusCode::BAD_REQUEST, encode(&ReplicaReply::error(e))).into_answer();
    }
    match ask::<_, ReplicaReply>(web, web.subjects.replica_command(), &req).await {
        Ok(r) => answer(r.ok, encode(&r)),
        Err(e) => unreachable(e),
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

trait IntoAnswer {
    fn into_answer(self) -> Answer;
}

impl IntoAnswer for (StatusCode, Vec<u8>) {
    fn into_answer(self) -> Answer {
        (self.0, String::from_utf8_lossy(&self.1).into_owned())
    }
}
