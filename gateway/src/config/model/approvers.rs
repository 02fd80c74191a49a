//! `approvers:` (or the upstream `messenger:`): who is asked when a policy says `ask`, the
//! Telegram bots, the web approval page and the Home Assistant companion app on phones.

use indexmap::IndexMap;

use super::services::{ServiceAuth, ServiceConfig, url};
use crate::config::secret::Secret;
use crate::config::walk::{Ctx, Obj, suggest};

/// Default Telegram Bot API base URL.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";
/// Default name of the web approver (decisions are attributed `web:web`).
pub const DEFAULT_WEB_APPROVER_NAME: &str = "web";
/// Default name of the Home Assistant phone app approver.
pub const DEFAULT_HOME_ASSISTANT_APPROVER_NAME: &str = "home_assistant";
/// The service whose `url` and `token` a `type: home_assistant` approver uses by default.
pub const HOME_ASSISTANT_SERVICE: &str = "homeassistant";
/// Default "allow for" action of the phone notification: one hour.
pub const DEFAULT_PHONE_GRANT: std::time::Duration = std::time::Duration::from_secs(3600);

/// One approver (who is asked when a policy says `ask`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverConfig {
    /// A Telegram bot.
    Telegram(TelegramConfig),
    /// The web approval page on the HTTP side.
    Web(WebApproverConfig),
    /// Actionable notifications of the Home Assistant companion app.
    HomeAssistant(HomeAssistantApproverConfig),
}

impl ApproverConfig {
    /// `telegram`, `web` or `home_assistant`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApproverConfig::Telegram(_) => "telegram",
            ApproverConfig::Web(_) => "web",
            ApproverConfig::HomeAssistant(_) => "home_assistant",
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

/// The Home Assistant phone app approver: notifications through `notify.mobile_app_<device>`,
/// decisions from `mobile_app_notification_action` events over the WebSocket API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeAssistantApproverConfig {
    /// The approver's name (default `home_assistant`): the key of its notification references
    /// and its health entry.
    pub name: String,
    /// Home Assistant's base URL (default: `services.homeassistant.url`).
    pub url: String,
    /// A long-lived access token (default: `services.homeassistant.token`).
    pub token: Secret,
    /// The phones notified: the `<device>` of `notify.mobile_app_<device>` (at least one).
    pub devices: Vec<String>,
    /// Home Assistant user ids whose presses count (the event's `context.user_id`; at least
    /// one).
    pub users: Vec<String>,
    /// The duration of the "allow for" action (`grant_minutes`, default 60; `[]` for none).
    pub grant: Option<std::time::Duration>,
}

const APPROVER_TYPES: &[&str] = &["telegram", "web", "home_assistant"];

