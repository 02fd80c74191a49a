//! `approvers:` (or the upstream `messenger:`): who is asked when a policy says `ask`, the
//! Telegram bots and the web approval page.

use super::services::url;
use crate::config::secret::Secret;
use crate::config::walk::{Ctx, Obj, suggest};

/// Default Telegram Bot API base URL.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";
/// Default name of the web approver (decisions are attributed `web:web`).
pub const DEFAULT_WEB_APPROVER_NAME: &str = "web";

/// One approver (who is asked when a policy says `ask`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverConfig {
    /// A Telegram bot.
    Telegram(TelegramConfig),
    /// The web approval page on the HTTP side.
    Web(WebApproverConfig),
}

impl ApproverConfig {
    /// `telegram` or `web`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApproverConfig::Telegram(_) => "telegram",
            ApproverConfig::Web(_) => "web",
        }
    }
}

/// A Telegram approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    /// Bot token.
    pub token: Secret,
    /// Chat the approval messages go to (negative for groups).
    pub chat_id: i64,
    /// Telegram user ids whose button presses count (at least one).
    pub allowed_users: Vec<i64>,
    /// Bot API base URL (default `https://api.telegram.org`; tests point it elsewhere).
    pub api_url: String,
    /// Preset reasons of the "deny, because" buttons (default `Not now`, `Not safe`; at most 4,
    /// each 1–40 characters).
    pub deny_reasons: Vec<String>,
    /// Durations of the "allow for" buttons (`grant_minutes`, default 15, 60, 480; at most 4,
    /// each 1 minute to 7 days).
    pub grant_durations: Vec<std::time::Duration>,
}

/// The web approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebApproverConfig {
    /// Token required to use the approval page; without one the page relies on the HTTP side
    /// listening on a private address only.
    pub token: Option<Secret>,
    /// Who decides through the page: decisions are attributed `web:<name>` (default `web`).
    pub name: String,
    /// Durations of the page's "allow for" buttons (`grant_minutes`, as Telegram's: default
    /// 15, 60, 480; at most 4, each 1 minute to 7 days).
    pub grant_durations: Vec<std::time::Duration>,
}

const APPROVER_TYPES: &[&str] = &["telegram", "web"];

/// Reads `approvers:`, or the upstream single `messenger:`.
pub(super) fn load(ctx: &mut Ctx, root: &Obj<'_>) -> Vec<ApproverConfig> {
    let mut out = Vec::new();
    if root.has("messenger") && root.has("approvers") {
        ctx.error(
            "messenger",
            "both `messenger:` and `approvers:` are given; keep one (`approvers:` is the list form)",
        );
        return out;
    }
    if let Some(m) = ctx.obj(&root.field("messenger")) {
        // Upstream: `messenger: {type: telegram, telegram: {token, chat_id, allowed_users}}`.
        m.check_keys(ctx, &["type", "telegram", "web"]);
        let Some(ty) = ctx.req_string(&m.field("type")) else {
            return out;
        };
        match ty.as_str() {
            "telegram" => {
                if let Some(tg) = ctx.req_obj(&m.field("telegram")) {
                    tg.check_keys(
                        ctx,
                        &[
                            "token",
                            "chat_id",
                            "allowed_users",
                            "api_url",
                            "deny_reasons",
                        ],
                    );
                    if let Some(t) = telegram(ctx, &tg) {
                        out.push(ApproverConfig::Telegram(t));
                    }
                }
            }
            "web" => {
                let web = ctx.obj(&m.field("web"));
                if let Some(w) = &web {
                    w.check_keys(ctx, &["token", "name", "grant_minutes"]);
                }
                let token = web.as_ref().and_then(|w| {
                    let f = w.field("token");
                    if f.value.is_some() {
                        ctx.secret(&f)
                    } else {
                        None
                    }
                });
                let name = web_name(ctx, web.as_ref());
                let grant_durations = match &web {
                    Some(w) => grant_minutes(ctx, w),
                    None => crate::approvals::DEFAULT_GRANT_DURATIONS.to_vec(),
                };
                out.push(ApproverConfig::Web(WebApproverConfig {
                    token,
                    name,
                    grant_durations,
                }));
            }
            other => unknown_approver(ctx, &m.field("type").path, other),
        }
        return out;
    }
    let Some(items) = ctx.list(&root.field("approvers")) else {
        return out;
    };
    for item in items {
        let Some(obj) = ctx.req_obj(&item) else {
            continue;
        };
        let Some(ty) = ctx.req_string(&obj.field("type")) else {
            continue;
        };
        match ty.as_str() {
            "telegram" => {
                obj.check_keys(
                    ctx,
                    &[
                        "type",
                        "token",
                        "chat_id",
                        "allowed_users",
                        "api_url",
                        "deny_reasons",
                        "grant_minutes",
                    ],
                );
                if let Some(t) = telegram(ctx, &obj) {
                    out.push(ApproverConfig::Telegram(t));
                }
            }
            "web" => {
                obj.check_keys(ctx, &["type", "token", "name", "grant_minutes"]);
                let f = obj.field("token");
                let token = if f.value.is_some() {
                    ctx.secret(&f)
                } else {
                    None
                };
                let name = web_name(ctx, Some(&obj));
                let grant_durations = grant_minutes(ctx, &obj);
                out.push(ApproverConfig::Web(WebApproverConfig {
                    token,
                    name,
                    grant_durations,
                }));
            }
            other => unknown_approver(ctx, &obj.field("type").path, other),
        }
    }
    if out
        .iter()
        .filter(|a| matches!(a, ApproverConfig::Web(_)))
        .count()
        > 1
    {
        ctx.error(
            "approvers",
            "more than one `type: web` approver; there is one web approval page",
        );
    }
    out
}

