//! Throughput of the store under group commit.
//!
//! Each "audited allowed request" is what the gateway does for a call the policy allows:
//! insert the request row in `executing` with the audit record of the decision (one durable
//! commit, before execution), then the transition to `executed` with the result and the audit
//! record of the outcome (a second durable commit, before the answer). Many requests are in
//! flight at once, so their commits are shared.
//!
//! ```text
//! cargo run --release -p agent-gate-gateway --example bench_store -- [requests] [in-flight] [mode]
//! ```
//!
//! `mode` is `background` (the default [`SyncMode`]: answered at commit, synced right after),
//! `always` ([`SyncMode::Always`]: answered after the sync) or `full` (`synchronous=FULL` in
//! SQLite, [`StoreOptions::sync_in_commit`]: the writer waits for every sync instead of
//! overlapping it with the next batch). The database goes in `$TMPDIR` (try `/dev/shm`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use agent_gate_gateway::store::{
    AuditEntry, AuditKind, Decision, NewRequest, Store, StoreOptions, SyncMode, Transition,
};
use serde_json::json;

fn arg(position: usize, default: usize) -> Result<usize, String> {
    match std::env::args().nth(position) {
        Some(text) => text
            .parse()
            .map_err(|_| format!("argument {position} must be a number, got `{text}`")),
        None => Ok(default),
    }
}

/// Runs on the `agent-gate` binary's runtime (see `agent_gate_gateway::runtime`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    agent_gate_gateway::runtime::multi_thread("agent-gate")
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let total = arg(1, 100_000)?;
    let in_flight = arg(2, 256)?.max(1);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let mode = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "background".to_owned());
    let options = match mode.as_str() {
        "background" => StoreOptions::new(),
        "always" => StoreOptions::new().sync(SyncMode::Always),
        "full" => StoreOptions::new().sync_in_commit(true),
        other => {
            return Err(format!("mode must be background, always or full, got `{other}`").into());
        }
    };
    let store = Store::open_with(&path, options).await?;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(in_flight);
    for worker in 0..in_flight {
        let store = store.clone();
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let agent = format!("agent-{}", worker % 8);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<(), agent_gate_gateway::store::StoreError>(());
                }
                let id = format!("req-{n}");
                let entity = format!("light.room_{}", n % 50);
                let signature = format!("ha_call_service(light.turn_on, {entity})");
                store
                    .insert_request(
                        NewRequest::allowed(
                            agent.as_str(),
                            id.as_str(),
                            "ha_call_service",
                            json!({"domain": "light", "service": "turn_on", "entity_id": entity}),
                            signature.as_str(),
                        )
                        .rule("allow ha_call_service(light.*)")
                        .audit(
                            AuditEntry::new(agent.as_str(), AuditKind::Decision)
                                .request_id(id.as_str())
                                .signature(signature.as_str())
                                .decision(Decision::Allow)
                                .rule("allow ha_call_service(light.*)")
                                .actor("policy"),
                        ),
                    )
                    .await?;
                let won = store
                    .transition(
                        Transition::executed(
                            agent.as_str(),
                            id.as_str(),
                            json!([{"entity_id": entity, "state": "on"}]),
                        )
                        .audit(
                            AuditEntry::new(agent.as_str(), AuditKind::Executed)
                                .request_id(id.as_str())
                                .signature(signature.as_str())
                                .actor("gateway")
                                .detail(json!({"status": 200})),
                        ),
                    )
                    .await?;
                if !won {
                    return Err(agent_gate_gateway::store::StoreError::Corrupt {
                        path: store.path().to_owned(),
                        what: format!("request {id} was not executing when it finished"),
                    });
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    store.close().await?;

    let per_second = total as f64 / elapsed.as_secs_f64();
    println!(
        "audited allowed requests: {total} with {in_flight} in flight (mode {mode}) in {}",
        path.display()
    );
    println!("elapsed:                  {:.3} s", elapsed.as_secs_f64());
    println!("requests/s:               {per_second:.0}");
    println!(
        "transactions:             {} for {} writes ({:.1} writes per commit, largest batch {})",
        stats.transactions,
        stats.writes,
        stats.writes as f64 / stats.transactions.max(1) as f64,
        stats.largest_batch
    );
    println!(
        "WAL pages:                {} ({:.1} per commit)",
        stats.wal_frames,
        stats.wal_frames as f64 / stats.transactions.max(1) as f64
    );
    println!(
        "WAL syncs:                {} ({:.1} writes per sync)",
        stats.syncs,
        stats.writes as f64 / stats.syncs.max(1) as f64
    );
    Ok(())
}
