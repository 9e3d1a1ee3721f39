//! The one error of the HTTP API, rendered as RFC 9457 problem details
//! (`application/problem+json`: `type`, `title`, `status`, `detail`).
//!
//! Two extension members keep older clients reading: `ok: false` and `error` (the detail), the
//! shape every `/api` reply had before (acsctl and the dashboard read `error`).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An HTTP API error: a status and a sentence naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
}

pub type Result<T, E = Problem> = std::result::Result<T, E>;

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// The problem document.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            // `about:blank`: the status says it all, and the title is its reason phrase.
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "ok": false,
            "error": self.detail,
        })
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body().to_string()).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // The access log middleware logs and counts it from here.
        r.extensions_mut().insert(self);
        r
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Problem::bad_request(r.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Self {
        Problem::new(r.status(), r.body_text())
    }
}

/// `Query<T>` whose refusal is a [`Problem`].
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

/// `Path<T>` whose refusal is a [`Problem`].
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_rfc_9457_json_with_the_old_error_field() {
        let p = Problem::new(StatusCode::UNAUTHORIZED, "no token");
        let b = p.body();
        assert_eq!(b["type"], "about:blank");
        assert_eq!(b["title"], "Unauthorized");
        assert_eq!(b["status"], 401);
        assert_eq!(b["detail"], "no token");
        assert_eq!(
            (b["ok"].clone(), b["error"].clone()),
            (false.into(), "no token".into())
        );
        let r = p.into_response();
        assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
