//! What the bot writes: approval messages and their final edits in Telegram's HTML parse
//! mode (every piece of request data escaped, hidden characters shown as `\u{202e}` under a
//! warning through [`crate::messengers::visible`], long parts truncated so a message stays
//! under Telegram's 4096-character limit), the inline keyboard, and the callback data of
//! its buttons (at most 64 bytes, self-contained so buttons keep working across restarts).

use std::time::Duration;

use frankenstein::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::approvals::{ApprovalRequest, Resolution, Verdict};
use crate::messengers::visible;
use crate::store::{RequestKey, Timestamp};

/// The longest callback data Telegram accepts, in bytes.
pub const MAX_CALLBACK_DATA: usize = 64;

/// Label of the approve button.
pub const ALLOW_LABEL: &str = "✅ Allow";

/// Label of the deny button.
pub const DENY_LABEL: &str = "❌ Deny";

/// The "always allow" button: a grant without expiry for exactly this call.
pub const ALWAYS_LABEL: &str = "✅ Always";

/// The preset reasons offered as "deny, because ..." buttons unless configured otherwise.
pub const DEFAULT_DENY_REASONS: [&str; 2] = ["Not now", "Not safe"];

/// The most preset reasons a message offers (one digit names each in the callback data).
pub const MAX_DENY_REASONS: usize = 4;

// Limits per field, in characters of visible text; together with the labels they stay well
// below Telegram's 4096.
const MAX_TOOL: usize = 128;
const MAX_SIGNATURE: usize = 700;
const MAX_AGENT: usize = 128;
const MAX_RULE: usize = 256;
/// How many affected entities a message lists, and how long each may be.
const MAX_TARGETS: usize = 30;
const MAX_TARGET: usize = 100;
const MAX_ARGS: usize = 2000;
const MAX_REASON: usize = 300;

/// Escapes text for Telegram's HTML parse mode (`<`, `>`, `&` and `"`).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

/// `text` cut to at most `max` characters (at a character boundary), with a note of how
/// much was left out.
pub fn truncate(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    let note = format!("… ({} more characters)", total - max);
    let keep = max.saturating_sub(note.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&note);
    out
}

