//! Measures the executor's cost per tool call against the in-process simulated Home
//! Assistant over real loopback HTTP: sequential latency (p50/p99) and concurrent
//! throughput, for a read (`ha_get_state`) and an action (`ha_call_service`).
//!
//! Run with `cargo run --release -p agent-gate-gateway --example bench_executor`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent_gate_gateway::config::{HealthCheck, Secret, ServiceAuth, ServiceConfig};
use agent_gate_gateway::executor::Executor;
use agent_gate_manifest::Manifest;
use agent_gate_sim::home_assistant::HomeAssistant;
use serde_json::{Map, Value, json};

const TOKEN: &str = "bench-token";
const SEQUENTIAL: usize = 2_000;
const CONCURRENCY: usize = 32;
const PER_TASK: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools.toml");
    let manifest = Manifest::load(&[path])?.manifest;
    let home = HomeAssistant::demo(TOKEN);
    let (_, server) = home.spawn("127.0.0.1:0").await?;
    let config = ServiceConfig {
        name: "homeassistant".into(),
        url: server.url(),
        auth: Some(ServiceAuth::Bearer {
            token: Secret::new(TOKEN),
        }),
        timeout: Duration::from_secs(10),
        health: HealthCheck {
            method: "GET".into(),
            path: "/api/".into(),
            expect_status: 200,
        },
        errors: BTreeMap::new(),
        max_connections: 32,
    };
    let executor = Executor::new([&config])?;

    let cases: [(&str, Value); 2] = [
        ("ha_get_state", json!({"entity_id": "light.living_room"})),
        (
            "ha_call_service",
            json!({"domain": "light", "service": "toggle", "entity_id": "light.kitchen"}),
        ),
    ];
    for (name, args) in cases {
        let tool = manifest.tool(name).ok_or("tool missing from tools.toml")?;
        let args: Map<String, Value> = args.as_object().cloned().unwrap_or_default();
        // Warm the connection pool.
        executor.execute(tool, &args).await?;

        let mut latencies = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let started = Instant::now();
            executor.execute(tool, &args).await?;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        println!(
            "{name}: sequential {SEQUENTIAL} calls: p50 {:?}, p99 {:?}",
            percentile(50),
            percentile(99)
        );

        let started = Instant::now();
        let tasks = (0..CONCURRENCY).map(|_| async {
            for _ in 0..PER_TASK {
                executor.execute(tool, &args).await?;
            }
            Ok::<_, agent_gate_gateway::executor::ExecutionError>(())
        });
        for result in futures_util::future::join_all(tasks).await {
            result?;
        }
        let elapsed = started.elapsed();
        let calls = CONCURRENCY * PER_TASK;
        println!(
            "{name}: {CONCURRENCY} concurrent callers, {calls} calls in {elapsed:?}: {:.0} calls/s",
            calls as f64 / elapsed.as_secs_f64()
        );
    }
    println!(
        "service calls received by the simulator: {}",
        home.service_call_count()
    );
    server.shutdown().await?;
    Ok(())
}
