//! Who may use the approval page: the token check (constant time), browser sessions with
//! their CSRF tokens, the login throttle, the loopback rule for pages without a token, and
//! the same-origin check of POSTs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, REFERER};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "agent_gate_approvals";

/// The header carrying the CSRF token of `fetch` POSTs.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// Limits of the page's browser sessions and logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long a session lasts after login (default 12 hours).
    pub lifetime: Duration,
    /// Sessions kept at most; the oldest is dropped beyond (default 256).
    pub max_sessions: usize,
    /// Failed logins accepted per [`SessionLimits::login_window`] before logins are refused
    /// with 429 until the window ends (default 5).
    pub max_failed_logins: u32,
    /// The window of the login throttle (default 60 s).
    pub login_window: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 3600),
            max_sessions: 256,
            max_failed_logins: 5,
            login_window: Duration::from_secs(60),
        }
    }
}

struct Session {
    csrf: String,
    expires: Instant,
}

struct Throttle {
    window_start: Instant,
    failures: u32,
}

/// Sessions and the login throttle.
pub(super) struct Auth {
    limits: SessionLimits,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Mutex<Throttle>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh random value (256 bits) as hex.
fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison that does not leak the length either (both sides are hashed).
pub(super) fn same_secret(expected: &str, presented: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Whether `presented` is the configured token (constant time).
pub(super) fn token_matches(token: &Secret, presented: &str) -> bool {
    same_secret(token.expose(), presented)
}

/// A session the browser presented (its id and CSRF token).
#[derive(Clone)]
pub(super) struct SessionInfo {
    pub(super) id: String,
    pub(super) csrf: String,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginRefusal {
    WrongToken,
    Throttled,
}

impl Auth {
    pub(super) fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            sessions: Mutex::new(HashMap::new()),
            throttle: Mutex::new(Throttle {
                window_start: Instant::now(),
                failures: 0,
            }),
        }
    }

    /// Creates a session; returns its id (the cookie value) and CSRF token.
    pub(super) fn create_session(&self) -> SessionInfo {
        let now = Instant::now();
        let info = SessionInfo {
            id: random_hex(),
            csrf: random_hex(),
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        while sessions.len() >= self.limits.max_sessions.max(1) {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    sessions.remove(&id);
                }
                None => break,
            }
        }
        sessions.insert(
            info.id.clone(),
            Session {
                csrf: info.csrf.clone(),
                expires: now + self.limits.lifetime,
            },
        );
        info
    }