/// The optional `name:` of a web approver (default `web`): letters, digits, `_`, `-`, `.`
/// and `@` only, as it becomes part of the `web:<name>` actor in the audit log.
fn web_name(ctx: &mut Ctx, obj: Option<&Obj<'_>>) -> String {
    let Some(obj) = obj else {
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    };
    let f = obj.field("name");
    if f.value.is_none() {
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    }
    let Some(name) = ctx.req_nonempty(&f) else {
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    };
    let valid = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if !valid {
        ctx.error(
            &f.path,
            format!(
                "invalid web approver name {name:?}: use at most 64 letters, digits, `_`, `-`, `.` or `@` (it is recorded as `web:<name>`)"
            ),
        );
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    }
    name
}

fn unknown_approver(ctx: &mut Ctx, path: &str, ty: &str) {
    let hint = suggest(ty, APPROVER_TYPES.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    ctx.error(
        path,
        format!("unsupported approver type {ty:?}{hint}; expected one of: telegram, web"),
    );
}

/// `grant_minutes`: at most four durations in minutes (the default when absent).
fn grant_minutes(ctx: &mut Ctx, obj: &Obj<'_>) -> Vec<std::time::Duration> {
    use crate::approvals::DEFAULT_GRANT_DURATIONS;
    use crate::messengers::telegram::format::MAX_DENY_REASONS;
    let field = obj.field("grant_minutes");
    if field.value.is_none() {
        return DEFAULT_GRANT_DURATIONS.to_vec();
    }
    let Some(items) = ctx.list(&field) else {
        return Vec::new();
    };
    if items.len() > MAX_DENY_REASONS {
        ctx.error(
            &field.path,
            format!(
                "at most {MAX_DENY_REASONS} grant durations fit under a message, got {}",
                items.len()
            ),
        );
    }
    items
        .iter()
        .filter_map(|item| ctx.int(item, 1, 7 * 24 * 60))
        .map(|minutes| std::time::Duration::from_secs(minutes as u64 * 60))
        .collect()
}

/// `deny_reasons`: at most four short texts (the default when absent).
fn deny_reasons(ctx: &mut Ctx, obj: &Obj<'_>) -> Vec<String> {
    use crate::messengers::telegram::format::{DEFAULT_DENY_REASONS, MAX_DENY_REASONS};
    let field = obj.field("deny_reasons");
    if field.value.is_none() {
        return DEFAULT_DENY_REASONS
            .iter()
            .map(|r| (*r).to_owned())
            .collect();
    }
    let Some(items) = ctx.list(&field) else {
        return Vec::new();
    };
    if items.len() > MAX_DENY_REASONS {
        ctx.error(
            &field.path,
            format!(
                "at most {MAX_DENY_REASONS} preset reasons fit under a message, got {}; keep the most useful ones",
                items.len()
            ),
        );
    }
    let mut reasons = Vec::new();
    for item in items {
        let Some(text) = ctx.string(&item) else {
            continue;
        };
        let length = text.trim().chars().count();
        if length == 0 || length > 40 {
            ctx.error(
                &item.path,
                format!("a preset reason is 1–40 characters (a button label), got {length}"),
            );
        } else {
            reasons.push(text.trim().to_owned());
        }
    }
    reasons
}

fn telegram(ctx: &mut Ctx, obj: &Obj<'_>) -> Option<TelegramConfig> {
    let token = ctx.secret(&obj.field("token"));
    let chat_id = ctx.req_int(&obj.field("chat_id"), i64::MIN, i64::MAX);
    let users_field = obj.field("allowed_users");
    let mut allowed_users = Vec::new();
    if users_field.value.is_none() {
        ctx.error(
            &users_field.path,
            "missing: expected a non-empty list of Telegram user ids who may approve",
        );
    } else if let Some(items) = ctx.list(&users_field) {
        if items.is_empty() {
            ctx.error(
                &users_field.path,
                "must be a non-empty list of Telegram user ids (nobody could approve)",
            );
        }
        for item in items {
            if item.value.is_none() {
                ctx.error(&item.path, "expected a Telegram user id, got nothing");
            } else if let Some(id) = ctx.int(&item, 1, i64::MAX) {
                allowed_users.push(id);
            }
        }
    }
    let api_url = match obj.field("api_url") {
        f if f.value.is_some() => url(ctx, &f)?,
        _ => DEFAULT_TELEGRAM_API_URL.to_string(),
    };
    let deny_reasons = deny_reasons(ctx, obj);
    let grant_durations = grant_minutes(ctx, obj);
    let (token, chat_id) = (token?, chat_id?);
    if allowed_users.is_empty() {
        return None;
    }
    Some(TelegramConfig {
        token,
        chat_id,
        allowed_users,
        api_url,
        deny_reasons,
        grant_durations,
    })
}
