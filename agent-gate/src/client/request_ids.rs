//! What the gateway's answers have shown about `request_id`: whether re-sending a call after
//! a lost connection is safe (agent-gate attaches it to the same request) or might run it twice
//! (upstream's agentpass gateway ignores the id).

use serde_json::Value;

use crate::protocol::ErrorObject;

/// Whether the gateway honours `request_id` (attaches a re-sent call instead of running it
/// again), as far as its answers have shown: agent-gate echoes the id in every answer and
/// status notification; upstream's gateway (agentpass) echoes nothing and ignores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum RequestIds {
    /// No answer has shown it yet.
    #[default]
    Unknown,
    /// An answer or notification echoed the call's `request_id`.
    Honoured,
    /// A successful answer came without it.
    Ignored,
}

impl RequestIds {
    /// What the answer to a `tool_request` says: `Some` when it shows either way.
    pub(crate) fn from_answer(reply: &Result<Value, ErrorObject>) -> Option<Self> {
        match reply {
            Ok(value) => Some(match value.get("request_id") {
                Some(Value::String(_)) => RequestIds::Honoured,
                _ => RequestIds::Ignored,
            }),
            // Refusals before a request exists carry no id on either gateway: no evidence.
            Err(error) => error
                .details()
                .and_then(|d| d.get("request_id"))
                .map(|_| RequestIds::Honoured),
        }
    }

    /// Why a sent call is not re-sent, for the error's message.
    pub(crate) fn evidence(self) -> &'static str {
        match self {
            RequestIds::Ignored => {
                "this gateway does not honour request_id (its answers do not echo it: an upstream agentpass gateway)"
            }
            _ => {
                "this gateway has not shown that it honours request_id (no answer on this client echoed one yet)"
            }
        }
    }
}
