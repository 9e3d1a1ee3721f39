//! Dashboard sessions: a random id in an HttpOnly, SameSite=Strict cookie, an expiry, and a
//! per-session CSRF token the page sends back in `X-ACS-CSRF` on state-changing requests. Pure
//! (the clock is passed in).

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use cookie::{Cookie, SameSite};

pub const COOKIE: &str = "acs_session";
pub const CSRF_HEADER: &str = "x-acs-csrf";
/// A session lasts this long after login (no sliding renewal: log in again after).
pub const TTL_MS: u64 = 12 * 3600 * 1000;
/// Most live sessions; a login beyond it evicts the one closest to expiry.
pub const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
    pub expires_ms: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    live: HashMap<String, Session>,
}

/// 32 random bytes (the thread-local CSPRNG) in hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// A new session; returns its id (the cookie value) and the session.
    pub fn create(&mut self, now_ms: u64) -> (String, Session) {
        self.live.retain(|_, s| s.expires_ms > now_ms);
        if self.live.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| k.clone())
            {
                self.live.remove(&oldest);
            }
        }
        let id = random_token();
        let s = Session {
            csrf: random_token(),
            expires_ms: now_ms + TTL_MS,
        };
        self.live.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The live session `id`, if any; an expired one is forgotten.
    pub fn get(&mut self, id: &str, now_ms: u64) -> Option<Session> {
        match self.live.get(id) {
            Some(s) if s.expires_ms > now_ms => Some(s.clone()),
            Some(_) => {
                self.live.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.live.remove(id);
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// The session id from the `Cookie:` headers, if one names it.
pub fn id_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

fn cookie(value: String, max_age_s: i64) -> String {
    Cookie::build((COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build()
        .to_string()
}

/// `Set-Cookie` for a new session. Not `Secure`: the monitor serves plain HTTP on 127.0.0.1 by
/// default; put TLS in front (and the cookie stays HttpOnly and SameSite=Strict) when exposing it.
pub fn set_cookie(id: &str) -> String {
    cookie(id.to_string(), (TTL_MS / 1000) as i64)
}

pub fn clear_cookie() -> String {
    cookie(String::new(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_distinct() {
        let mut s = Sessions::default();
        let (a, sa) = s.create(1_000);
        let (b, sb) = s.create(1_000);
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        assert_eq!(a.len(), 64);
        assert_eq!(s.get(&a, 2_000), Some(sa.clone()));
        assert_eq!(s.get(&a, 1_000 + TTL_MS), None);
        assert_eq!(s.len(), 1, "the expired session is forgotten");
        s.remove(&b);
        assert!(s.get(&b, 2_000).is_none() && s.is_empty());
        assert!(s.get("nope", 0).is_none());
    }

    #[test]
    fn the_session_table_is_bounded() {
        let mut s = Sessions::default();
        let (first, _) = s.create(0);
        for i in 1..=MAX_SESSIONS as u64 {
            s.create(i);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            s.get(&first, 10).is_none(),
            "the oldest session was evicted"
        );
    }

    #[test]
    fn cookies_parse() {
        let id = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, v.parse().unwrap());
            id_from(&h)
        };
        assert_eq!(id("a=1; acs_session=xyz; b=2").as_deref(), Some("xyz"));
        assert_eq!(id("acs_session=xyz").as_deref(), Some("xyz"));
        assert_eq!(id("acs_sessionx=1"), None);
        assert_eq!(id(""), None);
        assert_eq!(id_from(&HeaderMap::new()), None);
        let set = set_cookie("id");
        assert!(set.starts_with("acs_session=id;"), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(
            set.contains("Path=/") && set.contains("Max-Age=43200"),
            "{set}"
        );
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
