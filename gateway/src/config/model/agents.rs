//! `agents:` (or the upstream `agent:`): who may connect, and with which tokens.
//!
//! An agent gives exactly one of:
//!
//! - `token: <the token>` (often `"${AGENT_TOKEN}"`), as upstream;
//! - `token_sha256: <64 hex digits>`, the SHA-256 of the token, so `config.yaml` holds no
//!   usable secret (`agent-gate token new --agent ID` prints a token and this line);
//! - `tokens: [{token: ...}, {sha256: ...}, ...]`, several tokens at once, for rotation: add
//!   the new one, move the agent over, remove the old one.
//!
//! Only the digests are kept ([`TokenDigest`]); tokens are compared by digest, in constant time.

use subtle::Choice;

use crate::config::token::{NEW_TOKEN_PREFIX, TokenDigest};
use crate::config::walk::{Ctx, Field, Obj, kind};

/// Tokens shorter than this draw a warning.
const MIN_TOKEN_LEN: usize = 16;

/// The keys of one agent.
const AGENT_KEYS: &[&str] = &["id", "token", "token_sha256", "tokens"];
/// The keys that give an agent's tokens (exactly one of them).
const TOKEN_KEYS: &[&str] = &["token", "token_sha256", "tokens"];
/// The keys of one entry of `tokens:` (exactly one of them).
const ENTRY_KEYS: &[&str] = &["token", "sha256"];

/// One agent allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's id (`[A-Za-z0-9_.-]`, 1-64 characters), used in audit records and rule scoping.
    pub id: String,
    /// The digests of the tokens the agent may authenticate with: one, or several while a token
    /// is being rotated. Never empty in a loaded config.
    pub tokens: Vec<TokenDigest>,
}

impl AgentConfig {
    /// An agent with one token (given in the clear; only its digest is kept).
    pub fn with_token(id: impl Into<String>, token: &str) -> Self {
        AgentConfig {
            id: id.into(),
            tokens: vec![TokenDigest::of(token)],
        }
    }

    /// Whether `presented` is one of the agent's tokens: every stored digest is compared, in
    /// constant time, without stopping at a match.
    pub fn accepts(&self, presented: &TokenDigest) -> Choice {
        self.tokens
            .iter()
            .fold(Choice::from(0), |hit, token| hit | token.ct_eq(presented))
    }
}

/// Whether `id` is a valid agent id (`[A-Za-z0-9_.-]`, 1-64 characters).
pub(crate) fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// An agent read from the file, with where each part was.
struct Loaded {
    /// The agent entry's key path (`agents[2]`, `agent`).
    path: String,
    agent: AgentConfig,
    /// The key path of each token, in the order of `agent.tokens`.
    token_paths: Vec<String>,
}

/// Reads `agents:`, or the upstream single `agent:`; checks that ids and tokens are unique.
pub(super) fn load(ctx: &mut Ctx, root: &Obj<'_>) -> Vec<AgentConfig> {
    let mut agents: Vec<Loaded> = Vec::new();
    let single = root.has("agent");
    let list = root.has("agents");
    if single && list {
        ctx.error(
            "agent",
            "both `agent:` and `agents:` are given; use `agents:` (a list of {id, token}) and move this token into it with id `default`",
        );
        return Vec::new();
    }
    if single {
        if let Some(obj) = ctx.obj(&root.field("agent")) {
            obj.check_keys(ctx, AGENT_KEYS);
            let id = ctx
                .string(&obj.field("id"))
                .unwrap_or_else(|| "default".to_string());
            if let Some(loaded) = agent_tokens(ctx, &obj, id) {
                agents.push(loaded);
            }
        }
    } else if list {
        if let Some(items) = ctx.list(&root.field("agents")) {
            for item in items {
                if item.value.is_none() {
                    ctx.error(&item.path, "expected a mapping {id, token}, got nothing");
                    continue;
                }
                let Some(obj) = ctx.obj(&item) else { continue };
                obj.check_keys(ctx, AGENT_KEYS);
                let id_field = obj.field("id");
                let id = ctx.req_string(&id_field);
                if let Some(id) = &id
                    && !valid_agent_id(id)
                {
                    ctx.error(
                        &id_field.path,
                        format!("expected an agent id of 1-64 letters, digits, `_`, `-` or `.`, got {id:?}"),
                    );
                }
                let tokens = agent_tokens(ctx, &obj, id.clone().unwrap_or_default());
                if let (Some(_), Some(loaded)) = (id, tokens) {
                    agents.push(loaded);
                }
            }
        }
    } else {
        ctx.error(
            "agents",
            "missing: expected a list of agents, e.g. `agents: [{id: default, token: \"${AGENT_TOKEN}\"}]` (or the upstream `agent: {token: ...}`)",
        );
    }
    check_unique(ctx, &agents);
    agents.into_iter().map(|a| a.agent).collect()
}

