//! The HTTP side: the REST API (`GET /api/v1/stats?scope=worker&id=w1&metric=cpu&window=1h&step=1m`,
//! answered by the same [`crate::query`] engine as `acs.monitor.stats`; docs/monitor-openapi.yaml)
//! and the web dashboard ([`crate::web`]): its pages, login, live events and actions.
//!
//! Who may do what:
//! - `/api/...` needs `Authorization: Bearer <token>` or a dashboard session cookie; a POST with
//!   the cookie also needs the session's `X-ACS-CSRF` header (the bearer token alone suffices).
//! - `GET /` is the dashboard with a session, else the login page; `POST /login` takes the same
//!   token; `POST /logout` ends the session. Static files are public (they hold no data).
//! - `--insecure-no-auth` checks nothing, except that POSTs carry some `X-ACS-CSRF` header (a
//!   page on another site cannot add one without CORS, which the monitor never allows).
//!
//! Bad queries get a 4xx with an error JSON naming the problem; refusals are logged and counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use acs_events::{encode, StatsReply, StatsRequest, StatsScope};
use acs_node::metrics::constant_time_eq;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::service::{unix_ms, Shared};
use crate::web::{self, actions, session, Web};

pub const STATS_PATH: &str = "/api/v1/stats";
pub const EVENTS_PATH: &str = "/api/v1/events";
/// Largest request body read (login form, action JSON).
const MAX_BODY: usize = 64 * 1024;

/// Every response body: a whole buffer or the SSE stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

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

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Shared, web: Arc<Web>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
        };
        let (shared, web) = (shared.clone(), web.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (shared, web) = (shared.clone(), web.clone());
                async move { Ok::<_, Infallible>(handle(&web, &shared, peer, req).await) }
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

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq)]
enum Caller {
    Bearer,
    Session { id: String, csrf: String },
    Insecure,
    Nobody,
}

fn caller(web: &Web, headers: &HeaderMap) -> Caller {
    let token = match &web.auth {
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
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, session::COOKIE));
    match cookie.and_then(|id| {
        web.sessions
            .lock()
            .unwrap()
            .get(id, unix_ms())
            .map(|s| (id.to_string(), s))
    }) {
        Some((id, s)) => Caller::Session { id, csrf: s.csrf },
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

async fn handle(
    web: &Web,
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let refuse = |status: StatusCode, error: String| {
        shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, path = req.uri().path(), status = status.as_u16(), %error, "refused an http request");
        let mut r = json(status, &StatsReply::error(error));
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    };
    let path = req.uri().path().to_string();
    let who = caller(web, req.headers());
    if !path.starts_with("/api/") {
        return page(web, shared, peer, &who, req).await;
    }
    if who == Caller::Nobody {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer <token>), and no dashboard session".into());
    }
    if req.method() == Method::POST && !who.may_change(req.headers()) {
        let total = web.counters.csrf_refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(%peer, %path, total, "a state-changing request without the session's CSRF header");
        return refuse(StatusCode::FORBIDDEN, format!("a POST with a session cookie needs the {} header of that session (or use the bearer token)", session::CSRF_HEADER));
    }
    let segs: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    match (req.method().clone(), segs.as_slice()) {
        (Method::GET, ["stats"]) => stats(shared, &req, refuse).await,
        (_, ["stats"]) => refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed; use GET", req.method()),
        ),
        (Method::GET, ["events"]) => web::sse::response(web),
        (Method::GET, ["history"]) => {
            match crate::history::parse_query(req.uri().query().unwrap_or("")) {
                Ok(q) => {
                    shared.counters.queries.fetch_add(1, Ordering::Relaxed);
                    let js = async_nats::jetstream::new(web.nats.clone());
                    let reply = crate::history::query(&js, &web.subjects, &q, unix_ms()).await;
                    let status = if reply.ok {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    text(
                        status,
                        "application/json",
                        String::from_utf8_lossy(&encode(&reply)).into_owned(),
                    )
                }
                Err(e) => refuse(StatusCode::BAD_REQUEST, e),
            }
        }
        (Method::GET, ["session"]) => {
            let csrf = match &who {
                Caller::Session { csrf, .. } => csrf.clone(),
                Caller::Insecure => "insecure".into(),
                _ => String::new(),
            };
            let auth = match &who {
                Caller::Session { .. } => "session",
                Caller::Bearer => "bearer",
                _ => "insecure",
            };
            text(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "csrf": csrf, "auth": auth }).to_string(),
            )
        }
        (Method::GET, ["status"]) => match actions::status(web).await {
            Ok(j) => text(StatusCode::OK, "application/json", j),
            Err(e) => text(
                StatusCode::BAD_GATEWAY,
                "application/json",
                serde_json::json!({ "ok": false, "error": e }).to_string(),
            ),
        },
        (Method::POST, ["services", name, "scale"]) => {
            let (name, body) = (name.to_string(), read_body(req).await);
            act(
                web,
                &path,
                peer,
                match body {
                    Ok(b) => actions::scale(web, &name, &b).await,
                    Err(e) => (
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({ "ok": false, "error": e }).to_string(),
                    ),
                },
            )
        }
        (Method::POST, ["workers", id, action]) => act(
            web,
            &path,
            peer,
            actions::maintenance(web, id, action).await,
        ),
        (Method::POST, ["replicas", id, "replace"]) => {
            act(web, &path, peer, actions::replace(web, id).await)
        }
        (m, ["alarms", rest @ ..]) => {
            let query = req.uri().query().unwrap_or("").to_string();
            let body = if m == Method::POST {
                read_body(req).await
            } else {
                Ok(Bytes::new())
            };
            let (status, body) =
                crate::alarm::http::answer(&web.nats, &web.subjects, &m, rest, &query, body).await;
            text(status, "application/json", body)
        }
        _ => refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {} {path}; try GET {STATS_PATH}",
                req.method()
            ),
        ),
    }
}

