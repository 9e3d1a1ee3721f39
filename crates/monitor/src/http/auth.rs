//! Who is asking, as tower middleware: [`identify`] puts a [`Caller`] on every request (bearer
//! token, dashboard session cookie, or nobody); [`require_caller`] refuses `/api` requests from
//! nobody (401); [`require_csrf`] refuses a state-changing request whose session did not send its
//! CSRF header (403). Every refusal is a [`Problem`], logged and counted by [`log_problems`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use acs_node::metrics::constant_time_eq;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::{App, HttpAuth};
use crate::service::unix_ms;
use crate::web::session;

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Bearer,
    Session { id: String, csrf: String },
    Insecure,
    Nobody,
}

fn caller(app: &App, headers: &HeaderMap) -> Caller {
    let token = match &app.web.auth {
        HttpAuth::Insecure => return Caller::Insecure,
        HttpAuth::Bearer(t) => t,
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return Caller::Bearer;
    }
    let Some(id) = session::id_from(headers) else {
        return Caller::Nobody;
    };
    let live = app.web.sessions.lock().unwrap().get(&id, unix_ms());
    match live {
        Some(s) => Caller::Session { id, csrf: s.csrf },
        None => Caller::Nobody,
    }
}

impl Caller {
    /// Whether a state-changing request from this caller carries what it must.
    fn may_change(&self, headers: &HeaderMap) -> bool {
        let csrf = headers
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        match self {
            Caller::Bearer => true,
            Caller::Session { csrf: want, .. } => {
                csrf.is_some_and(|c| constant_time_eq(c.as_bytes(), want.as_bytes()))
            }
            Caller::Insecure => csrf.is_some_and(|c| !c.is_empty()),
            Caller::Nobody => false,
        }
    }
}

/// Puts the [`Caller`] into the request's extensions, for every route.
pub async fn identify(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let who = caller(&app, req.headers());
    req.extensions_mut().insert(who);
    next.run(req).await
}

fn who(req: &Request) -> &Caller {
    req.extensions().get::<Caller>().unwrap_or(&Caller::Nobody)
}

/// `/api`: a bearer token or a live session (or `--insecure-no-auth`).
pub async fn require_caller(req: Request, next: Next) -> Response {
    if *who(&req) == Caller::Nobody {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token>), and no dashboard session",
        )
        .into_response();
    }
    next.run(req).await
}

/// `/api` POSTs: a session must send its CSRF header (the bearer token alone suffices).
pub async fn require_csrf(State(app): State<App>, req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !who(&req).may_change(req.headers()) {
        let total = app
            .web
            .counters
            .csrf_refused
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        tracing::warn!(peer = %peer(&req), path = path(&req), total, "a state-changing request without the session's CSRF header");
        return Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "a POST with a session cookie needs the {} header of that session (or use the bearer token)",
                session::CSRF_HEADER
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Logs every problem answered; counts the refusals (4xx) with the monitor's rejected messages.
pub async fn log_problems(State(app): State<App>, req: Request, next: Next) -> Response {
    let (peer, path) = (peer(&req), path(&req));
    let r = next.run(req).await;
    if let Some(p) = r.extensions().get::<Problem>() {
        let status = p.status.as_u16();
        if p.status.is_client_error() {
            app.shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, path, status, error = %p.detail, "refused an http request");
        } else {
            tracing::warn!(%peer, path, status, error = %p.detail, "an http request failed");
        }
    }
    r
}

/// The path as the client sent it (a nested router sees it without its prefix).
fn path(req: &Request) -> String {
    req.extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |u| u.path())
        .to_string()
}

/// The client's address, set by the accept loop.
pub fn peer(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}
