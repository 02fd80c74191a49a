//! Typed tools for your own HTTP API: `tools!` reads `examples/todo_api.toml`
//! at compile time and generates `TodoApi` (one method per tool on
//! `AgentGateClient`), the argument structs (`TodoAddArgs`, ...) and the
//! response type `Task`.
//!
//! ```sh
//! cargo run -p agent-gate --example custom_manifest
//! # against a gateway that serves todo_api.toml:
//! AGENT_GATE_URL=wss://gateway:8443 AGENT_GATE_TOKEN=... cargo run -p agent-gate --example custom_manifest
//! ```
//!
//! Without `AGENT_GATE_URL` it shows what was generated and how arguments are
//! checked locally; with it, it also checks the gateway serves the same
//! manifest and calls the tools.

use agent_gate::prelude::*;

/// The generated API of the to-do service.
mod todo {
    agent_gate::tools!("examples/todo_api.toml", trait = TodoApi);
}

use todo::{Task, TodoAddArgs, TodoApi};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("tools: {}", todo::TOOL_NAMES.join(", "));
    println!("manifest hash: {}", todo::MANIFEST_HASH);
    println!(
        "todo_add arguments schema:\n{}",
        serde_json::to_string_pretty(&TodoAddArgs::input_schema()?)?
    );

    // Arguments are checked against the manifest before anything is sent,
    // with the gateway's own message.
    let bad = TodoAddArgs {
        list: "Groceries!".into(),
        title: "milk".into(),
        tags: None,
    };
    if let Err(e) = bad.validate() {
        println!("refused locally: {e}");
    }

    if std::env::var_os("AGENT_GATE_URL").is_none() {
        println!("set AGENT_GATE_URL and AGENT_GATE_TOKEN to call a gateway serving todo_api.toml");
        return Ok(());
    }
    let gw = AgentGateClient::from_env().await?;
    let drift = todo::check_manifest(&gw).await?;
    if !drift.is_compatible() {
        println!("the gateway's manifest differs: {drift}");
    }

    // Required arguments are positional, optional ones builder methods.
    let task: Task = gw
        .todo_add("groceries", "oat milk")
        .tags(vec!["shop".into()])
        .await?;
    println!("added #{}: {}", task.id, task.title);
    let open: Vec<Task> = gw.todo_list("groceries").done(false).await?;
    println!("{} open task(s)", open.len());
    let done = gw.todo_complete(task.id).await?;
    println!("#{} done: {}", done.id, done.done);
    Ok(())
}
