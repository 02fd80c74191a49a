//! Rate limiting of per-connection log lines: a peer opening thousands of connections would
//! otherwise write one WARN line each. Each (address, kind of line) may log once per
//! [`LOG_INTERVAL`]; the next line allowed says how many were suppressed meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one line per address and kind in this long.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Most (address, kind) entries remembered; beyond it, lines of new keys are suppressed until
/// old entries expire (a flood from many addresses cannot grow the map without bound).
const MAX_ENTRIES: usize = 65_536;

#[derive(Debug)]
struct Slot {
    last: Instant,
    suppressed: u64,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    slots: Mutex<HashMap<(IpAddr, &'static str), Slot>>,
}

impl LogLimiter {
    /// `Some(suppressed)` if a line of `kind` about `ip` may be written now (with the number
    /// of such lines suppressed since the last one); `None` if it is to be suppressed.
    pub(crate) fn allow(&self, ip: IpAddr, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(&(ip, kind)) {
            if now.saturating_duration_since(slot.last) < LOG_INTERVAL {
                slot.suppressed += 1;
                return None;
            }
            let suppressed = slot.suppressed;
            *slot = Slot {
                last: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, slot| now.saturating_duration_since(slot.last) < LOG_INTERVAL);
            if slots.len() >= MAX_ENTRIES {
                return None;
            }
        }
        slots.insert(
            (ip, kind),
            Slot {
                last: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_suppressed_count() {
        let limiter = LogLimiter::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(limiter.allow(ip, "refused"), Some(0));
        for _ in 0..99 {
            assert_eq!(limiter.allow(ip, "refused"), None);
        }
        // Another kind and another address have their own budget.
        assert_eq!(limiter.allow(ip, "failed"), Some(0));
        assert_eq!(
            limiter.allow(IpAddr::from([127, 0, 0, 2]), "refused"),
            Some(0)
        );
        tokio::time::advance(LOG_INTERVAL).await;
        assert_eq!(limiter.allow(ip, "refused"), Some(99));
        assert_eq!(limiter.allow(ip, "refused"), None);
    }
}
