//! The HTTP side, on axum: the REST API (`GET /api/v1/stats?scope=worker&id=w1&metric=cpu&
//! window=1h&step=1m`, answered by the same [`crate::query`] engine as `acs.monitor.stats`;
//! docs/monitor-openapi.yaml) and the web dashboard ([`crate::web`]): its pages, login, live
//! events and actions.
//!
//! - [`router`]: the route table and its layers; [`serve`]: the accept loop.
//! - [`auth`]: middleware for the bearer token, the session cookie and the CSRF check.
//! - [`problem`]: the one error type, RFC 9457 problem JSON on every `/api` error.
//! - [`api`]: the `/api/v1` handlers; [`pages`]: login, logout, the pages and static files;
//!   [`params`]: the query parameters of stats and history.
//!
//! Who may do what:
//! - `/api/...` needs `Authorization: Bearer <token>` or a dashboard session cookie; a POST with
//!   the cookie also needs the session's `X-ACS-CSRF` header (the bearer token alone suffices).
//! - `GET /` is the dashboard with a session, else the login page; `POST /login` takes the same
//!   token; `POST /logout` ends the session. Static files, `/healthz` and `/readyz` are public
//!   (they hold no data).
//! - `--insecure-no-auth` checks nothing, except that POSTs carry some `X-ACS-CSRF` header (a
//!   page on another site cannot add one without CORS, which the monitor never allows).

pub mod api;
pub mod auth;
pub mod pages;
pub mod params;
pub mod problem;

use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use params::{parse_duration_ms, parse_query};

use crate::service::Shared;
use crate::web::Web;

pub const STATS_PATH: &str = "/api/v1/stats";
pub const EVENTS_PATH: &str = "/api/v1/events";
pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
/// Largest request body read (login form, action JSON).
const MAX_BODY: usize = 64 * 1024;

/// Who may ask: a bearer token, or nobody checked (`--insecure-no-auth`).
#[derive(Clone)]
pub enum HttpAuth {
    Bearer(String),
    Insecure,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpAuth::Bearer(_) => "Bearer(<redacted>)",
            HttpAuth::Insecure => "Insecure",
        })
    }
}

/// What every handler may read.
#[derive(Clone)]
pub struct App {
    pub shared: Shared,
    pub web: Arc<Web>,
}

/// The route table: `/api` behind the caller and CSRF checks, the rest public.
pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/v1/stats", get(api::stats))
        .route("/v1/history", get(api::history))
        .route("/v1/events", get(api::events))
        .route("/v1/session", get(api::session))
        .route("/v1/status", get(api::status))
        .route("/v1/services/{name}/scale", post(api::scale))
        .route("/v1/workers/{id}/{action}", post(api::maintenance))
        .route("/v1/replicas/{id}/replace", post(api::replace))
        .route("/v1/alarms", get(api::alarms))
        .route("/v1/alarms/", get(api::alarms))
        .route("/v1/alarms/{rule}/{action}", post(api::alarm_action))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(from_fn_with_state(app.clone(), auth::require_csrf))
        .layer(from_fn(auth::require_caller))
        .layer(from_fn_with_state(app.clone(), auth::log_problems));
    Router::new()
        .nest("/api", api)
        .route("/", get(pages::index))
        .route("/login", post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/favicon.ico", get(pages::favicon))
        .route(HEALTHZ_PATH, get(api::healthz))
        .route(READYZ_PATH, get(api::readyz))
        .fallback(pages::fallback)
        .layer(pages::compression())
        .layer(from_fn_with_state(app.clone(), auth::identify))
        .layer(from_fn(headers))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// On every answer: no sniffing, a strict CSP, and no caching unless the handler says otherwise.
async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Shared, web: Arc<Web>) {
    let router = router(App { shared, web });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            // A client that never finishes its headers is dropped instead of holding a task.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/monitor-openapi.yaml names the paths, every parameter the stats parser knows, and the
    /// problem format.
    #[test]
    fn the_openapi_document_matches() {
        let doc = include_str!("../../../../docs/monitor-openapi.yaml");
        for path in [STATS_PATH, HEALTHZ_PATH, READYZ_PATH, EVENTS_PATH] {
            assert!(
                doc.contains(&format!("  {path}:")),
                "{path} is not documented"
            );
        }
        for p in ["scope", "id", "metric", "window", "from", "to", "step"] {
            assert!(
                doc.contains(&format!("- name: {p}\n")),
                "{p} is not documented"
            );
        }
        assert!(doc.contains(problem::CONTENT_TYPE));
    }
}