/// Reads `approvers:`, or the upstream single `messenger:`.
pub(super) fn load(
    ctx: &mut Ctx,
    root: &Obj<'_>,
    services: &IndexMap<String, ServiceConfig>,
) -> Vec<ApproverConfig> {
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
            // The upstream single-messenger form knows Telegram and the web page.
            other => unknown_approver(ctx, &m.field("type").path, other, &APPROVER_TYPES[..2]),
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
            "home_assistant" => {
                obj.check_keys(
                    ctx,
                    &[
                        "type",
                        "name",
                        "url",
                        "token",
                        "devices",
                        "users",
                        "grant_minutes",
                    ],
                );
                if let Some(ha) = home_assistant(ctx, &obj, services) {
                    out.push(ApproverConfig::HomeAssistant(ha));
                }
            }
            other => unknown_approver(ctx, &obj.field("type").path, other, APPROVER_TYPES),
        }
    }
    let mut names = std::collections::HashSet::new();
    for approver in &out {
        if let ApproverConfig::HomeAssistant(ha) = approver
            && !names.insert(ha.name.clone())
        {
            ctx.error(
                "approvers",
                format!(
                    "two `type: home_assistant` approvers are called {:?}; give each its own `name:`",
                    ha.name
                ),
            );
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

fn unknown_approver(ctx: &mut Ctx, path: &str, ty: &str, types: &[&str]) {
    let hint = suggest(ty, types.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    ctx.error(
        path,
        format!(
            "unsupported approver type {ty:?}{hint}; expected one of: {}",
            types.join(", ")
        ),
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

/// A `type: home_assistant` approver; `url` and `token` default to those of
/// `services.homeassistant`.
fn home_assistant(
    ctx: &mut Ctx,
    obj: &Obj<'_>,
    services: &IndexMap<String, ServiceConfig>,
) -> Option<HomeAssistantApproverConfig> {
    let service = services.get(HOME_ASSISTANT_SERVICE);
    let name = {
        let f = obj.field("name");
        if f.value.is_none() {
            Some(DEFAULT_HOME_ASSISTANT_APPROVER_NAME.to_owned())
        } else {
            ctx.req_nonempty(&f).and_then(|name| {
                let valid = name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
                if valid {
                    Some(name)
                } else {
                    ctx.error(
                        &f.path,
                        format!("invalid approver name {name:?}: use at most 64 letters, digits, `_` or `-`"),
                    );
                    None
                }
            })
        }
    };
    let url_field = obj.field("url");
    let url = if url_field.value.is_some() {
        url(ctx, &url_field)
    } else if let Some(service) = service {
        Some(service.url.clone())
    } else {
        ctx.error(
            &url_field.path,
            format!(
                "missing: give Home Assistant's URL (e.g. http://homeassistant.local:8123), or configure services.{HOME_ASSISTANT_SERVICE} whose url is used by default"
            ),
        );
        None
    };
    let token_field = obj.field("token");
    let token = if token_field.value.is_some() {
        ctx.secret(&token_field)
    } else {
        match service.and_then(|s| s.auth.as_ref()) {
            Some(ServiceAuth::Bearer { token }) => Some(token.clone()),
            _ => {
                ctx.error(
                    &token_field.path,
                    format!(
                        "missing: give a Home Assistant long-lived access token (e.g. \"${{HA_TOKEN}}\"), or a bearer `token` in services.{HOME_ASSISTANT_SERVICE}, which is used by default"
                    ),
                );
                None
            }
        }
    };
    let devices_field = obj.field("devices");
    let mut devices = Vec::new();
    if devices_field.value.is_none() {
        ctx.error(
            &devices_field.path,
            "missing: list the phones to notify, the <device> of their notify.mobile_app_<device> service (Developer tools → Actions in Home Assistant), e.g. [pixel_7]",
        );
    } else if let Some(items) = ctx.list(&devices_field) {
        if items.is_empty() {
            ctx.error(
                &devices_field.path,
                "must list at least one phone (the <device> of notify.mobile_app_<device>): nobody would be notified",
            );
        }
        for item in items {
            let Some(device) = ctx.req_nonempty(&item) else {
                continue;
            };
            // `notify.mobile_app_pixel_7` and `mobile_app_pixel_7` name the same phone.
            let short = device.strip_prefix("notify.").unwrap_or(&device);
            let device = short
                .strip_prefix("mobile_app_")
                .unwrap_or(short)
                .to_owned();
            let valid = !device.is_empty()
                && device
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if valid {
                devices.push(device);
            } else {
                ctx.error(
                    &item.path,
                    format!(
                        "invalid device {device:?}: give the <device> of notify.mobile_app_<device> (lowercase letters, digits and `_`, e.g. pixel_7)"
                    ),
                );
            }
        }
    }
    let users_field = obj.field("users");
    let mut users = Vec::new();
    use crate::messengers::home_assistant::USERS_HELP;
    if users_field.value.is_none() {
        ctx.error(&users_field.path, format!("missing: {USERS_HELP}"));
    } else if let Some(items) = ctx.list(&users_field) {
        if items.is_empty() {
            ctx.error(
                &users_field.path,
                format!("must not be empty: {USERS_HELP}"),
            );
        }
        for item in items {
            if let Some(user) = ctx.req_nonempty(&item) {
                users.push(user.trim().to_owned());
            }
        }
    }
    let grant = {
        let f = obj.field("grant_minutes");
        match f.value {
            None => Some(Some(DEFAULT_PHONE_GRANT)),
            Some(serde_yaml_ng::Value::Sequence(_)) => ctx.list(&f).and_then(|items| {
                if items.len() > 1 {
                    ctx.error(
                        &f.path,
                        format!(
                            "a phone notification has room for one \"allow for\" action (Android shows three actions: Allow, Allow for ..., Deny), got {}; give one duration in minutes, or [] for none",
                            items.len()
                        ),
                    );
                    return None;
                }
                match items.first() {
                    None => Some(None),
                    Some(item) => ctx
                        .int(item, 1, 7 * 24 * 60)
                        .map(|m| Some(std::time::Duration::from_secs(m as u64 * 60))),
                }
            }),
            Some(_) => ctx
                .int(&f, 1, 7 * 24 * 60)
                .map(|m| Some(std::time::Duration::from_secs(m as u64 * 60))),
        }
    };
    let (name, url, token, grant) = (name?, url?, token?, grant?);
    if devices.is_empty() || users.is_empty() {
        return None;
    }
    Some(HomeAssistantApproverConfig {
        name,
        url,
        token,
        devices,
        users,
        grant,
    })
}
