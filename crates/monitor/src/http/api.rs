//! The `/api/v1` handlers (the caller is already checked), and `/healthz`, `/readyz`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use acs_events::encode;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, OriginalUri, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::auth::Caller;
use super::params::{HistoryParams, StatsParams};
use super::problem::{Path, Problem, Query, Result};
use super::{App, STATS_PATH};
use crate::alarm::http as alarms_http;
use crate::service::unix_ms;
use crate::web::actions;

/// How long `/readyz` waits for NATS and JetStream.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A JSON answer of 200.
fn json(body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

fn bytes_json(body: Vec<u8>) -> Response {
    json(String::from_utf8_lossy(&body).into_owned())
}

/// The request body, at most the router's limit.
fn body(b: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    b.map_err(|e| {
        Problem::new(
            e.status(),
            format!("could not read the request body: {}", e.body_text()),
        )
    })
}

pub async fn stats(State(app): State<App>, Query(q): Query<StatsParams>) -> Result<Response> {
    let stats = q.into_request().map_err(Problem::bad_request)?;
    app.shared.counters.queries.fetch_add(1, Ordering::Relaxed);
    let reply = crate::service::answer(&app.shared, &stats, unix_ms()).await;
    match reply.ok {
        true => Ok(bytes_json(encode(&reply))),
        false => Err(Problem::bad_request(reply.error.unwrap_or_default())),
    }
}

pub async fn history(State(app): State<App>, Query(q): Query<HistoryParams>) -> Result<Response> {
    let q = q.into_request().map_err(Problem::bad_request)?;
    app.shared.counters.queries.fetch_add(1, Ordering::Relaxed);
    let js = async_nats::jetstream::new(app.web.nats.clone());
    let reply = crate::history::query(&js, &app.web.subjects, &q, unix_ms()).await;
    match reply.ok {
        true => Ok(bytes_json(encode(&reply))),
        false => Err(Problem::bad_gateway(reply.error.unwrap_or_default())),
    }
}

pub async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    crate::web::sse::response(&app.web, last.as_deref()).into_response()
}

pub async fn session(Extension(who): Extension<Caller>) -> Response {
    let (csrf, auth) = match who {
        Caller::Session { csrf, .. } => (csrf, "session"),
        Caller::Bearer => (String::new(), "bearer"),
        _ => ("insecure".into(), "insecure"),
    };
    json(serde_json::json!({ "csrf": csrf, "auth": auth }).to_string())
}

pub async fn status(State(app): State<App>) -> Result<Response> {
    let j = actions::status(&app.web)
        .await
        .map_err(Problem::bad_gateway)?;
    Ok(json(j))
}

/// Logs and counts one action sent to the brain, and answers with the brain's reply.
fn act(app: &App, OriginalUri(uri): OriginalUri, answer: actions::Answer) -> Result<Response> {
    let total = app.web.counters.actions.fetch_add(1, Ordering::Relaxed) + 1;
    let status = answer
        .as_ref()
        .map_or_else(|p| p.status, |_| StatusCode::OK);
    tracing::info!(
        path = uri.path(),
        status = status.as_u16(),
        total,
        "dashboard action"
    );
    answer.map(json)
}

pub async fn scale(
    State(app): State<App>,
    uri: OriginalUri,
    Path(name): Path<String>,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let answer = match body(b) {
        Ok(b) => actions::scale(&app.web, &name, &b).await,
        Err(p) => Err(p),
    };
    act(&app, uri, answer)
}

pub async fn maintenance(
    State(app): State<App>,
    uri: OriginalUri,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response> {
    let answer = actions::maintenance(&app.web, &id, &action).await;
    act(&app, uri, answer)
}

pub async fn replace(
    State(app): State<App>,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Result<Response> {
    let answer = actions::replace(&app.web, &id).await;
    act(&app, uri, answer)
}

pub async fn alarms(
    State(app): State<App>,
    Query(q): Query<alarms_http::ListQuery>,
) -> Result<Response> {
    let req = alarms_http::list_request(q);
    let reply = alarms_http::ask(&app.web.nats, &app.web.subjects, &req).await?;
    Ok(json(String::from_utf8_lossy(&reply).into_owned()))
}

pub async fn alarm_action(
    State(app): State<App>,
    Path((rule, action)): Path<(String, String)>,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let req = alarms_http::action_request(&rule, &action, &body(b)?)?;
    let reply = alarms_http::ask(&app.web.nats, &app.web.subjects, &req).await?;
    Ok(json(String::from_utf8_lossy(&reply).into_owned()))
}

pub async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> Problem {
    Problem::not_found(format!(
        "no such endpoint {method} {}; try GET {STATS_PATH}",
        uri.path()
    ))
}

pub async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The process is alive and serving HTTP.
pub async fn healthz() -> Response {
    json(r#"{"ok":true}"#)
}

/// NATS is connected and the monitor's streams answer; 503 naming what is not.
pub async fn readyz(State(app): State<App>) -> Response {
    match ready(&app).await {
        Ok(()) => json(r#"{"ok":true}"#),
        Err(e) => {
            tracing::debug!(error = %e, "not ready");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response()
        }
    }
}

async fn ready(app: &App) -> std::result::Result<(), String> {
    let state = app.web.nats.connection_state();
    if state != async_nats::connection::State::Connected {
        return Err(format!("NATS is not connected ({state})"));
    }
    let js = async_nats::jetstream::new(app.web.nats.clone());
    for name in [
        crate::service::STREAM,
        crate::history::STREAM,
        crate::durable::STREAM,
    ] {
        match tokio::time::timeout(READY_TIMEOUT, js.get_stream(name)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("stream {name}: {e}")),
            Err(_) => return Err(format!("stream {name}: no answer within {READY_TIMEOUT:?}")),
        }
    }
    Ok(())
}
