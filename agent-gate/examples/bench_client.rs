//! Client overhead benchmark: `cargo run --release -p agent-gate --example bench_client`.
//!
//! Runs a trivial echo gateway on 127.0.0.1 (its own runtime thread) and
//! measures, on a separate client runtime:
//! 1. amortised time per call with 64 calls in flight (an upper bound on the
//!    client-side overhead: it also includes the echo server and loopback),
//!    and per-call latency percentiles;
//! 2. 10,000 calls in flight on one connection at once (the server holds every
//!    answer until all 10,000 requests have arrived), all without errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_gate::AgentGateClient;
use agent_gate::protocol::{MethodCall, Response, ToolResult, parse_request};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "bench-token";

/// Answer auth, then every tool_request with its own args as data. When
/// `hold` > 0, answers are held until `hold` requests have arrived.
async fn serve(tcp: tokio::net::TcpStream, hold: usize) {
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let mut held: Vec<String> = Vec::new();
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(request) = parse_request(text.as_str()) else {
            continue;
        };
        let reply = match request.method_call() {
            Ok(MethodCall::Auth(_)) => {
                Response::success(request.id, json!({"status": "authenticated"}))
            }
            Ok(MethodCall::ToolRequest(p)) => Response::success_typed(
                request.id,
                &ToolResult::executed(Value::Object(p.args), p.request_id.unwrap_or_default()),
            )
            .expect("encode"),
            Ok(_) => Response::success(request.id, json!({"results": [], "tools": []})),
            Err(e) => Response::error(Some(request.id), e),
        };
        let text = reply.to_json().expect("encode");
        if hold > 0 && !text.contains("authenticated") {
            held.push(text);
            if held.len() == hold {
                for t in held.drain(..).rev() {
                    if sink.feed(Message::text(t)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            continue;
        }
        // Batch: send now, flush when nothing else is immediately readable.
        if sink.send(Message::text(text)).await.is_err() {
            return;
        }
    }
}

fn start_server(hold: usize) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                while let Ok((tcp, _)) = listener.accept().await {
                    tokio::spawn(serve(tcp, hold));
                }
            });
        })
        .expect("server thread");
    let addr = rx.recv().expect("server address");
    format!("ws://{addr}")
}

/// CPU time (user + system) used so far by this process's threads whose name
/// starts with `prefix`, from /proc (Linux); `None` elsewhere.
fn thread_cpu(prefix: &str) -> Option<Duration> {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        total += utime + stime;
    }
    Some(Duration::from_secs_f64(total as f64 / ticks_per_sec))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn connect(url: &str) -> AgentGateClient {
    AgentGateClient::builder()
        .ignore_env()
        .url(url)
        .token(TOKEN)
        .max_retries(Some(0))
        .connect()
        .await
        .expect("connect")
}

async fn bench_pipelined(in_flight: usize, total: usize) {
    let url = start_server(0);
    let client = connect(&url).await;
    // Warm up.
    for i in 0..1000 {
        client
            .tool_request("echo", json!({"i": i}))
            .await
            .expect("warm-up call");
    }
    let per_worker = total / in_flight;
    let cpu_before = thread_cpu("ag-client");
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..in_flight {
        let c = client.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                let t = Instant::now();
                let data = c
                    .tool_request("echo", json!({"w": w, "i": i}))
                    .await
                    .expect("call");
                latencies.push(t.elapsed());
                assert_eq!(data["i"], json!(i));
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    let elapsed = start.elapsed();
    let cpu = cpu_before
        .zip(thread_cpu("ag-client"))
        .map(|(a, b)| b.saturating_sub(a));
    latencies.sort();
    let calls = latencies.len();
    if let Some(cpu) = cpu {
        println!(
            "{in_flight} in flight: client-side CPU {:.2} µs per call ({:.3} s of client-thread CPU for {calls} calls)",
            cpu.as_secs_f64() * 1e6 / calls as f64,
            cpu.as_secs_f64(),
        );
    }
    println!(
        "{in_flight} in flight: {calls} calls in {:.3} s = {:.0} calls/s, {:.2} µs per call amortised \
         (client + echo server + loopback); latency p50 {:?} p99 {:?} max {:?}",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / calls as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    client.close().await;
}

async fn bench_many_in_flight(n: usize) {
    let url = start_server(n);
    let client = Arc::new(connect(&url).await);
    let start = Instant::now();
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let c = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            c.tool_request("echo", json!({"i": i})).await
        }));
    }
    let mut errors = 0usize;
    // The server answers nothing before all n requests have arrived, so all n
    // are in flight at once before the first answer.
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.expect("task") {
            Ok(data) if data["i"] == json!(i) => {}
            _ => errors += 1,
        }
    }
    println!(
        "{n} concurrent calls on one connection (all in flight before the first answer): {errors} errors, all answered in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    client.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ag-client")
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        bench_pipelined(1, 20_000).await;
        bench_pipelined(64, 256_000).await;
        bench_many_in_flight(10_000).await;
    });
}
