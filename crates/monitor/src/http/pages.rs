//! Everything outside `/api/`: the dashboard or the login page at `/`, `POST /login`,
//! `POST /logout`, the favicon and the embedded static files (with an ETag, so a reload gets a
//! 304, and gzip from [`compression`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Extension, Form, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_http::compression::CompressionLayer;

use super::auth::Caller;
use super::{App, HttpAuth};
use crate::service::unix_ms;
use crate::web::{self, session};

/// gzip for what is worth it (the default predicate skips small bodies, images and SSE).
pub fn compression() -> CompressionLayer {
    CompressionLayer::new()
        .gzip(true)
        .no_br()
        .no_deflate()
        .no_zstd()
}

pub async fn index(Extension(who): Extension<Caller>) -> Html<String> {
    match who {
        Caller::Nobody => Html(web::login_page(None)),
        _ => Html(String::from_utf8_lossy(web::INDEX).into_owned()),
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

pub async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let token = form.map(|f| f.0.token).unwrap_or_default();
    let good = match &app.web.auth {
        HttpAuth::Bearer(t) => {
            acs_node::metrics::constant_time_eq(token.trim().as_bytes(), t.as_bytes())
        }
        HttpAuth::Insecure => true,
    };
    if !good {
        let total = app
            .web
            .counters
            .login_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        app.shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, total, "dashboard login with a wrong token");
        // Slows guessing down without holding anything but this connection.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let page = web::login_page(Some(
            "Wrong token. It is in the monitor's --token-file (acsctl up: <dir>/monitor.token).",
        ));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    let (id, _) = app.web.sessions.lock().unwrap().create(unix_ms());
    app.web.counters.logins.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, "dashboard login");
    with_cookie(session::set_cookie(&id))
}

pub async fn logout(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(who): Extension<Caller>,
) -> Response {
    if let Caller::Session { id, .. } = who {
        app.web.sessions.lock().unwrap().remove(&id);
        tracing::info!(%peer, "dashboard logout");
    }
    with_cookie(session::clear_cookie())
}

/// A redirect to `/` that sets `cookie`.
fn with_cookie(cookie: String) -> Response {
    let mut r = Redirect::to("/").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        // The cookie is ours (a hex id): this cannot happen, but is no reason to panic.
        Err(e) => tracing::error!(error = %e, "a session cookie that is no header value"),
    }
    r
}

pub async fn favicon(headers: HeaderMap) -> Response {
    asset_response(&web::FAVICON, &headers)
}

/// Static files by path; anything else is a 404 (GET) or a 405 (other methods).
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if method != Method::GET && method != Method::HEAD {
        let msg = format!("{method} {path} is not allowed\n");
        return (StatusCode::METHOD_NOT_ALLOWED, msg).into_response();
    }
    match web::asset(path) {
        Some(a) => asset_response(a, &headers),
        None => (StatusCode::NOT_FOUND, format!("no such page {path}\n")).into_response(),
    }
}

/// The file, or a 304 when the browser already has this version.
fn asset_response(a: &web::Asset, headers: &HeaderMap) -> Response {
    let etag = a.etag();
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches_etag(v, &etag));
    let head = [
        (header::ETAG, etag.clone()),
        // Revalidate on every load: the 304 costs a round trip, never a stale script.
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    let mut r = (head, a.bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    r
}

/// `If-None-Match` (a list, or `*`) against our weak ETag, by the weak comparison GET uses.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly_and_in_lists() {
        assert!(matches_etag("W/\"ab\"", "W/\"ab\""));
        assert!(matches_etag("\"x\", \"ab\"", "W/\"ab\""));
        assert!(matches_etag("*", "W/\"ab\""));
        assert!(!matches_etag("W/\"abc\"", "W/\"ab\""));
    }
}
