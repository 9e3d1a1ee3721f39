//! The Pingora `ProxyHttp` implementation: the per-request path.
//!
//! - `request_filter`: load the live [`Snapshot`] (lock-free `ArcSwap::load`), match the route;
//!   no match → 404 with a short JSON body; a service with no usable backend → 503 with
//!   `Retry-After`.
//! - `upstream_peer`: pick a backend with the service's selection, skipping the ones this request
//!   already tried; count it in flight (an RAII guard in the CTX).
//! - `fail_to_connect` / `error_while_proxy`: record the failure (ejection streak) and retry
//!   idempotent or body-less requests on another backend, up to `max_tries`.
//! - `logging`: record the completed attempt (latency, status) in the backend's window.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{Method, RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::backend::{mono_now_ms, BackendState, InFlight};
use crate::config::{Tuning, MAX_TRIES_CAP};
use crate::select;
use crate::snapshot::{ServiceRt, Snapshot};

/// State shared by the request path, the NATS task and the metrics task.
#[derive(Debug)]
pub struct Shared {
    /// The live routing state; replaced whole on every applied update.
    pub snapshot: ArcSwap<Snapshot>,
    /// Requests that matched no route, in the current metrics window.
    pub unrouted: AtomicU64,
    /// Malformed backend updates refused since start.
    pub rejected: AtomicU64,
    pub tuning: Tuning,
    /// Running sums of the metrics windows, for `GET /metrics` ([`crate::prom`]).
    pub prom: crate::prom::Totals,
    /// `/readyz`: NATS connected and the routes loaded (a sync reply applied).
    pub ready: acs_node::Readiness,
}

impl Shared {
    pub fn new(tuning: Tuning) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            unrouted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            tuning,
            prom: Default::default(),
            ready: acs_node::Readiness::new(acs_node::ReadyWhen {
                beat_within: None,
                loaded: true,
            }),
        }
    }
}

const NO_ROUTE: &[u8] =
    b"{\"error\":\"no_route\",\"message\":\"no service matches this host and path\"}\n";
const NO_BACKEND: &[u8] =
    b"{\"error\":\"no_backend\",\"message\":\"the service has no usable backend right now\"}\n";

/// The proxy service.
pub struct AcsProxy {
    shared: Arc<Shared>,
}

impl AcsProxy {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Tries per request, the first one included.
    fn max_tries(&self) -> usize {
        (self.shared.tuning.max_tries as usize).min(MAX_TRIES_CAP)
    }

    /// Counts a failure towards `b`'s ejection streak; `true` when it ejected the backend.
    fn record_failure(&self, b: &BackendState) -> bool {
        b.record_failure(mono_now_ms(), &self.shared.tuning.eject)
    }

    /// An attempt that ended without a response: one error in the window, one failure in the
    /// streak. `true` when it ejected the backend.
    fn attempt_failed(&self, b: &BackendState) -> bool {
        b.window.error();
        self.record_failure(b)
    }
}

/// One try on one backend.
#[derive(Debug)]
struct Attempt {
    guard: InFlight,
    start: Instant,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct Ctx {
    service: Option<Arc<ServiceRt>>,
    attempt: Option<Attempt>,
    tried: [usize; MAX_TRIES_CAP],
    n_tried: usize,
    retryable: bool,
    no_backend: bool,
}

impl Ctx {
    fn tried(&self) -> &[usize] {
        &self.tried[..self.n_tried]
    }

    fn tries_left(&self, max_tries: usize) -> bool {
        self.n_tried < max_tries
    }

    /// The service still has a usable backend this request has not tried.
    fn has_untried(&self) -> bool {
        let tried = self.tried();
        self.service
            .as_ref()
            .is_some_and(|s| select::has_candidate(&s.backends, |i| tried.contains(&i)))
    }

    /// Starts a try on backend `idx` of the service.
    fn begin_try(&mut self, idx: usize, backend: &Arc<BackendState>) {
        self.tried[self.n_tried] = idx;
        self.n_tried += 1;
        self.attempt = Some(Attempt {
            guard: backend.begin(),
            start: Instant::now(),
        });
    }

    /// Takes `backend` off the tried list, so a retry may pick it again.
    fn untry(&mut self, backend: &Arc<BackendState>) {
        let Some(svc) = &self.service else { return };
        let pos = self
            .tried()
            .iter()
            .position(|&i| Arc::ptr_eq(&svc.backends[i].state, backend));
        if let Some(pos) = pos {
            self.tried.copy_within(pos + 1..self.n_tried, pos);
            self.n_tried -= 1;
        }
    }
}

/// GET, HEAD and OPTIONS: retried on another backend even when the request was already sent
/// on a fresh connection, as long as no response byte came back.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// GET, HEAD, OPTIONS, and any request without a body may go to another backend after a
/// connect failure.
fn is_retryable(req: &RequestHeader) -> bool {
    if is_safe(&req.method) {
        return true;
    }
    let h = &req.headers;
    let no_length = h.get("content-length").is_none_or(|v| v.as_bytes() == b"0");
    no_length && h.get("transfer-encoding").is_none()
}

async fn respond_json(
    session: &mut Session,
    status: u16,
    body: &'static [u8],
    retry_after: bool,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len())?;
    resp.insert_header("cache-control", "no-store")?;
    if retry_after {
        resp.insert_header("retry-after", "1")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body)), true)
        .await?;
    Ok(())
}

