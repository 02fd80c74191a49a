//! The vocabulary of a permission rule, shared by the module that parses `permissions.yaml`
//! (`config`) and the engine that evaluates the rules (`policy`): the [`Action`] a rule takes
//! and the glob [`Pattern`] it matches signatures with. Both depend on this module; it depends
//! on neither (a leaf).

pub mod glob;

use std::fmt;
use std::str::FromStr;

pub use glob::{Pattern, PatternError};

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Execute it.
    Allow,
    /// Refuse it.
    Deny,
    /// Ask a human approver.
    Ask,
}

impl Action {
    /// `allow`, `deny` or `ask`, as in `permissions.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Ask => "ask",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not `allow`, `deny` or `ask`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid action {0:?}: expected allow, deny or ask")]
pub struct ParseActionError(pub String);

impl FromStr for Action {
    type Err = ParseActionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Action::Allow),
            "deny" => Ok(Action::Deny),
            "ask" => Ok(Action::Ask),
            other => Err(ParseActionError(other.to_string())),
        }
    }
}
