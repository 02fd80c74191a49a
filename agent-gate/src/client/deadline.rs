//! The deadline of a tool call, which follows the gateway's `expires_at`.
//!
//! A call starts with the client's request timeout (or its own
//! [`CallOptions::timeout`](crate::CallOptions::timeout)). When the gateway
//! reports that the request waits for a human (`request_status` with
//! `awaiting_approval` and `expires_at`), the gateway itself answers by
//! `expires_at` at the latest (the result, or `-32002` when the approval times
//! out), so the call then waits until `expires_at` plus
//! [`APPROVAL_DEADLINE_MARGIN`], however long the gateway's approval timeout
//! is. A timeout the caller set explicitly (per call or with
//! [`ClientBuilder::request_timeout`](crate::ClientBuilder::request_timeout))
//! is never changed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::protocol::{RequestStatus, RequestStatusParams};

/// How long a call waits past the `expires_at` the gateway announced for its
/// approval: room for the gateway's answer to travel (its `-32002`, or the
/// result of an approval given at the last moment, executed within the
/// service's timeout), for `expires_at` being written in whole seconds and for
/// a little clock skew between the gateway and the client.
pub const APPROVAL_DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// When a call stops waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    started: Instant,
    at: Instant,
    /// Set by the caller: the gateway's `expires_at` does not move it.
    explicit: bool,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub(crate) fn new(timeout: Duration, explicit: bool) -> Self {
        let started = Instant::now();
        Deadline {
            started,
            at: started + timeout,
            explicit,
        }
    }

    /// The instant the call gives up.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// How long the call was allowed in total (for the timeout error).
    pub(crate) fn allowed(&self) -> Duration {
        self.at.saturating_duration_since(self.started)
    }

    /// Follows a `request_status` notification: an `awaiting_approval` with a
    /// readable `expires_at` moves the deadline to `expires_at` plus
    /// [`APPROVAL_DEADLINE_MARGIN`] (sooner or later than before), unless the
    /// deadline is explicit. `now` is the wall clock, which `expires_at` is
    /// measured against.
    pub(crate) fn follow(&mut self, status: &RequestStatusParams, now: SystemTime) {
        if self.explicit || status.status != RequestStatus::AwaitingApproval {
            return;
        }
        let Some(expires_at) = status.expires_at.as_deref().and_then(parse_rfc3339) else {
            return;
        };
        // Already past (or the clocks disagree): wait the margin only.
        let left = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
        self.at = Instant::now() + left + APPROVAL_DEADLINE_MARGIN;
    }
}

/// Reads an RFC 3339 timestamp (`2026-11-21T16:47:40Z`, optional fraction, `Z` or
/// `±HH:MM`) as a wall-clock time; `None` if it is not one, or is before 1970.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let at = SystemTime::from(at);
    at.duration_since(UNIX_EPOCH).ok().map(|_| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn awaiting(expires_at: &str) -> RequestStatusParams {
        RequestStatusParams::awaiting_approval("r-1", expires_at)
    }

    #[test]
    fn reads_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_rfc3339("2026-11-21T16:47:40Z"),
            Some(at(1_795_279_660))
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(at(951_782_400)));
        assert_eq!(
            parse_rfc3339("2026-11-21T17:47:40.5+01:00"),
            Some(at(1_795_279_660) + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T15:47:40-01:00"),
            Some(at(1_795_279_660))
        );
        for bad in [
            "",
            "soon",
            "2026-11-21",
            "2026-11-21T16:47:40",
            "2026-13-21T16:47:40Z",
            "2026-11-21T16:47:40Zjunk",
            "2026-11-21T16:47:40.Z",
            "2026-11-21T16:47:40+0100",
            "1969-12-31T23:59:59Z",
            "２026-11-21T16:47:40Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn awaiting_approval_moves_the_deadline_to_expires_at_plus_the_margin() {
        let now = at(1_795_279_660);
        let start = Instant::now();
        let mut d = Deadline::new(Duration::from_secs(930), false);
        assert_eq!(d.at(), start + Duration::from_secs(930));
        tokio::time::advance(Duration::from_secs(5)).await;
        // An approval timeout far longer than the initial deadline: the call waits for it.
        d.follow(&awaiting("2026-11-21T17:47:40Z"), now);
        let want = start + Duration::from_secs(5 + 3600) + APPROVAL_DEADLINE_MARGIN;
        assert_eq!(d.at(), want);
        assert_eq!(d.allowed(), want - start);
        // A shorter one: the call gives up soon after the gateway would have answered.
        d.follow(&awaiting("2026-11-21T16:47:42Z"), now);
        assert_eq!(
            d.at(),
            start + Duration::from_secs(5 + 2) + APPROVAL_DEADLINE_MARGIN
        );
        // Already expired by the client's clock: only the margin.
        d.follow(&awaiting("2026-11-21T16:00:00Z"), now);
        assert_eq!(
            d.at(),
            start + Duration::from_secs(5) + APPROVAL_DEADLINE_MARGIN
        );
    }

    #[tokio::test(start_paused = true)]
    async fn explicit_deadlines_and_other_statuses_stay() {
        let now = at(1_795_279_660);
        let start = Instant::now();
        let mut explicit = Deadline::new(Duration::from_secs(60), true);
        explicit.follow(&awaiting("2026-11-21T17:47:40Z"), now);
        assert_eq!(explicit.at(), start + Duration::from_secs(60));

        let mut d = Deadline::new(Duration::from_secs(930), false);
        let initial = d.at();
        d.follow(&awaiting("not a time"), now);
        d.follow(
            &RequestStatusParams {
                request_id: "r-1".into(),
                status: RequestStatus::AwaitingApproval,
                expires_at: None,
            },
            now,
        );
        d.follow(
            &RequestStatusParams {
                request_id: "r-1".into(),
                status: RequestStatus::Other("executing".into()),
                expires_at: Some("2026-11-21T17:47:40Z".into()),
            },
            now,
        );
        assert_eq!(d.at(), initial);
    }
}
