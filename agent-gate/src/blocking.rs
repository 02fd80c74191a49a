//! A small blocking wrapper around [`AgentGateClient`] for programs without an
//! async runtime. It owns a one-thread Tokio runtime that runs the connection.
//!
//! ```no_run
//! use agent_gate::blocking::Client;
//! use serde_json::json;
//!
//! let client = Client::connect("wss://gateway.local:8443", "agent-token")?;
//! let state = client.tool_request("ha_get_state", json!({"entity_id": "sun.sun"}))?;
//! println!("{state}");
//! client.close();
//! # Ok::<(), agent_gate::Error>(())
//! ```

use std::future::Future;

use serde_json::Value;

use crate::client::{AgentGateClient, CallOptions, ClientBuilder};
use crate::error::Error;
use crate::protocol::{PendingResult, ToolInfo};

/// A blocking agent-gate client. Do not use it from inside an async runtime
/// (use [`AgentGateClient`] there); its methods return a validation error if
/// you do. Dropping it closes the connection.
#[derive(Debug)]
pub struct Client {
    client: AgentGateClient,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

fn inside_runtime_error() -> Error {
    Error::validation(
        "agent_gate::blocking::Client was used inside an async runtime",
        Some("use agent_gate::AgentGateClient (async) there".to_owned()),
    )
}

fn block_on<T>(
    runtime: Option<&tokio::runtime::Runtime>,
    f: impl Future<Output = T>,
) -> Result<T, Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(inside_runtime_error());
    }
    match runtime {
        Some(rt) => Ok(rt.block_on(f)),
        None => Err(Error::connection(
            "the client is closed",
            "create a new client",
        )),
    }
}

impl Client {
    /// Connect with a configured builder (see [`ClientBuilder`]).
    pub fn from_builder(builder: ClientBuilder) -> Result<Client, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(inside_runtime_error());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agent-gate-blocking")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::connection(
                    format!("cannot start the client's runtime thread: {e}"),
                    "check the process's thread limits",
                )
            })?;
        let client = block_on(Some(&runtime), builder.connect())??;
        Ok(Client {
            client,
            runtime: Some(runtime),
        })
    }

    /// Connect to `url` with `token` (other settings from the environment or defaults).
    pub fn connect(url: impl Into<String>, token: impl Into<String>) -> Result<Client, Error> {
        Client::from_builder(ClientBuilder::new().url(url).token(token))
    }

    /// Connect with `AGENT_GATE_URL` / `AGENT_GATE_TOKEN`.
    pub fn from_env() -> Result<Client, Error> {
        Client::from_builder(ClientBuilder::new())
    }

    /// See [`AgentGateClient::tool_request`].
    pub fn tool_request(&self, tool: impl Into<String>, args: Value) -> Result<Value, Error> {
        block_on(self.runtime.as_ref(), self.client.tool_request(tool, args))?
    }

    /// See [`AgentGateClient::tool_request_with`].
    pub fn tool_request_with(
        &self,
        tool: impl Into<String>,
        args: Value,
        options: CallOptions,
    ) -> Result<Value, Error> {
        block_on(
            self.runtime.as_ref(),
            self.client.tool_request_with(tool, args, options),
        )?
    }

    /// See [`AgentGateClient::list_tools`].
    pub fn list_tools(&self) -> Result<Vec<ToolInfo>, Error> {
        block_on(self.runtime.as_ref(), self.client.list_tools())?
    }

    /// See [`AgentGateClient::get_pending_results`].
    pub fn get_pending_results(&self) -> Result<Vec<PendingResult>, Error> {
        block_on(self.runtime.as_ref(), self.client.get_pending_results())?
    }

    /// See [`AgentGateClient::cancel_request`].
    pub fn cancel_request(
        &self,
        request_id: impl Into<String>,
    ) -> Result<crate::protocol::CancelRequestResult, Error> {
        block_on(
            self.runtime.as_ref(),
            self.client.cancel_request(request_id),
        )?
    }

    /// How many times the client has reconnected.
    pub fn reconnect_count(&self) -> u64 {
        self.client.reconnect_count()
    }

    /// The async client inside (for example to hand to async code elsewhere).
    pub fn async_client(&self) -> &AgentGateClient {
        &self.client
    }

    /// Close the connection and wait until it is closed.
    pub fn close(self) {
        // Drop does the work.
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropped inside an async runtime: blocking is not allowed here, so
            // stop the connection without waiting for a clean close.
            runtime.shutdown_background();
        } else {
            runtime.block_on(self.client.close());
        }
    }
}
