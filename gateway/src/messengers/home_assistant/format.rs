//! What the phone shows: the notification of a pending request (title, text, actions), the
//! replacement that says how it ended, and the action ids ([`action_id`], [`parse_action`]).

use std::time::Duration;

use serde_json::{Value, json};

use crate::approvals::{ApprovalRequest, Resolution, grant_label};
use crate::messengers::telegram::format::{format_time, truncate};
use crate::messengers::visible;
use crate::store::Timestamp;

/// The prefix of every action id this approver sends.
pub const ACTION_PREFIX: &str = "AGENTGATE_";

/// The most characters of a notification's text (phones show a few lines anyway).
const MAX_MESSAGE: usize = 1000;
/// The most characters of one value (tool, signature, agent, entity) in the text.
const MAX_VALUE: usize = 200;
/// The most entities listed.
const MAX_TARGETS: usize = 5;

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Approve.
    Allow,
    /// Approve and grant the same call for the configured duration.
    Grant,
    /// Deny.
    Deny,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Grant => "GRANT",
            Action::Deny => "DENY",
        }
    }
}

/// The action id of `action` for the request whose code is `code`:
/// `AGENTGATE_ALLOW_<code>`.
pub fn action_id(action: Action, code: &str) -> String {
    format!("{ACTION_PREFIX}{}_{code}", action.word())
}

/// The action and code of an action id of this approver; `None` for anything else.
pub fn parse_action(id: &str) -> Option<(Action, &str)> {
    let rest = id.strip_prefix(ACTION_PREFIX)?;
    let (word, code) = rest.split_once('_')?;
    let action = match word {
        "ALLOW" => Action::Allow,
        "GRANT" => Action::Grant,
        "DENY" => Action::Deny,
        _ => return None,
    };
    let valid = !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some((action, code))
}

/// The notification tag of the request whose code is `code` (a later notification with the
/// same tag replaces it).
pub fn tag(code: &str) -> String {
    format!("agent-gate-{code}")
}

/// Text an agent chose, as the notification shows it: hidden characters escaped, cut.
fn shown(text: &str) -> String {
    truncate(&visible::escape(text), MAX_VALUE)
}

fn has_hidden(request: &ApprovalRequest) -> bool {
    visible::request_has_hidden(request, &request.args.to_string())
        || request.targets.iter().any(|t| visible::has_hidden(t))
}

/// The body shared by the notification and its replacement: what is asked, by whom.
fn body(request: &ApprovalRequest) -> String {
    let mut text = String::new();
    if has_hidden(request) {
        text.push_str("⚠️ ");
        text.push_str(visible::WARNING);
        text.push('\n');
    }
    text.push_str(&format!(
        "{}\nAgent: {} (request {})\n",
        shown(&request.signature),
        shown(&request.key.agent_id),
        shown(&request.key.request_id),
    ));
    if !request.targets.is_empty() {
        let mut affects: Vec<String> = request
            .targets
            .iter()
            .take(MAX_TARGETS)
            .map(|t| shown(t))
            .collect();
        if request.targets.len() > MAX_TARGETS {
            affects.push(format!(
                "and {} more (see the web page)",
                request.targets.len() - MAX_TARGETS
            ));
        }
        text.push_str(&format!("Affects: {}\n", affects.join(", ")));
    }
    if let Some(rule) = &request.rule {
        text.push_str(&format!("Rule: {}\n", shown(rule)));
    }
    text
}

/// The service data of the notification of a new pending request: `title`, `message`, and
/// `data` with the `tag`, the actions (Allow, Allow <grant>, Deny: Android shows three),
/// `timeout` (the phone drops it when the request expires), and high priority with no
/// time-to-live so it is delivered at once.
pub fn approval_notification(
    request: &ApprovalRequest,
    code: &str,
    grant: Option<Duration>,
    now: Timestamp,
) -> Value {
    let message = truncate(
        &format!(
            "{}Expires: {}",
            body(request),
            format_time(request.expires_at)
        ),
        MAX_MESSAGE,
    );
    let mut actions = vec![json!({"action": action_id(Action::Allow, code), "title": "Allow"})];
    if let Some(grant) = grant {
        actions.push(json!({
            "action": action_id(Action::Grant, code),
            "title": format!("Allow {}", grant_label(grant)),
        }));
    }
    actions.push(json!({"action": action_id(Action::Deny, code), "title": "Deny"}));
    let remaining_ms = request.expires_at.as_millis() - now.as_millis();
    let timeout = (remaining_ms.max(0) / 1000).max(1);
    json!({
        "title": format!("Approval needed: {}", shown(&request.tool)),
        "message": message,
        "data": {
            "tag": tag(code),
            "actions": actions,
            "timeout": timeout,
            "ttl": 0,
            "priority": "high",
        },
    })
}

/// A one-line account of how the request ended.
pub fn outcome_line(resolution: &Resolution) -> String {
    match resolution {
        Resolution::Approved { by, at } => {
            format!(
                "✅ Approved by {} at {}",
                visible::escape(by),
                format_time(*at)
            )
        }
        Resolution::Denied { by, at, reason } => {
            let reason = reason
                .as_deref()
                .map(|r| format!(" (reason: {})", visible::escape(r)))
                .unwrap_or_default();
            format!(
                "❌ Denied by {} at {}{reason}",
                visible::escape(by),
                format_time(*at)
            )
        }
        Resolution::Expired { at } => format!("⌛ Expired at {}", format_time(*at)),
        Resolution::Cancelled { reason, at } => format!(
            "🚫 Cancelled at {}: {}",
            format_time(*at),
            visible::escape(reason)
        ),
    }
}

/// The service data that replaces the notification once the request ended: same `tag`, the
/// outcome first, no actions, no new alert sound.
pub fn resolved_notification(
    request: &ApprovalRequest,
    code: &str,
    resolution: &Resolution,
) -> Value {
    let message = truncate(
        &format!("{}\n{}", outcome_line(resolution), body(request)),
        MAX_MESSAGE,
    );
    let title = match resolution {
        Resolution::Approved { .. } => "Approved",
        Resolution::Denied { .. } => "Denied",
        Resolution::Expired { .. } => "Expired",
        Resolution::Cancelled { .. } => "Cancelled",
    };
    json!({
        "title": format!("{title}: {}", shown(&request.tool)),
        "message": message.trim_end(),
        "data": {
            "tag": tag(code),
            "alert_once": true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_round_trip_and_foreign_ids_are_not_ours() {
        let code = "00ff11ee22dd33cc44bb55aa66997788";
        for action in [Action::Allow, Action::Grant, Action::Deny] {
            assert_eq!(parse_action(&action_id(action, code)), Some((action, code)));
        }
        for foreign in [
            "",
            "ALLOW",
            "AGENTGATE_",
            "AGENTGATE_ALLOW_",
            "AGENTGATE_MAYBE_00ff",
            "AGENTGATE_ALLOW_not-hex",
            "OPEN_GARAGE",
        ] {
            assert_eq!(parse_action(foreign), None, "{foreign}");
        }
    }
}
