//! `config.yaml` and `permissions.yaml`: typed loading, `${VAR}` substitution, validation.
//!
//! Loading never stops at the first mistake: every problem is collected and reported with the
//! file, the key path and what was expected, e.g.
//! `config.yaml: gateway.port: expected an integer 1-65535, got "abc"`. Unknown keys are errors
//! with a "did you mean" hint. Tokens and passwords are held in [`Secret`] and never echoed;
//! of agent tokens only the SHA-256 is kept ([`TokenDigest`], see `token`), and `config.yaml`
//! may give just that (`token_sha256:`), or several tokens of an agent for rotation (`tokens:`).
//!
//! `${VAR}` is replaced in every string value (several per string, at any depth) after YAML
//! parsing, so a value from the environment can never change the structure of the file;
//! `$${` writes a literal `${`. An unset variable is an error naming the variable and the key.
//! Numbers such as `gateway.port` or a Telegram `chat_id` may be given as strings (as `${VAR}`
//! yields strings).
//!
//! Commands that need only part of the file (`healthcheck`, `policy explain`, `approve-link`)
//! load a [`ConfigOutline`] instead, which resolves `${VAR}` only in the keys it reads, so the
//! variables of tokens and passwords need not be set for them.
//!
//! Relative paths in `tools:` (and a service's upstream `tools:` key) are resolved against the
//! directory of the config file; `storage.path` and `gateway.tls` paths are used as written
//! (relative to the working directory), as upstream does.

mod env;
mod error;
mod model;
mod permissions;
mod secret;
mod token;
mod walk;

pub use env::{EnvLookup, ProcessEnv};
pub use error::{ConfigError, Issue};
pub use model::{
    AgentConfig, ApproverConfig, Config, ConfigOutline, GatewayConfig, HealthCheck,
    HomeAssistantApproverConfig, McpConfig, RateLimitConfig, ServiceAuth, ServiceConfig,
    StorageConfig, TelegramConfig, TlsConfig, WebApproverConfig,
};
pub use model::{
    DEFAULT_APPROVAL_TIMEOUT_SECS, DEFAULT_GATEWAY_HOST, DEFAULT_GATEWAY_PORT, DEFAULT_HEALTH_HOST,
    DEFAULT_HEALTH_PORT, DEFAULT_MAX_UNAUTHENTICATED, DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
    DEFAULT_MCP_HOLD_SECONDS, DEFAULT_MCP_PATH, DEFAULT_SERVICE_MAX_CONNECTIONS,
    DEFAULT_SERVICE_TIMEOUT, DEFAULT_STORAGE_PATH, DEFAULT_TELEGRAM_API_URL, DEFAULT_TOOLS_PATH,
    DEFAULT_WEB_APPROVER_NAME,
};
pub use model::{
    DEFAULT_HOME_ASSISTANT_APPROVER_NAME, DEFAULT_PHONE_GRANT, HOME_ASSISTANT_SERVICE,
};
pub use permissions::{PermissionsFile, RuleList, RuleSpec};
pub use secret::Secret;
pub use token::{DigestHexError, NEW_TOKEN_PREFIX, TOKEN_SHA256_HEX_LEN, TokenDigest, new_token};
pub use walk::suggest;

pub(crate) use model::valid_agent_id;