async fn stats(
    shared: &Shared,
    req: &Request<Incoming>,
    refuse: impl Fn(StatusCode, String) -> Response<Body>,
) -> Response<Body> {
    let stats = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    shared.counters.queries.fetch_add(1, Ordering::Relaxed);
    let reply = crate::service::answer(shared, &stats, unix_ms()).await;
    match reply.ok {
        true => json(StatusCode::OK, &reply),
        false => refuse(StatusCode::BAD_REQUEST, reply.error.unwrap_or_default()),
    }
}

/// Logs and counts one action sent to the brain, and answers with the brain's reply.
fn act(web: &Web, path: &str, peer: SocketAddr, (status, body): actions::Answer) -> Response<Body> {
    let total = web.counters.actions.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(%peer, path, status = status.as_u16(), total, "dashboard action");
    text(status, "application/json", body)
}

/// Everything outside `/api/`: the pages, login and logout, static files.
async fn page(
    web: &Web,
    shared: &Shared,
    peer: SocketAddr,
    who: &Caller,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => match who {
            Caller::Nobody => html(StatusCode::OK, web::login_page(None)),
            _ => html(
                StatusCode::OK,
                String::from_utf8_lossy(web::INDEX).into_owned(),
            ),
        },
        (Method::POST, "/login") => {
            let token = read_body(req)
                .await
                .ok()
                .and_then(|b| web::form_field(&b, "token"))
                .unwrap_or_default();
            let good = match &web.auth {
                HttpAuth::Bearer(t) => constant_time_eq(token.trim().as_bytes(), t.as_bytes()),
                HttpAuth::Insecure => true,
            };
            if !good {
                let total = web.counters.login_failures.fetch_add(1, Ordering::Relaxed) + 1;
                shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, total, "dashboard login with a wrong token");
                // Slows guessing down without holding anything but this connection.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                return html(StatusCode::UNAUTHORIZED, web::login_page(Some("Wrong token. It is in the monitor's --token-file (acsctl up: <dir>/monitor.token).")));
            }
            let (id, _) = web.sessions.lock().unwrap().create(unix_ms());
            web.counters.logins.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "dashboard login");
            let mut r = redirect("/");
            r.headers_mut().insert(
                header::SET_COOKIE,
                header::HeaderValue::from_str(&session::set_cookie(&id)).expect("hex cookie"),
            );
            r
        }
        (Method::POST, "/logout") => {
            if let Caller::Session { id, .. } = who {
                web.sessions.lock().unwrap().remove(id);
                tracing::info!(%peer, "dashboard logout");
            }
            let mut r = redirect("/");
            r.headers_mut().insert(
                header::SET_COOKIE,
                header::HeaderValue::from_str(&session::clear_cookie()).expect("static cookie"),
            );
            r
        }
        (Method::GET, p) => match web::asset(p) {
            Some(a) => {
                let mut r = bytes(StatusCode::OK, a.content_type, Bytes::from_static(a.bytes));
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-cache"),
                );
                r
            }
            None => text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                format!("no such page {p}\n"),
            ),
        },
        (m, p) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            format!("{m} {p} is not allowed\n"),
        ),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(format!(
            "could not read the request body (at most {MAX_BODY} bytes): {e}"
        )),
    }
}

fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    r
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = bytes(status, content_type, Bytes::from(body));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    text(status, "text/html; charset=utf-8", body)
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = text(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        String::new(),
    );
    r.headers_mut()
        .insert(header::LOCATION, header::HeaderValue::from_static(to));
    r
}

fn json(status: StatusCode, reply: &StatsReply) -> Response<Body> {
    text(
        status,
        "application/json",
        String::from_utf8_lossy(&encode(reply)).into_owned(),
    )
}

/// `scope`, `id`, `metric` (required); `window` (a duration back from now) or `from`/`to` (unix
/// ms); `step` (a duration). Durations: `90`, `90s`, `5m`, `1h`, `1d`, or `1500ms`.
pub fn parse_query(q: &str) -> Result<StatsRequest, String> {
    let (mut scope, mut id, mut metric) = (None, None, None);
    let mut req = StatsRequest {
        v: 1,
        scope: StatsScope::Worker,
        id: String::new(),
        metric: String::new(),
        from_ms: None,
        to_ms: None,
        last_ms: None,
        step_ms: None,
    };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("parameter {k}: bad percent-encoding"))?;
        match k {
            "scope" => scope = Some(parse_scope(&v)?),
            "id" => id = Some(v),
            "metric" => metric = Some(v),
            "window" => {
                req.last_ms = Some(parse_duration_ms(&v).map_err(|e| format!("window: {e}"))?)
            }
            "step" => req.step_ms = Some(parse_duration_ms(&v).map_err(|e| format!("step: {e}"))?),
            "from" => {
                req.from_ms = Some(
                    v.parse()
                        .map_err(|_| format!("from: {v:?} is not unix milliseconds"))?,
                )
            }
            "to" => {
                req.to_ms = Some(
                    v.parse()
                        .map_err(|_| format!("to: {v:?} is not unix milliseconds"))?,
                )
            }
            other => return Err(format!(
                "unknown parameter {other:?} (known: scope, id, metric, window, from, to, step)"
            )),
        }
    }
    req.scope = scope.ok_or("missing parameter scope (worker, replica, service or proxy)")?;
    req.id = id.ok_or("missing parameter id")?;
    req.metric = metric.ok_or("missing parameter metric")?;
    Ok(req)
}

fn parse_scope(v: &str) -> Result<StatsScope, String> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| format!("scope: {v:?} is not one of worker, replica, service, proxy"))
}

/// `90` (seconds), `1500ms`, `90s`, `5m`, `1h`, `1d`.
pub fn parse_duration_ms(v: &str) -> Result<u64, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{v:?} is not a duration like 90s, 5m, 1h"))?;
    let mult = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{v:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    n.checked_mul(mult)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("{v:?} must be above zero and not overflow"))
}

pub(crate) fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_name_the_problem() {
        let q = parse_query("scope=worker&id=w1&metric=cpu&window=1h&step=1m").unwrap();
        assert_eq!(
            (q.scope, q.id.as_str(), q.metric.as_str()),
            (StatsScope::Worker, "w1", "cpu")
        );
        assert_eq!((q.last_ms, q.step_ms), (Some(3_600_000), Some(60_000)));
        let err = |q: &str| parse_query(q).unwrap_err();
        assert!(err("id=w1&metric=cpu").contains("scope"));
        assert!(err("scope=host&id=w1&metric=cpu").contains("\"host\""));
        assert!(err("scope=worker&id=w1&metric=cpu&window=1y").contains("unit"));
        assert!(err("scope=worker&id=w1&metric=cpu&windw=1h").contains("windw"));
        assert!(err("scope=worker&id=w1&metric=cpu&step=0s").contains("above zero"));
        assert_eq!(
            parse_query("scope=service&id=a%20b&metric=rps").unwrap().id,
            "a b"
        );
    }

    /// docs/monitor-openapi.yaml names the path and every parameter this parser knows.
    #[test]
    fn the_openapi_document_matches() {
        let doc = include_str!("../../../docs/monitor-openapi.yaml");
        assert!(doc.contains(&format!("  {STATS_PATH}:")));
        for p in ["scope", "id", "metric", "window", "from", "to", "step"] {
            assert!(
                doc.contains(&format!("- name: {p}\n")),
                "{p} is not documented"
            );
        }
    }
}