/// Reports a duplicate agent id, and a token given twice (to two agents, or twice to one).
/// Tokens are compared by digest, so `token:` and `token_sha256:` of the same token clash too.
fn check_unique(ctx: &mut Ctx, agents: &[Loaded]) {
    for (i, agent) in agents.iter().enumerate() {
        if let Some(first) = agents[..i].iter().find(|a| a.agent.id == agent.agent.id) {
            let msg = format!(
                "duplicate agent id {:?} (also at {}); every agent needs its own id",
                agent.agent.id, first.path
            );
            ctx.error(&format!("{}.id", agent.path), msg);
        }
    }
    let all: Vec<(usize, &String, &TokenDigest)> = agents
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.token_paths
                .iter()
                .zip(&a.agent.tokens)
                .map(move |(path, digest)| (i, path, digest))
        })
        .collect();
    for (n, (agent, path, digest)) in all.iter().enumerate() {
        let Some((other, first, _)) = all[..n].iter().find(|(_, _, d)| d == digest) else {
            continue;
        };
        let msg = if other == agent {
            format!("the same token as {first}; an agent's tokens must differ, remove one of them")
        } else {
            format!(
                "the same token as {first}; every agent needs its own token (the token identifies the agent)"
            )
        };
        ctx.error(path, msg);
    }
}

/// Reads the one of `token`, `token_sha256` or `tokens` an agent gives. `None` when none is
/// usable (the reason is recorded).
fn agent_tokens(ctx: &mut Ctx, obj: &Obj<'_>, id: String) -> Option<Loaded> {
    let given: Vec<&str> = TOKEN_KEYS.iter().copied().filter(|k| obj.has(k)).collect();
    let shown = if id.is_empty() { "ID" } else { id.as_str() };
    let mut token_paths = Vec::new();
    let mut tokens = Vec::new();
    match given.as_slice() {
        [] => {
            ctx.error(
                &obj.path,
                format!(
                    "agent {shown:?} has no token: add `token: \"${{AGENT_TOKEN}}\"`, or `token_sha256:` (run `agent-gate token new --agent {shown}` for a token and that line), or `tokens:` (a list of {{token: ...}} or {{sha256: ...}}) to accept several while rotating"
                ),
            );
            return None;
        }
        ["token"] => {
            let field = obj.field("token");
            let digest = plain_token(ctx, &field)?;
            token_paths.push(field.path);
            tokens.push(digest);
        }
        ["token_sha256"] => {
            let field = obj.field("token_sha256");
            let digest = sha256_field(ctx, &field, shown)?;
            token_paths.push(field.path);
            tokens.push(digest);
        }
        ["tokens"] => {
            for (path, digest) in token_list(ctx, &obj.field("tokens"), shown) {
                token_paths.push(path);
                tokens.push(digest);
            }
        }
        several => {
            let keys: Vec<String> = several.iter().map(|k| format!("`{k}`")).collect();
            ctx.error(
                &obj.path,
                format!(
                    "agent {shown:?} gives {}; give only one (to accept several tokens while rotating, list each under `tokens:` as {{token: ...}} or {{sha256: ...}})",
                    keys.join(" and ")
                ),
            );
            return None;
        }
    }
    if tokens.is_empty() {
        return None;
    }
    Some(Loaded {
        path: obj.path.clone(),
        agent: AgentConfig { id, tokens },
        token_paths,
    })
}

