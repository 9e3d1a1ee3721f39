//! The live web dashboard, served next to the REST API.
//!
//! - [`session`]: login with the bearer token → an HttpOnly, SameSite=Strict session cookie and a
//!   CSRF token. Pure.
//! - [`sse`]: `GET /api/v1/events`, the bus forwarded to each browser, with event ids.
//! - [`hub`]: the fan-out to each browser's bounded queue, and the ring replayed on reconnect.
//! - [`actions`]: scale, cordon/uncordon/drain and replace, as requests to the brain.
//! - The static pages (`crates/monitor/web/`, plain ES modules and the vendored Chart.js) are
//!   embedded in the binary here, each with its ETag; `crate::http` routes.

pub mod actions;
pub mod hub;
pub mod session;
pub mod sse;

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use acs_events::Subjects;

use crate::http::HttpAuth;

/// Everything the dashboard routes need.
pub struct Web {
    pub auth: HttpAuth,
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    pub sessions: Mutex<session::Sessions>,
    pub hub: hub::Hub,
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
            hub: hub::Hub::default(),
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

impl Asset {
    /// A weak ETag from the bytes (weak: gzip changes the bytes sent, not the file).
    pub fn etag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.bytes.hash(&mut h);
        format!("W/\"{}\"", hex::encode(h.finish().to_be_bytes()))
    }
}

/// A small SVG icon (a rising line), served as `/favicon.ico`; browsers take SVG there.
pub const FAVICON: Asset = Asset {
    path: "/favicon.ico",
    content_type: "image/svg+xml",
    bytes: br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1f6feb"/><path d="M3 12l4-4 2 2 4-5" stroke="#fff" stroke-width="2" fill="none"/></svg>"##,
};

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
        .map(|e| {
            format!(
                "<p class=\"error\" id=\"login-error\">{}</p>",
                html_escape::encode_safe(e)
            )
        })
        .unwrap_or_default();
    LOGIN.replace("<!--error-->", &msg)
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
        assert!(FAVICON.bytes.starts_with(b"<svg"));
        let a = asset("/app.js").unwrap();
        assert_eq!(a.etag(), a.etag());
        assert_ne!(a.etag(), asset("/style.css").unwrap().etag());
    }
}