/// A UTC time as `2026-11-21 17:03:12 UTC`.
pub fn format_time(at: Timestamp) -> String {
    let t = at.utc_seconds();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Text an agent chose, as the message shows it: hidden characters escaped, cut to `max`
/// characters, HTML-escaped.
fn shown(text: &str, max: usize) -> String {
    escape_html(&truncate(&visible::escape(text), max))
}

/// The body shared by the approval message and its edits: what is asked, by whom (with a
/// warning first when any of it contains hidden characters).
fn request_body(request: &ApprovalRequest) -> String {
    let args =
        serde_json::to_string_pretty(&request.args).unwrap_or_else(|_| request.args.to_string());
    let hidden = visible::request_has_hidden(request, &args);
    let mut body = String::new();
    if hidden {
        body.push_str(&format!("⚠️ <b>{}</b>\n\n", escape_html(visible::WARNING)));
    }
    body.push_str(&format!(
        "<b>Tool:</b> <code>{}</code>\n<b>Signature:</b> <code>{}</code>\n<b>Agent:</b> <code>{}</code> (request <code>{}</code>)\n",
        shown(&request.tool, MAX_TOOL),
        shown(&request.signature, MAX_SIGNATURE),
        shown(&request.key.agent_id, MAX_AGENT),
        shown(&request.key.request_id, MAX_AGENT),
    ));
    if !request.targets.is_empty() {
        let mut affects = request
            .targets
            .iter()
            .take(MAX_TARGETS)
            .map(|t| format!("<code>{}</code>", shown(t, MAX_TARGET)))
            .collect::<Vec<_>>()
            .join(", ");
        if request.targets.len() > MAX_TARGETS {
            affects.push_str(&format!(
                " and {} more (see the web page)",
                request.targets.len() - MAX_TARGETS
            ));
        }
        body.push_str(&format!("<b>Affects:</b> {affects}\n"));
    }
    if let Some(rule) = &request.rule {
        body.push_str(&format!(
            "<b>Rule:</b> <code>{}</code>\n",
            shown(rule, MAX_RULE)
        ));
    }
    if !matches!(&request.args, Value::Null)
        && !matches!(&request.args, Value::Object(map) if map.is_empty())
    {
        body.push_str(&format!(
            "<b>Arguments:</b>\n<pre><code class=\"language-json\">{}</code></pre>\n",
            escape_html(&truncate(&visible::escape_block(&args), MAX_ARGS))
        ));
    }
    body
}

/// The approval message for a new pending request (HTML parse mode).
pub fn approval_text(request: &ApprovalRequest) -> String {
    format!(
        "🔐 <b>Approval needed</b>\n\n{}<b>Expires:</b> {}",
        request_body(request),
        format_time(request.expires_at)
    )
}

/// The approval message while the gateway is stopped: the request stays pending and its
/// buttons work again once the gateway is back.
pub fn paused_text(request: &ApprovalRequest, at: Timestamp) -> String {
    format!(
        "{}\n\n⏸ <i>The gateway stopped at {}. This request is still pending; the buttons work again when the gateway is back.</i>",
        approval_text(request),
        format_time(at)
    )
}

/// The final text of the message once the request is over: what happened, by whom, when.
pub fn resolved_text(request: &ApprovalRequest, resolution: &Resolution) -> String {
    let (title, line) = match resolution {
        Resolution::Approved { by, at } => (
            "✅ <b>Approved</b>",
            format!(
                "Approved by <b>{}</b> at {}.",
                escape_html(&truncate(by, MAX_AGENT)),
                format_time(*at)
            ),
        ),
        Resolution::Denied { by, at, reason } => (
            "❌ <b>Denied</b>",
            format!(
                "Denied by <b>{}</b> at {}.{}",
                escape_html(&truncate(by, MAX_AGENT)),
                format_time(*at),
                reason
                    .as_deref()
                    .map(|r| format!(" Reason: <i>{}</i>", escape_html(&truncate(r, MAX_REASON))))
                    .unwrap_or_default()
            ),
        ),
        Resolution::Expired { at } => (
            "⌛ <b>Expired</b>",
            format!(
                "Nobody decided in time; it expired at {}.",
                format_time(*at)
            ),
        ),
        Resolution::Cancelled { reason, at } => (
            "🚫 <b>Cancelled</b>",
            format!(
                "Cancelled at {}: {}.",
                format_time(*at),
                escape_html(&truncate(reason, MAX_REASON))
            ),
        ),
    };
    format!("{title}\n\n{}{line}", request_body(request))
}

/// The Allow / Deny keyboard of a pending request, then a row of "allow for" buttons, one
/// per grant duration, then a row of "deny, because" buttons, one per preset reason (at most
/// [`MAX_DENY_REASONS`] of each).
pub fn keyboard(key: &RequestKey, grants: &[Duration], reasons: &[String]) -> InlineKeyboardMarkup {
    let button = |label: String, data: String| InlineKeyboardButton {
        text: label,
        url: None,
        login_url: None,
        callback_data: Some(data),
        web_app: None,
        switch_inline_query: None,
        switch_inline_query_current_chat: None,
        switch_inline_query_chosen_chat: None,
        copy_text: None,
        callback_game: None,
        pay: None,
    };
    let mut rows = vec![vec![
        button(ALLOW_LABEL.to_owned(), callback_data(Verdict::Allow, key)),
        button(DENY_LABEL.to_owned(), callback_data(Verdict::Deny, key)),
    ]];
    let grant_buttons: Vec<InlineKeyboardButton> = grants
        .iter()
        .take(MAX_DENY_REASONS)
        .enumerate()
        .map(|(i, duration)| {
            button(
                format!("✅ {}", crate::approvals::grant_label(*duration)),
                coded(&format!("g{i}"), key),
            )
        })
        .collect();
    let mut grant_buttons = grant_buttons;
    grant_buttons.push(button(ALWAYS_LABEL.to_owned(), coded("w", key)));
    rows.push(grant_buttons);
    let presets: Vec<InlineKeyboardButton> = reasons
        .iter()
        .take(MAX_DENY_REASONS)
        .enumerate()
        .map(|(i, reason)| button(format!("❌ {reason}"), reason_callback_data(i as u8, key)))
        .collect();
    if !presets.is_empty() {
        rows.push(presets);
    }
    InlineKeyboardMarkup {
        inline_keyboard: rows,
    }
}

/// What a button says: the verdict and which request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonData {
    /// Allow or deny.
    pub verdict: Verdict,
    /// For a "deny, because" button: which preset reason (its index in the configured list).
    pub reason: Option<u8>,
    /// For an "allow for" button: which grant duration (its index in the configured list).
    pub grant: Option<u8>,
    /// The "always allow" button.
    pub always: bool,
    /// Which request.
    pub target: ButtonTarget,
}

/// How a button names its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonTarget {
    /// The agent id and request id themselves (when they fit in 64 bytes).
    Key(RequestKey),
    /// A digest of them (long agent or request ids), matched against the pending requests.
    Digest(String),
}