/// A token given in the clear: its digest (a short one draws a warning).
fn plain_token(ctx: &mut Ctx, field: &Field<'_>) -> Option<TokenDigest> {
    let token = ctx.secret(field)?;
    if token.expose().chars().count() < MIN_TOKEN_LEN {
        ctx.warn(
            &field.path,
            format!(
                "this token is shorter than {MIN_TOKEN_LEN} characters; use a long random token (`agent-gate token new --agent ID` makes one)"
            ),
        );
    }
    Some(TokenDigest::of(token.expose()))
}

/// A `token_sha256` (or a `tokens` entry's `sha256`): 64 hex digits. Messages never show the
/// value (it may be the token itself, pasted into the wrong key).
fn sha256_field(ctx: &mut Ctx, field: &Field<'_>, id: &str) -> Option<TokenDigest> {
    let value = ctx.secret(field)?;
    let value = value.expose().trim();
    match TokenDigest::from_hex(value) {
        Ok(digest) => Some(digest),
        Err(e) => {
            let hint = if value.starts_with(NEW_TOKEN_PREFIX) {
                " (this looks like the token itself: give the token as `token:`, or its digest here)"
            } else {
                ""
            };
            ctx.error(
                &field.path,
                format!(
                    "expected the SHA-256 of agent {id:?}'s token as {} hex digits, got {e}{hint}; `agent-gate token new --agent {id}` prints a new token and its digest, `printf %s \"$TOKEN\" | sha256sum` the digest of an existing one",
                    crate::config::token::TOKEN_SHA256_HEX_LEN
                ),
            );
            None
        }
    }
}

/// `tokens: [{token: ...} | {sha256: ...}, ...]`: each entry's key path and digest.
fn token_list(ctx: &mut Ctx, field: &Field<'_>, id: &str) -> Vec<(String, TokenDigest)> {
    let expected = "a mapping {token: ...} or {sha256: ...}";
    let Some(items) = ctx.list(field) else {
        return Vec::new();
    };
    if items.is_empty() {
        ctx.error(
            &field.path,
            format!("expected at least one entry, each {expected}"),
        );
    }
    let mut out = Vec::new();
    for item in items {
        match item.value {
            None => {
                ctx.error(&item.path, format!("expected {expected}, got nothing"));
                continue;
            }
            Some(serde_yaml_ng::Value::Mapping(_)) => {}
            // Never echoed: it is probably a token.
            Some(other) => {
                ctx.error(
                    &item.path,
                    format!(
                        "expected {expected}, got {}; write `- token: ...` (or `- sha256: ...` for a digest)",
                        kind(other)
                    ),
                );
                continue;
            }
        }
        let Some(entry) = ctx.obj(&item) else {
            continue;
        };
        entry.check_keys(ctx, ENTRY_KEYS);
        match (entry.has("token"), entry.has("sha256")) {
            (true, false) => {
                let f = entry.field("token");
                if let Some(digest) = plain_token(ctx, &f) {
                    out.push((f.path, digest));
                }
            }
            (false, true) => {
                let f = entry.field("sha256");
                if let Some(digest) = sha256_field(ctx, &f, id) {
                    out.push((f.path, digest));
                }
            }
            (true, true) => ctx.error(
                &item.path,
                "gives both `token` and `sha256`; one entry is one token: put each in an entry of its own",
            ),
            (false, false) => ctx.error(
                &item.path,
                format!("expected {expected} (`agent-gate token new --agent {id}` prints a new one)"),
            ),
        }
    }
    out
}
