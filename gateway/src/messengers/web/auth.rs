//! Who may use the approval page: the token check (constant time), browser sessions with
//! their CSRF tokens, the per-address throttle of every credential check, the one-time
//! login links, the loopback rule for pages without a token (with a strict parse of the
//! `Host` header), and the same-origin check of POSTs.

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
    /// Failed credential checks (wrong login token, wrong bearer token, invalid one-time
    /// link, wrong admin secret) accepted from one client address per
    /// [`SessionLimits::login_window`]; beyond, that address's credential checks are refused
    /// with 429 until its window ends (default 5). Other addresses are not affected.
    pub max_failed_logins: u32,
    /// The window of the login throttle (default 60 s).
    pub login_window: Duration,
}

/// How long a one-time login link stays valid.
pub const LINK_LIFETIME: Duration = Duration::from_secs(600);

/// One-time links kept at most; the oldest is dropped beyond.
const MAX_LINKS: usize = 32;

/// Client addresses the throttle keeps at most; the stalest is dropped beyond.
const MAX_TRACKED_ADDRESSES: usize = 4096;

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

/// The failed credential checks of one client address in its current window.
struct Failures {
    window_start: Instant,
    count: u32,
}

/// Sessions, one-time links and the per-address throttle.
pub(super) struct Auth {
    limits: SessionLimits,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Mutex<HashMap<IpAddr, Failures>>,
    /// SHA-256 of each outstanding one-time link token, with its expiry.
    links: Mutex<HashMap<[u8; 32], Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh random value (256 bits) as hex.
pub(super) fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
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

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginRefusal {
    /// The credential was looked at and is wrong.
    WrongToken,
    /// The client's address had too many failures; retry after this long. The credential
    /// was not looked at.
    Throttled(Duration),
}

/// The address a client is counted under (`None`: no peer address known, all such clients
/// share one count). IPv6 addresses count per /64.
fn client_key(peer: Option<SocketAddr>) -> IpAddr {
    peer.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| {
        crate::ratelimit::client_key(p.ip())
    })
}

