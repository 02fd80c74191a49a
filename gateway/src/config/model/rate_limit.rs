//! `rate_limit:`: how many requests, and how many waiting for approval, an agent may have.

use crate::config::walk::{Ctx, Field};

/// `rate_limit:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per minute per agent (default 60).
    pub max_requests_per_minute: u32,
    /// Requests waiting for approval per agent (default 10).
    pub max_pending_approvals: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_requests_per_minute: 60,
            max_pending_approvals: 10,
        }
    }
}

/// Reads `rate_limit:` (defaults where it or a key is missing).
pub(super) fn load(ctx: &mut Ctx, f: &Field<'_>) -> RateLimitConfig {
    let mut r = RateLimitConfig::default();
    let Some(obj) = ctx.obj(f) else { return r };
    obj.check_keys(ctx, &["max_requests_per_minute", "max_pending_approvals"]);
    if let Some(n) = ctx.int(&obj.field("max_requests_per_minute"), 1, 1_000_000) {
        r.max_requests_per_minute = u32::try_from(n).unwrap_or(r.max_requests_per_minute);
    }
    if let Some(n) = ctx.int(&obj.field("max_pending_approvals"), 1, 100_000) {
        r.max_pending_approvals = u32::try_from(n).unwrap_or(r.max_pending_approvals);
    }
    r
}
