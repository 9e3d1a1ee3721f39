//! The live web dashboard (issue 9, part 4), served next to the REST API.
//!
//! - [`session`]: login with the bearer token → an HttpOnly, SameSite=Strict session cookie and a
//!   CSRF token. Pure.
//! - [`sse`]: `GET /api/v1/events`, the bus forwarded to each browser through a bounded queue.
//! - [`actions`]: scale, cordon/uncordon/drain and replace, as requests to the brain.
//! - The static pages (`crates/monitor/web/`, plain ES modules and the vendored Chart.js) are
//!   embedded in the binary here; `http.rs` routes.

pub mod actions;
pub mod session;
pub mod sse;

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use acs_events::Subjects;
use bytes::Bytes;

use crate::http::HttpAuth;

/// Everything the dashboard routes need.
pub struct Web {
    pub auth: HttpAuth,
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    pub sessions: Mutex<session::Sessions>,
    pub hub: sse::Hub,
    /// The last `status` SSE frame, sent first to a new client.
    pub last_status: Mutex<Option<Bytes>>,
    pub counters: WebCounters,
}

#[derive(Debug, Default)]
pub struct WebCounters {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    /// Scale, maintenance and replace requests sent to the brain.
    pub actions: AtomicU64,
    /// Requests refused for a missing or wrong CSRF header.
    pub csrf_refused: AtomicU64,
}

impl Web {
    pub fn new(auth: HttpAuth, nats: async_nats::Client, subjects: Subjects) -> Self {
        Web {
            auth,
            nats,
            subjects,
            sessions: Mutex::default(),
            hub: sse::Hub::default(),
            last_status: Mutex::default(),
            counters: WebCounters::default(),
        }
    }
}

/// One embedded file: path, content type, bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const INDEX: &[u8] = include_bytes!("../../web/index.html");
pub const LOGIN: &str = include_str!("../../web/login.html");

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/vendor/chart.umd.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/vendor/chart.umd.js"),
    },
];

pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The login page, with `error` (already plain text) shown above the form.
pub fn login_page(error: Option<&str>) -> String {
    let msg = error
        .map(|e| format!("<p class=\"error\" id=\"login-error\">{}</p>", escape(e)))
        .unwrap_or_default();
    LOGIN.replace("<!--error-->", &msg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `token=...` from an `application/x-www-form-urlencoded` body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| crate::http::percent_decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_are_embedded_and_the_login_escapes() {
        assert!(std::str::from_utf8(INDEX).unwrap().contains("/app.js"));
        assert!(asset("/vendor/chart.umd.js").is_some_and(|a| a.bytes.len() > 100_000));
        assert!(asset("/nope").is_none());
        let p = login_page(Some("<b>wrong</b>"));
        assert!(p.contains("&lt;b&gt;wrong") && !p.contains("<b>wrong"));
        assert_eq!(
            form_field(b"a=1&token=ab%2Bc+d", "token").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(form_field(b"a=1", "token"), None);
    }
}