#[async_trait]
impl ProxyHttp for AcsProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let (routed, retryable) = {
            let req = session.req_header();
            let host = req
                .headers
                .get("host")
                .map(|v| v.as_bytes())
                .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
            let snap = self.shared.snapshot.load();
            (snap.route(host, req.uri.path()).cloned(), is_retryable(req))
        };
        let Some(svc) = routed else {
            self.shared.unrouted.fetch_add(1, Relaxed);
            respond_json(session, 404, NO_ROUTE, false).await?;
            return Ok(true);
        };
        if !select::has_candidate(&svc.backends, |_| false) {
            svc.state.unbacked.fetch_add(1, Relaxed);
            respond_json(session, 503, NO_BACKEND, true).await?;
            return Ok(true);
        }
        ctx.service = Some(svc);
        ctx.retryable = retryable;
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(svc) = ctx.service.clone() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let picked = if !ctx.tries_left(self.max_tries()) {
            None
        } else {
            let tried = ctx.tried();
            select::pick(
                svc.selection,
                &svc.backends,
                |i| tried.contains(&i),
                &svc.state.rr,
                mono_now_ms(),
                select::thread_random,
            )
        };
        let Some((idx, peer)) = picked.and_then(|i| svc.backends[i].peer.as_ref().map(|p| (i, p)))
        else {
            ctx.no_backend = true;
            return Error::e_explain(ErrorType::HTTPStatus(503), "no usable backend");
        };
        ctx.begin_try(idx, &svc.backends[idx].state);
        Ok(Box::new(peer.clone()))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(a) = ctx.attempt.take() {
            let b = a.guard.backend();
            if self.attempt_failed(b) {
                tracing::warn!(service = %b.service, backend = %b.id, %peer,
                    secs = self.shared.tuning.eject.duration.as_secs_f64(),
                    "backend ejected after consecutive failures");
            }
        }
        e.set_retry(ctx.retryable && ctx.tries_left(self.max_tries()) && ctx.has_untried());
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !ctx.retryable
            || session.as_ref().retry_buffer_truncated()
            || !ctx.tries_left(self.max_tries())
        {
            e.set_retry(false);
        } else {
            // Errors before any response byte (reset or closed while sending the request or
            // reading the response header; Pingora marks exactly those `ReusedOnly`) are retried
            // on a stale pooled connection (Pingora's default policy), and for safe methods on a
            // fresh connection too: a replica killed with a request in flight, or Docker's
            // userland proxy accepting a connection for a container that just died and then
            // resetting it, must not fail a GET. Other body-less requests may have had effects.
            e.retry
                .decide_reuse(client_reused || is_safe(&session.req_header().method));
        }
        if e.retry() {
            if let Some(a) = ctx.attempt.take() {
                // A reused connection the backend had closed is not the backend's fault: let the
                // retry go to any backend again, this one included.
                if client_reused {
                    ctx.untry(a.guard.backend());
                } else {
                    self.attempt_failed(a.guard.backend());
                }
            }
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if ctx.no_backend {
            if let Err(err) = respond_json(session, 503, NO_BACKEND, true).await {
                tracing::debug!(error = %err, "could not write the 503 response");
            }
            return FailToProxy {
                error_code: 503,
                can_reuse_downstream: false,
            };
        }
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            if let Err(err) = session.respond_error(code).await {
                tracing::debug!(error = %err, "could not write the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, e: &Error) -> bool {
        // "No usable backend" is an expected answer (counted in the metrics), and a client that
        // hung up mid-request is not our error.
        let client_gone = *e.esource() == ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_gone {
            tracing::debug!(error = %e, "client went away mid-request");
        }
        ctx.no_backend || client_gone
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let upstream_error = e.is_some_and(|e| *e.esource() == ErrorSource::Upstream);
        if let Some(a) = ctx.attempt.take() {
            let b = a.guard.backend();
            b.window
                .done(a.start.elapsed(), upstream_error || status >= 500);
            if upstream_error {
                self.record_failure(b);
            } else if e.is_none() {
                b.record_success();
            }
        } else if let (Some(svc), Some(_)) = (&ctx.service, e) {
            // Failed without completing on any backend (no usable backend, connect failures).
            svc.state.unbacked.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn retryable_requests() {
        assert!(is_retryable(&req("GET", &[])));
        assert!(is_retryable(&req("HEAD", &[])));
        assert!(is_retryable(&req("OPTIONS", &[])));
        assert!(is_retryable(&req("POST", &[])));
        assert!(is_retryable(&req("DELETE", &[("content-length", "0")])));
        assert!(!is_retryable(&req("POST", &[("content-length", "12")])));
        assert!(!is_retryable(&req(
            "PUT",
            &[("transfer-encoding", "chunked")]
        )));
    }

    #[test]
    fn only_safe_methods_are_retried_after_reaching_a_fresh_connection() {
        assert!(is_safe(&Method::GET));
        assert!(is_safe(&Method::HEAD));
        assert!(is_safe(&Method::OPTIONS));
        assert!(!is_safe(&Method::POST));
        assert!(!is_safe(&Method::DELETE));
        assert!(!is_safe(&Method::PUT));
    }
}
