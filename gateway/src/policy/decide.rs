//! [`Policy::decide`]: the fail-closed path from a tool request to a decision.
//!
//! Contract for the server: a request is executed only when [`Decision::action`] is
//! [`Action::Allow`] (or [`Action::Ask`] and a human approved). Every error on the way
//! (unknown tool, invalid arguments, a value that may not appear in a signature) yields
//! [`Action::Deny`] with the reason; nothing can turn an error into an allow. On the wire, a
//! [`Reason::UnknownTool`] or [`Reason::InvalidArguments`] is answered with -32600 (invalid
//! request, the reason's text as message and the nearest tools / per-argument errors as details)
//! and audited as a denial; a [`Reason::Policy`] deny is -32003.

use std::fmt;

use agent_gate_manifest::{ArgsError, Manifest, ValidArgs};
use serde_json::{Map, Value};

use super::{Action, Explanation, Policy};

/// Why a [`Decision`] was reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason<'p> {
    /// The policy decided on the signature.
    Policy(Explanation<'p>),
    /// The manifest has no such tool.
    UnknownTool {
        /// The requested tool.
        tool: String,
        /// The closest tool names, nearest first.
        nearest: Vec<String>,
    },
    /// The arguments do not satisfy the tool's declaration (this includes values that may not
    /// appear in a signature).
    InvalidArguments(ArgsError),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Policy(e) => write!(f, "{e}"),
            Reason::UnknownTool { tool, nearest } if nearest.is_empty() => {
                write!(f, "unknown tool `{tool}`")
            }
            Reason::UnknownTool { tool, nearest } => write!(
                f,
                "unknown tool `{tool}`; the nearest tools are: {}",
                nearest.join(", ")
            ),
            Reason::InvalidArguments(e) => write!(f, "invalid arguments: {e}"),
        }
    }
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'p> {
    /// What to do: always [`Action::Deny`] when the request itself is invalid.
    pub action: Action,
    /// The deciding signature, when one could be built (absent for invalid requests): the
    /// first one that was denied, else the first that asks, else the first.
    pub signature: Option<String>,
    /// Why (the deciding signature's explanation for a policy decision).
    pub reason: Reason<'p>,
    /// What the call affects (its targets, e.g. entity ids), each once.
    pub targets: Vec<String>,
    /// Every signature judged and its explanation, in order (one per target; empty for
    /// invalid requests).
    pub judged: Vec<(String, Explanation<'p>)>,
}

impl Decision<'_> {
    /// Whether the request itself was invalid (unknown tool or bad arguments), as opposed to
    /// judged by the policy. Such a request is denied; the server answers it with -32600.
    pub fn is_invalid_request(&self) -> bool {
        !matches!(self.reason, Reason::Policy(_))
    }
}

impl Policy {
    /// Judges a tool request: finds the tool in the manifest, validates the arguments, finds
    /// what the call affects and evaluates one signature per target for `agent`; the
    /// strictest decides (any deny, else any ask, else allow). Fails closed: any error is a
    /// [`Action::Deny`] carrying the reason.
    pub fn decide(
        &self,
        manifest: &Manifest,
        agent: &str,
        tool: &str,
        args: &Map<String, Value>,
    ) -> Decision<'_> {
        let Some(t) = manifest.tool(tool) else {
            return Decision::refused(Reason::unknown_tool(manifest, tool));
        };
        match t.validate(args) {
            Ok(valid) => self.judge(agent, valid),
            Err(e) => Decision::refused(Reason::InvalidArguments(e)),
        }
    }

    /// [`Policy::decide`] for arguments already validated against their tool: finds what the
    /// call affects and evaluates one signature per target; the strictest decides. A target
    /// the policy could not see (a refused key or value) is a denial as invalid arguments.
    pub fn judge(&self, agent: &str, valid: ValidArgs<'_>) -> Decision<'_> {
        let judged = match valid.judged() {
            Ok(judged) => judged,
            Err(e) => return Decision::refused(Reason::InvalidArguments(e)),
        };
        let explained: Vec<(String, Explanation<'_>)> = judged
            .signatures
            .into_iter()
            .map(|signature| {
                let explanation = self.explain(agent, &signature);
                (signature, explanation)
            })
            .collect();
        // The strictest judgement decides: any deny, else any ask, else allow.
        let deciding = [Action::Deny, Action::Ask, Action::Allow]
            .iter()
            .find_map(|action| explained.iter().position(|(_, e)| e.action == *action))
            .and_then(|index| explained.get(index))
            .map(|(signature, explanation)| (signature.clone(), *explanation));
        match deciding {
            Some((signature, explanation)) => Decision {
                action: explanation.action,
                signature: Some(signature),
                reason: Reason::Policy(explanation),
                targets: judged.targets,
                judged: explained,
            },
            // `judged` always yields a signature; failing closed all the same.
            None => Decision::refused(Reason::UnknownTool {
                tool: valid.tool().name.clone(),
                nearest: Vec::new(),
            }),
        }
    }
}

impl Reason<'_> {
    /// The reason for a tool the manifest does not have, with the nearest names.
    pub fn unknown_tool(manifest: &Manifest, tool: &str) -> Self {
        Reason::UnknownTool {
            tool: tool.to_string(),
            nearest: manifest
                .nearest_tools(tool, 3)
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

impl<'p> Decision<'p> {
    /// A request refused before the policy judged it (unknown tool, invalid arguments).
    fn refused(reason: Reason<'p>) -> Self {
        Decision {
            action: Action::Deny,
            signature: None,
            reason,
            targets: Vec::new(),
            judged: Vec::new(),
        }
    }
}
