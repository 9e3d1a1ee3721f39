//! The REST side: `GET /api/v1/stats?scope=worker&id=w1&metric=cpu&window=1h&step=1m`, answered
//! by the same [`crate::query`] engine as `acs.monitor.stats` (docs/monitor-openapi.yaml).
//!
//! Every request needs `Authorization: Bearer <token>` unless the monitor was started with
//! `--insecure-no-auth`. Bad queries get a 4xx with the [`StatsReply`] error JSON naming the
//! problem; both are logged and counted as rejections.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use acs_events::{encode, StatsReply, StatsRequest, StatsScope};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::service::{unix_ms, Shared};

pub const STATS_PATH: &str = "/api/v1/stats";

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
pub async fn serve(listener: TcpListener, auth: HttpAuth, shared: Shared) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
        };
        let (auth, shared) = (auth.clone(), shared.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let out = handle(&auth, &shared, peer, &req, unix_ms());
                async move { Ok::<_, std::convert::Infallible>(out) }
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

fn handle(auth: &HttpAuth, shared: &Shared, peer: SocketAddr, req: &Request<Incoming>, now_ms: u64) -> Response<Full<Bytes>> {
    let refuse = |status: StatusCode, error: String| {
        shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, path = req.uri().path(), status = status.as_u16(), %error, "refused an http request");
        let mut r = json(status, &StatsReply::error(error));
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    };
    if let HttpAuth::Bearer(token) = auth {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer <token>)".into());
        }
    }
    if req.uri().path() != STATS_PATH {
        return refuse(StatusCode::NOT_FOUND, format!("no such endpoint {}; try GET {STATS_PATH}", req.uri().path()));
    }
    if req.method() != Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed; use GET", req.method()));
    }
    let stats = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    shared.counters.queries.fetch_add(1, Ordering::Relaxed);
    let reply = crate::query::answer(&shared.store.lock().unwrap(), &stats, now_ms);
    match reply.ok {
        true => json(StatusCode::OK, &reply),
        false => refuse(StatusCode::BAD_REQUEST, reply.error.unwrap_or_default()),
    }
}

fn json(status: StatusCode, reply: &StatsReply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(encode(reply))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `scope`, `id`, `metric` (required); `window` (a duration back from now) or `from`/`to` (unix
/// ms); `step` (a duration). Durations: `90`, `90s`, `5m`, `1h`, `1d`, or `1500ms`.
pub fn parse_query(q: &str) -> Result<StatsRequest, String> {
    let (mut scope, mut id, mut metric) = (None, None, None);
    let mut req = StatsRequest { v: 1, scope: StatsScope::Worker, id: String::new(), metric: String::new(), from_ms: None, to_ms: None, last_ms: None, step_ms: None };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("parameter {k}: bad percent-encoding"))?;
        match k {
            "scope" => scope = Some(parse_scope(&v)?),
            "id" => id = Some(v),
            "metric" => metric = Some(v),
            "window" => req.last_ms = Some(parse_duration_ms(&v).map_err(|e| format!("window: {e}"))?),
            "step" => req.step_ms = Some(parse_duration_ms(&v).map_err(|e| format!("step: {e}"))?),
            "from" => req.from_ms = Some(v.parse().map_err(|_| format!("from: {v:?} is not unix milliseconds"))?),
            "to" => req.to_ms = Some(v.parse().map_err(|_| format!("to: {v:?} is not unix milliseconds"))?),
            other => return Err(format!("unknown parameter {other:?} (known: scope, id, metric, window, from, to, step)")),
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
    let n: u64 = n.parse().map_err(|_| format!("{v:?} is not a duration like 90s, 5m, 1h"))?;
    let mult = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{v:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    n.checked_mul(mult).filter(|ms| *ms > 0).ok_or_else(|| format!("{v:?} must be above zero and not overflow"))
}

fn percent_decode(v: &str) -> Option<String> {
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
        assert_eq!((q.scope, q.id.as_str(), q.metric.as_str()), (StatsScope::Worker, "w1", "cpu"));
        assert_eq!((q.last_ms, q.step_ms), (Some(3_600_000), Some(60_000)));
        let err = |q: &str| parse_query(q).unwrap_err();
        assert!(err("id=w1&metric=cpu").contains("scope"));
        assert!(err("scope=host&id=w1&metric=cpu").contains("\"host\""));
        assert!(err("scope=worker&id=w1&metric=cpu&window=1y").contains("unit"));
        assert!(err("scope=worker&id=w1&metric=cpu&windw=1h").contains("windw"));
        assert!(err("scope=worker&id=w1&metric=cpu&step=0s").contains("above zero"));
        assert_eq!(parse_query("scope=service&id=a%20b&metric=rps").unwrap().id, "a b");
    }

    /// docs/monitor-openapi.yaml names the path and every parameter this parser knows.
    #[test]
    fn the_openapi_document_matches() {
        let doc = include_str!("../../../docs/monitor-openapi.yaml");
        assert!(doc.contains(&format!("  {STATS_PATH}:")));
        for p in ["scope", "id", "metric", "window", "from", "to", "step"] {
            assert!(doc.contains(&format!("- name: {p}\n")), "{p} is not documented");
        }
    }
}
