//! Rate limiting: the per-agent sliding window of requests per minute (checked before a
//! request is evaluated) and the per-address throttle on failed authentications.
//!
//! Both use tokio's clock, so tests drive them with a paused clock.
//!
//! # Failed authentications
//!
//! [`AuthThrottle`] counts failed authentications (wrong token, no `auth` frame in time, a
//! first frame that is not `auth`) per remote IP address over a sliding minute. Up to
//! [`AuthThrottle::FREE_FAILURES`] (5) failures in a minute cost nothing. Every further failure
//! blocks the address for `2^(n-5)` seconds (n = failures in the last minute: 2 s, 4 s, 8 s,
//! ... capped at [`AuthThrottle::MAX_BLOCK`], 5 minutes). While an address is blocked, its
//! connections are answered `-32005` with a `retry_after` hint and closed without the token
//! being looked at.
//!
//! A successful authentication does **not** clear the record: an agent holding one valid
//! token could otherwise put a good login after every five wrong ones and guess other
//! agents' tokens at full speed. The failures of an address leave its record only as they
//! age out of the minute. (The `auth` frame carries only the token, not which agent it is
//! for, so a wrong token cannot be charged to a target agent: failures are counted per
//! address.) IPv6 addresses are counted per /64, the block one host usually holds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// Requests closer together than this share one entry of an agent's window (with their count),
/// so that a window holds at most a minute / `BUCKET` entries however high the limit is. A
/// shared entry expires a minute after its last request: requests leave the window up to
/// `BUCKET` late, never early.
const BUCKET: Duration = Duration::from_millis(10);

/// Requests of one agent that came within [`BUCKET`] of `first`.
#[derive(Debug)]
struct Bucket {
    first: Instant,
    last: Instant,
    count: usize,
}