impl Auth {
    pub(super) fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            sessions: Mutex::new(HashMap::new()),
            throttle: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(Throttled(retry_after))` while the client's address has used up its failures.
    pub(super) fn check_throttle(&self, peer: Option<SocketAddr>) -> Result<(), LoginRefusal> {
        let now = Instant::now();
        let throttle = lock(&self.throttle);
        match throttle.get(&client_key(peer)) {
            Some(f)
                if f.count >= self.limits.max_failed_logins
                    && now.duration_since(f.window_start) < self.limits.login_window =>
            {
                let left = self
                    .limits
                    .login_window
                    .saturating_sub(now.duration_since(f.window_start));
                Err(LoginRefusal::Throttled(left))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed credential check of the client's address. A success elsewhere (or
    /// from the same address) does not clear it: only the end of the window does.
    pub(super) fn record_failure(&self, peer: Option<SocketAddr>) {
        let now = Instant::now();
        let window = self.limits.login_window;
        let mut throttle = lock(&self.throttle);
        if throttle.len() >= MAX_TRACKED_ADDRESSES {
            throttle.retain(|_, f| now.duration_since(f.window_start) < window);
            if throttle.len() >= MAX_TRACKED_ADDRESSES {
                let stalest = throttle
                    .iter()
                    .min_by_key(|(_, f)| f.window_start)
                    .map(|(ip, _)| *ip);
                if let Some(ip) = stalest {
                    throttle.remove(&ip);
                }
            }
        }
        let failures = throttle.entry(client_key(peer)).or_insert(Failures {
            window_start: now,
            count: 0,
        });
        if now.duration_since(failures.window_start) >= window {
            failures.window_start = now;
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
    }

    /// Checks a credential through the client's throttle: `Ok(())` if the address is not
    /// blocked and `valid()` says yes; a `false` counts as a failure of the address.
    pub(super) fn checked(
        &self,
        peer: Option<SocketAddr>,
        valid: impl FnOnce() -> bool,
    ) -> Result<(), LoginRefusal> {
        self.check_throttle(peer)?;
        if valid() {
            Ok(())
        } else {
            self.record_failure(peer);
            Err(LoginRefusal::WrongToken)
        }
    }

    /// A fresh one-time login link token (valid for [`LINK_LIFETIME`], once).
    pub(super) fn issue_link(&self) -> String {
        let now = Instant::now();
        let token = random_hex();
        let mut links = lock(&self.links);
        links.retain(|_, expires| *expires > now);
        while links.len() >= MAX_LINKS {
            let oldest = links.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k);
            match oldest {
                Some(key) => {
                    links.remove(&key);
                }
                None => break,
            }
        }
        links.insert(Sha256::digest(token.as_bytes()).into(), now + LINK_LIFETIME);
        token
    }

    /// Uses up a one-time link token: `true` if it was outstanding and unexpired. (Looked up
    /// by its SHA-256, so the lookup's timing says nothing about the outstanding tokens.)
    pub(super) fn redeem_link(&self, presented: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let now = Instant::now();
        lock(&self.links)
            .remove(&key)
            .is_some_and(|expires| expires > now)
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

    /// Checks a login attempt from `peer` against `token`, through the address's throttle.
    pub(super) fn login(
        &self,
        peer: Option<SocketAddr>,
        token: &Secret,
        presented: &str,
    ) -> Result<(), LoginRefusal> {
        self.checked(peer, || token_matches(token, presented))
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

/// The host of a `Host` header value, parsed strictly as an authority without userinfo
/// (RFC 9110 §7.2: `host [ ":" port ]`): a bracketed IPv6 address, or a name or IPv4 address
/// of letters, digits, `-` and `.`; the port, if any, 1 to 5 digits. Anything else (`@`,
/// a second `:`, a path, spaces) is `None`. IPv6 comes without brackets.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (inside, port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let name_ok = host.starts_with('[')
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    name_ok.then_some(name)
}

/// Whether the `Host` header names this machine's loopback (`localhost`, 127.x, ::1): a page
/// without a token answers only such names, so a DNS-rebound name cannot read it. The header
/// is parsed strictly: `127.0.0.1:8080@evil.example` is not loopback.
pub(super) fn is_loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some(name) = host_name(host) else {
        return false;
    };
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
            "127.0.0.1:8080@evil.example",
            "localhost@evil.example",
            "evil.example@127.0.0.1",
            "127.0.0.1:8080:1",
            "127.0.0.1:",
            "127.0.0.1:http",
            "127.0.0.1:123456",
            "[::1]:8080@evil.example",
            "[::1]x",
            "[::1",
            "127.0.0.1/evil",
            "",
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
    fn failed_logins_are_throttled_per_address() {
        let auth = Auth::new(SessionLimits {
            max_failed_logins: 2,
            login_window: Duration::from_secs(3600),
            ..SessionLimits::default()
        });
        let token = Secret::new("right");
        let here = Some("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        let there = Some("192.0.2.2:5000".parse::<SocketAddr>().unwrap());
        assert_eq!(auth.login(here, &token, "right"), Ok(()));
        assert_eq!(
            auth.login(here, &token, "wrong"),
            Err(LoginRefusal::WrongToken)
        );
        // A success in between does not clear the count.
        assert_eq!(auth.login(there, &token, "right"), Ok(()));
        assert_eq!(
            auth.login(here, &token, "wrong"),
            Err(LoginRefusal::WrongToken)
        );
        // Even the right token waits for the window to end now, from this address only.
        assert!(matches!(
            auth.login(here, &token, "right"),
            Err(LoginRefusal::Throttled(_))
        ));
        assert_eq!(auth.login(there, &token, "right"), Ok(()));
    }

    #[test]
    fn one_time_links_work_once() {
        let auth = Auth::new(SessionLimits::default());
        let link = auth.issue_link();
        assert_eq!(link.len(), 64);
        assert!(!auth.redeem_link("not-a-link"));
        assert!(auth.redeem_link(&link));
        assert!(!auth.redeem_link(&link));
        // Only the newest MAX_LINKS are kept.
        let first = auth.issue_link();
        for _ in 0..MAX_LINKS {
            auth.issue_link();
        }
        assert!(!auth.redeem_link(&first));
    }
}