fn verdict_code(verdict: Verdict) -> char {
    match verdict {
        Verdict::Allow => 'a',
        Verdict::Deny => 'd',
    }
}

/// The digest a [`ButtonTarget::Digest`] carries for `key`: 128 bits of SHA-256 over the
/// agent id and request id, in hex.
pub fn key_digest(key: &RequestKey) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.agent_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(key.request_id.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// The callback data of a button: `a|<agent>|<request id>` (or `d|...`) when it fits in 64
/// bytes, else `a#<digest>`. Nothing but the verdict and the request's identity: no state,
/// so a button works for as long as its request is pending, restarts included.
pub fn callback_data(verdict: Verdict, key: &RequestKey) -> String {
    coded(&verdict_code(verdict).to_string(), key)
}

/// The callback data of a "deny, because" button: `r<index>|<agent>|<request id>` (or
/// `r<index>#<digest>`).
pub fn reason_callback_data(index: u8, key: &RequestKey) -> String {
    coded(&format!("r{}", index.min(9)), key)
}

fn coded(code: &str, key: &RequestKey) -> String {
    let plain = format!("{code}|{}|{}", key.agent_id, key.request_id);
    if plain.len() <= MAX_CALLBACK_DATA {
        plain
    } else {
        format!("{code}#{}", key_digest(key))
    }
}

/// Reads callback data written by [`callback_data`]; `None` for anything else.
pub fn parse_callback_data(data: &str) -> Option<ButtonData> {
    let mut chars = data.chars();
    let (verdict, reason, grant, always) = match chars.next()? {
        'a' => (Verdict::Allow, None, None, false),
        'd' => (Verdict::Deny, None, None, false),
        'w' => (Verdict::Allow, None, None, true),
        'r' => {
            let index = chars.next()?.to_digit(10)?;
            (Verdict::Deny, Some(index as u8), None, false)
        }
        'g' => {
            let index = chars.next()?.to_digit(10)?;
            (Verdict::Allow, None, Some(index as u8), false)
        }
        _ => return None,
    };
    let rest = chars.as_str();
    let target = if let Some(key) = rest.strip_prefix('|') {
        // The request id never contains `|`; the agent id might.
        let (agent, request) = key.rsplit_once('|')?;
        if agent.is_empty() || request.is_empty() {
            return None;
        }
        ButtonTarget::Key(RequestKey::new(agent, request))
    } else if let Some(digest) = rest.strip_prefix('#') {
        if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        ButtonTarget::Digest(digest.to_owned())
    } else {
        return None;
    };
    Some(ButtonData {
        verdict,
        reason,
        grant,
        always,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(args: Value) -> ApprovalRequest {
        ApprovalRequest {
            key: RequestKey::new("pi-agent", "req-1"),
            tool: "ha_call_service".into(),
            args,
            signature: "ha_call_service(light.turn_on, light.bedroom)".into(),
            targets: vec!["light.bedroom".into()],
            rule: Some("ask: ha_call_service(light.*)".into()),
            created_at: Timestamp::from_millis(1_795_000_000_000),
            expires_at: Timestamp::from_millis(1_795_000_900_000),
            approver_refs: None,
        }
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(
            format_time(Timestamp::from_millis(0)),
            "1970-01-01 00:00:00 UTC"
        );
        assert_eq!(
            format_time(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            format_time(Timestamp::from_millis(1_795_000_900_999)),
            "2026-11-18 11:21:40 UTC"
        );
        assert_eq!(
            format_time(Timestamp::from_millis(-1)),
            "1969-12-31 23:59:59 UTC"
        );
    }

    #[test]
    fn html_escaping_covers_markup_characters() {
        assert_eq!(
            escape_html(r#"<b>"x" & y</b>"#),
            "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;"
        );
    }

    #[test]
    fn truncation_counts_characters_and_says_how_much_is_missing() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, 40);
        assert_eq!(cut.chars().count(), 40);
        assert_eq!(cut, format!("{}… (60 more characters)", "é".repeat(18)));
    }

    #[test]
    fn approval_text_escapes_every_field_and_parses_as_telegram_html() {
        let mut req = request(json!({"entity_id": "light.bedroom", "x": "<script>&</script>"}));
        req.key = RequestKey::new("a<b>&c", "r-1");
        let text = approval_text(&req);
        let plain = agent_gate_sim::telegram::parse_html(&text).unwrap();
        assert!(plain.contains("\"x\": \"<script>&</script>\""), "{plain}");
        assert!(plain.contains("Agent: a<b>&c (request r-1)"), "{plain}");
        assert!(
            plain.contains("Expires: 2026-11-18 11:21:40 UTC"),
            "{plain}"
        );
    }

    #[test]
    fn huge_arguments_keep_the_message_under_telegrams_limit() {
        let mut req = request(json!({"template": "&<>".repeat(10_000)}));
        req.signature = "s".repeat(10_000);
        huge_fits(&req);
        // Hidden characters: the warning and the longer escapes still fit.
        req.args = json!({"template": "\u{202e}".repeat(10_000)});
        req.signature = "\u{200b}".repeat(10_000);
        huge_fits(&req);
    }

    fn huge_fits(req: &ApprovalRequest) {
        let mut req = req.clone();
        req.tool = "t".repeat(5_000);
        req.key = RequestKey::new("a".repeat(5_000), "r".repeat(64));
        req.rule = Some("&".repeat(5_000));
        for text in [
            approval_text(&req),
            resolved_text(
                &req,
                &Resolution::Cancelled {
                    reason: "<".repeat(5000),
                    at: Timestamp::from_millis(0),
                },
            ),
            paused_text(&req, Timestamp::from_millis(0)),
        ] {
            let plain = agent_gate_sim::telegram::parse_html(&text).unwrap();
            assert!(plain.chars().count() <= 4096, "{}", plain.chars().count());
            assert!(plain.contains("more characters"));
        }
    }

    #[test]
    fn callback_data_round_trips_and_fits_64_bytes() {
        let key = RequestKey::new("default", "abc_DEF-123");
        for verdict in [Verdict::Allow, Verdict::Deny] {
            let data = callback_data(verdict, &key);
            assert!(data.len() <= MAX_CALLBACK_DATA);
            assert_eq!(
                parse_callback_data(&data),
                Some(ButtonData {
                    verdict,
                    reason: None,
                    grant: None,
                    always: false,
                    target: ButtonTarget::Key(key.clone())
                })
            );
        }
        let pipes = RequestKey::new("team|pi", "r1");
        assert_eq!(
            parse_callback_data(&callback_data(Verdict::Deny, &pipes))
                .unwrap()
                .target,
            ButtonTarget::Key(pipes)
        );
        let long = RequestKey::new("a-very-long-agent-identifier", "r".repeat(64));
        let data = callback_data(Verdict::Allow, &long);
        assert!(data.len() <= MAX_CALLBACK_DATA, "{data}");
        assert_eq!(
            parse_callback_data(&data),
            Some(ButtonData {
                verdict: Verdict::Allow,
                reason: None,
                grant: None,
                always: false,
                target: ButtonTarget::Digest(key_digest(&long))
            })
        );
    }

    #[test]
    fn foreign_callback_data_is_refused() {
        for data in [
            "", "x|a|b", "a", "a|", "a|agent", "a||r", "a#zz", "a#0123", "allow",
        ] {
            assert_eq!(parse_callback_data(data), None, "{data}");
        }
    }

    #[test]
    fn keyboard_has_allow_then_deny_then_the_preset_reasons() {
        let key = RequestKey::new("default", "r1");
        let reasons = vec!["Not now".to_owned(), "Not safe".to_owned()];
        let markup = keyboard(&key, &[], &reasons);
        let row = &markup.inline_keyboard[0];
        assert_eq!(row[0].text, ALLOW_LABEL);
        assert_eq!(row[0].callback_data.as_deref(), Some("a|default|r1"));
        assert_eq!(row[1].text, DENY_LABEL);
        assert_eq!(row[1].callback_data.as_deref(), Some("d|default|r1"));
        // No grant durations: the grant row is "always" alone.
        assert_eq!(markup.inline_keyboard[1][0].text, ALWAYS_LABEL);
        assert_eq!(
            markup.inline_keyboard[1][0].callback_data.as_deref(),
            Some("w|default|r1")
        );
        let presets = &markup.inline_keyboard[2];
        assert_eq!(presets[0].text, "❌ Not now");
        assert_eq!(presets[1].callback_data.as_deref(), Some("r1|default|r1"));
        assert_eq!(
            parse_callback_data("r1|default|r1"),
            Some(ButtonData {
                verdict: Verdict::Deny,
                reason: Some(1),
                grant: None,
                always: false,
                target: ButtonTarget::Key(key.clone()),
            })
        );
        assert_eq!(parse_callback_data("rx|default|r1"), None);
        assert_eq!(keyboard(&key, &[], &[]).inline_keyboard.len(), 2);
    }
}