/// A sliding one-minute window of request times for one agent.
#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<Bucket>,
    hits: usize,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while let Some(front) = self.buckets.front() {
            if now.saturating_duration_since(front.last) >= WINDOW {
                self.hits -= front.count;
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    fn record(&mut self, now: Instant) {
        self.hits += 1;
        if let Some(back) = self.buckets.back_mut()
            && now.saturating_duration_since(back.first) < BUCKET
        {
            back.count += 1;
            back.last = back.last.max(now);
            return;
        }
        self.buckets.push_back(Bucket {
            first: now,
            last: now,
            count: 1,
        });
    }
}

/// Per-agent limit on requests per minute (sliding window, as upstream).
#[derive(Debug)]
pub struct RequestLimiter {
    max_per_minute: u32,
    windows: Mutex<HashMap<String, Window>>,
}

impl RequestLimiter {
    /// A limiter allowing `max_per_minute` requests per agent in any 60-second window
    /// (0 refuses every request).
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            max_per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The configured limit.
    pub fn max_per_minute(&self) -> u32 {
        self.max_per_minute
    }

    /// Counts a request of `agent` now. `Ok(())` if it is within the limit; otherwise
    /// `Err(retry_after)`: how long until the oldest request in the window leaves it.
    pub fn check(&self, agent: &str) -> Result<(), Duration> {
        self.check_at(agent, Instant::now())
    }

    fn check_at(&self, agent: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !windows.contains_key(agent) {
            windows.insert(agent.to_owned(), Window::default());
        }
        let Some(window) = windows.get_mut(agent) else {
            return Ok(());
        };
        window.prune(now);
        let max = usize::try_from(self.max_per_minute).unwrap_or(usize::MAX);
        if window.hits >= max {
            let retry = window
                .buckets
                .front()
                .map(|oldest| WINDOW.saturating_sub(now.saturating_duration_since(oldest.last)))
                .unwrap_or(WINDOW);
            return Err(retry);
        }
        window.record(now);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Failures {
    times: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Per-address throttle on failed authentications (see the [module docs](self) for the rule).
#[derive(Debug, Default)]
pub struct AuthThrottle {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthThrottle {
    /// Failures per minute that are not penalised.
    pub const FREE_FAILURES: usize = 5;
    /// The longest an address is blocked.
    pub const MAX_BLOCK: Duration = Duration::from_secs(300);

    /// An empty throttle.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(retry_after)` if `ip` is blocked now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let ip = client_key(ip);
        let now = Instant::now();
        let addresses = self.lock();
        match addresses.get(&ip).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`; returns the block it now has, if any.
    pub fn record_failure(&self, ip: IpAddr) -> Option<Duration> {
        let ip = client_key(ip);
        let now = Instant::now();
        let mut addresses = self.lock();
        // Forget addresses that have been quiet for a minute, so the map cannot grow unbounded.
        addresses.retain(|_, f| {
            f.times
                .back()
                .is_some_and(|last| now.saturating_duration_since(*last) < WINDOW)
                || f.blocked_until.is_some_and(|until| until > now)
        });
        let failures = addresses.entry(ip).or_default();
        while let Some(first) = failures.times.front() {
            if now.saturating_duration_since(*first) >= WINDOW {
                failures.times.pop_front();
            } else {
                break;
            }
        }
        failures.times.push_back(now);
        let count = failures.times.len();
        if count <= Self::FREE_FAILURES {
            return None;
        }
        let exponent = u32::try_from(count - Self::FREE_FAILURES).unwrap_or(u32::MAX);
        let block = 2u64
            .checked_pow(exponent)
            .map(Duration::from_secs)
            .unwrap_or(Self::MAX_BLOCK)
            .min(Self::MAX_BLOCK);
        failures.blocked_until = Some(now + block);
        Some(block)
    }
}

/// The key an address is counted under: IPv4 (and IPv4-mapped IPv6) as is, other IPv6
/// addresses by their /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sliding_window_refuses_over_the_limit_and_recovers() {
        let limiter = RequestLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.check("pi").is_ok());
        }
        let retry = limiter.check("pi").unwrap_err();
        assert_eq!(retry, Duration::from_secs(60));
        // Another agent has its own window.
        assert!(limiter.check("laptop").is_ok());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(limiter.check("pi").unwrap_err(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(limiter.check("pi").is_ok());
    }

    /// A high limit at a high rate: requests close together share an entry, every one is still
    /// counted, and they leave the window a minute after the last of their entry.
    #[tokio::test(start_paused = true)]
    async fn close_requests_share_entries_and_all_count() {
        let limiter = RequestLimiter::new(10_000);
        for _ in 0..1_000 {
            for _ in 0..10 {
                assert!(limiter.check("pi").is_ok());
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let entries = {
            let windows = limiter.windows.lock().unwrap();
            let window = &windows["pi"];
            assert_eq!(window.hits, 10_000);
            window.buckets.len()
        };
        // 1,000 ms of requests in 10 ms entries.
        assert_eq!(entries, 100);
        // The 10,001st is refused until the first entry's last request is a minute old: it
        // was made at 9 ms and it is now 1,000 ms.
        assert_eq!(
            limiter.check("pi").unwrap_err(),
            Duration::from_millis(60_000 - 991)
        );
        tokio::time::advance(Duration::from_millis(60_000 - 991)).await;
        assert!(limiter.check("pi").is_ok());
        // The first entry's hundred were freed, one was taken.
        assert_eq!(limiter.windows.lock().unwrap()["pi"].hits, 9_901);
    }

    #[tokio::test(start_paused = true)]
    async fn auth_throttle_backs_off_exponentially() {
        let throttle = AuthThrottle::new();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(throttle.record_failure(ip), None);
            assert!(throttle.check(ip).is_ok());
        }
        assert_eq!(throttle.record_failure(ip), Some(Duration::from_secs(2)));
        assert_eq!(throttle.check(ip), Err(Duration::from_secs(2)));
        assert_eq!(throttle.record_failure(ip), Some(Duration::from_secs(4)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(throttle.check(ip).is_ok());
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(throttle.check(other).is_ok());
        // Only time clears the record (a success does not): the eighth failure within the
        // minute blocks for 8 s; a minute after the last failure the address starts afresh.
        assert_eq!(throttle.record_failure(ip), Some(Duration::from_secs(8)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(throttle.record_failure(ip), None);
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn auth_throttle_caps_the_block() {
        let throttle = AuthThrottle::new();
        let ip: IpAddr = "::1".parse().unwrap();
        let mut last = None;
        for _ in 0..40 {
            last = throttle.record_failure(ip);
        }
        assert_eq!(last, Some(AuthThrottle::MAX_BLOCK));
    }
}
