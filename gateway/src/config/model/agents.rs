//! `agents:` (or the upstream `agent:`): who may connect, and with which token.

use crate::config::secret::Secret;
use crate::config::walk::{Ctx, Obj};

/// Tokens shorter than this draw a warning.
const MIN_TOKEN_LEN: usize = 16;

/// One agent allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's id (`[A-Za-z0-9_.-]`, 1-64 characters), used in audit records and rule scoping.
    pub id: String,
    /// The token the agent authenticates with.
    pub token: Secret,
}

fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reads `agents:`, or the upstream single `agent:`; checks that ids and tokens are unique.
pub(super) fn load(ctx: &mut Ctx, root: &Obj<'_>) -> Vec<AgentConfig> {
    let mut agents: Vec<(String, AgentConfig)> = Vec::new();
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
            obj.check_keys(ctx, &["token", "id"]);
            let id = ctx
                .string(&obj.field("id"))
                .unwrap_or_else(|| "default".to_string());
            if let Some(token) = ctx.secret(&obj.field("token")) {
                agents.push((obj.field("token").path, AgentConfig { id, token }));
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
                obj.check_keys(ctx, &["id", "token"]);
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
                let token = ctx.secret(&obj.field("token"));
                if let (Some(id), Some(token)) = (id, token) {
                    agents.push((obj.field("token").path, AgentConfig { id, token }));
                }
            }
        }
    } else {
        ctx.error(
            "agents",
            "missing: expected a list of agents, e.g. `agents: [{id: default, token: \"${AGENT_TOKEN}\"}]` (or the upstream `agent: {token: ...}`)",
        );
    }
    for i in 0..agents.len() {
        for j in 0..i {
            if agents[i].1.id == agents[j].1.id {
                let path = agents[i].0.trim_end_matches(".token").to_string();
                let msg = format!(
                    "duplicate agent id {:?} (also at {}); every agent needs its own id",
                    agents[i].1.id,
                    agents[j].0.trim_end_matches(".token")
                );
                ctx.error(&format!("{path}.id"), msg);
            }
            if agents[i].1.token == agents[j].1.token {
                let msg = format!(
                    "the same token as {}; every agent needs its own token (the token identifies the agent)",
                    agents[j].0
                );
                ctx.error(&agents[i].0, msg);
            }
        }
        if agents[i].1.token.expose().chars().count() < MIN_TOKEN_LEN {
            let msg = format!(
                "this token is shorter than {MIN_TOKEN_LEN} characters; use a long random token (e.g. `openssl rand -hex 32`)"
            );
            ctx.warn(&agents[i].0, msg);
        }
    }
    agents.into_iter().map(|(_, a)| a).collect()
}