    /// The live session whose id the request's cookie carries.
    pub(super) fn session(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        match sessions.get(id) {
            Some(s) if s.expires > now => Some(SessionInfo {
                id: id.to_owned(),
                csrf: s.csrf.clone(),
            }),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub(super) fn end_session(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// Checks a login attempt against `token`, counting failures for the throttle.
    pub(super) fn login(&self, token: &Secret, presented: &str) -> Result<(), LoginRefusal> {
        let now = Instant::now();
        let mut throttle = lock(&self.throttle);
        if now.duration_since(throttle.window_start) >= self.limits.login_window {
            throttle.window_start = now;
            throttle.failures = 0;
        }
        if throttle.failures >= self.limits.max_failed_logins {
            return Err(LoginRefusal::Throttled);
        }
        if token_matches(token, presented) {
            Ok(())
        } else {
            throttle.failures = throttle.failures.saturating_add(1);
            Err(LoginRefusal::WrongToken)
        }
    }

    /// The `Set-Cookie` value of a session.
    pub(super) fn session_cookie(&self, session: &SessionInfo) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path={}; HttpOnly; SameSite=Strict; Max-Age={}",
            session.id,
            super::BASE_PATH,
            self.limits.lifetime.as_secs()
        )
    }
}

/// The `Set-Cookie` value that deletes the session cookie.
pub(super) fn clear_cookie() -> String {
    format!(
        "{SESSION_COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        super::BASE_PATH
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The bearer token of an `Authorization: Bearer ...` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether a peer address is loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback).
pub(super) fn is_loopback_peer(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

/// The host name of a `Host` header value (without the port; IPv6 without brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(name, _)| name);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Whether the `Host` header names this machine's loopback (`localhost`, 127.x, ::1): a page
/// without a token answers only such names, so a DNS-rebound name cannot read it.
pub(super) fn is_loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a POST comes from a page of this host: its `Origin` (or, when a browser sent none,
/// the origin of its `Referer`) must be `http(s)://<Host>`. A request with neither is refused.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let origin = match headers.get(ORIGIN) {
        Some(origin) => origin.to_str().ok().map(str::to_owned),
        None => headers
            .get(REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(referer_origin),
    };
    let Some(origin) = origin else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// `scheme://authority` of a `Referer` URL.
fn referer_origin(referer: &str) -> Option<String> {
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn loopback_peers() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert!(is_loopback_peer(peer("127.0.0.1:5000")));
        assert!(is_loopback_peer(peer("127.8.9.10:5000")));
        assert!(is_loopback_peer(peer("[::1]:5000")));
        assert!(is_loopback_peer(peer("[::ffff:127.0.0.1]:5000")));
        assert!(!is_loopback_peer(peer("192.168.1.20:5000")));
        assert!(!is_loopback_peer(peer("[::ffff:10.0.0.1]:5000")));
        assert!(!is_loopback_peer(peer("[fe80::1]:5000")));
        // No peer address known: counted as remote.
        assert!(!is_loopback_peer(None));
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(&headers(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:8080",
            "[fe80::1]",
        ] {
            assert!(!is_loopback_host(&headers(&[("host", host)])), "{host}");
        }
        assert!(!is_loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn same_origin_checks_origin_then_referer() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        // The Origin wins over a matching Referer.
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9999"),
            ("referer", "http://127.0.0.1:8080/approvals")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:8080/approvals?x=1")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:8080.evil.example/approvals")
        ])));
        assert!(!same_origin(&headers(&[host])));
        assert!(!same_origin(&headers(&[(
            "origin",
            "http://127.0.0.1:8080"
        )])));
    }

    #[test]
    fn cookies_and_bearer() {
        let h = headers(&[
            ("cookie", "a=1; agent_gate_approvals=abc ; b=2"),
            ("authorization", "Bearer  s3cret"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(bearer(&h), Some("s3cret"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic eDp5")])), None);
    }

    #[test]
    fn secrets_compare_whole_values() {
        let token = Secret::new("correct horse");
        assert!(token_matches(&token, "correct horse"));
        assert!(!token_matches(&token, "correct hors"));
        assert!(!token_matches(&token, "correct horse "));
        assert!(!token_matches(&token, ""));
    }

    #[test]
    fn sessions_expire_are_capped_and_end() {
        let auth = Auth::new(SessionLimits {
            max_sessions: 2,
            ..SessionLimits::default()
        });
        let first = auth.create_session();
        let second = auth.create_session();
        assert_ne!(first.id, second.id);
        assert_ne!(first.csrf, second.csrf);
        let with = |s: &SessionInfo| headers(&[("cookie", &format!("{SESSION_COOKIE}={}", s.id))]);
        assert_eq!(auth.session(&with(&first)).unwrap().csrf, first.csrf);
        // A third session pushes out the oldest.
        let third = auth.create_session();
        assert!(auth.session(&with(&first)).is_none());
        assert!(auth.session(&with(&third)).is_some());
        auth.end_session(&third.id);
        assert!(auth.session(&with(&third)).is_none());
        assert!(auth.session(&with(&second)).is_some());

        let expired = Auth::new(SessionLimits {
            lifetime: Duration::ZERO,
            ..SessionLimits::default()
        });
        let gone = expired.create_session();
        assert!(expired.session(&with(&gone)).is_none());
        let cookie = expired.session_cookie(&gone);
        assert!(cookie.contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn failed_logins_are_throttled() {
        let auth = Auth::new(SessionLimits {
            max_failed_logins: 2,
            login_window: Duration::from_secs(3600),
            ..SessionLimits::default()
        });
        let token = Secret::new("right");
        assert_eq!(auth.login(&token, "right"), Ok(()));
        assert_eq!(auth.login(&token, "wrong"), Err(LoginRefusal::WrongToken));
        assert_eq!(auth.login(&token, "wrong"), Err(LoginRefusal::WrongToken));
        // Even the right token waits for the window to end now.
        assert_eq!(auth.login(&token, "right"), Err(LoginRefusal::Throttled));
    }
}
