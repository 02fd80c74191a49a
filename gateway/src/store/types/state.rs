//! Where a request is in its life ([`RequestState`]) and what the policy decided for it
//! ([`Decision`]), with their stored names.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a request is in its life (docs/ARCHITECTURE.md, "The life of a request").
///
/// ```text
/// pending ──▶ approved ──▶ executing ──▶ executed | failed
///    │            └──────────────────▶ failed
///    └──▶ denied | expired | cancelled
/// ```
///
/// Requests allowed by policy are inserted `executing`, requests denied by policy `denied`,
/// requests that need a human `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for a human decision (or the timeout).
    Pending,
    /// Approved by a human, not yet started.
    Approved,
    /// The call to the service is in flight.
    Executing,
    /// The call completed; `result` holds the data.
    Executed,
    /// The call failed, or its outcome is unknown; `error` says why.
    Failed,
    /// Denied by policy or by a human.
    Denied,
    /// No decision before the approval timeout.
    Expired,
    /// Withdrawn by its agent (`cancel_request`, MCP `tasks/cancel`) before a human decided.
    Cancelled,
}

impl RequestState {
    /// Every state, in life order.
    pub const ALL: [RequestState; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Executing,
        Self::Executed,
        Self::Failed,
        Self::Denied,
        Self::Expired,
        Self::Cancelled,
    ];

    /// The name stored in the database and shown to users.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the request's life is over (its outcome can be delivered to the agent).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Executed | Self::Failed | Self::Denied | Self::Expired | Self::Cancelled
        )
    }

    /// Whether `self → to` is an edge of the state machine.
    pub const fn can_transition_to(self, to: RequestState) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Approved)
                | (Self::Pending, Self::Denied)
                | (Self::Pending, Self::Expired)
                | (Self::Pending, Self::Cancelled)
                | (Self::Approved, Self::Executing)
                | (Self::Approved, Self::Failed)
                | (Self::Executing, Self::Executed)
                | (Self::Executing, Self::Failed)
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A name read from the database that this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// What the policy decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Execute without asking.
    Allow,
    /// Refuse.
    Deny,
    /// Ask a human.
    Ask,
}

impl Decision {
    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }

    /// The state a request with this decision starts in.
    pub const fn initial_state(self) -> RequestState {
        match self {
            Self::Allow => RequestState::Executing,
            Self::Deny => RequestState::Denied,
            Self::Ask => RequestState::Pending,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "ask" => Ok(Self::Ask),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}
