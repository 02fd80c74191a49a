//! Connection-level defences over real sockets: caps on unauthenticated connections (in total
//! and per address, oldest dropped first, authenticated agents unaffected), close codes for
//! bad frames before and after `auth`, notifications never answered, and rate-limited WARN
//! lines about refused connections.

#[path = "server_support/mod.rs"]
mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_gate_gateway::server::ServerLimits;
use futures_util::SinkExt;
use serde_json::json;
use support::{Harness, Options, PI_TOKEN};

use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Silent connections the attack tests hold open.
const HELD: usize = 2000;

/// The defaults of `gateway.max_unauthenticated_connections` / `_per_address`.
const MAX_TOTAL: usize = 512;
const MAX_PER_ADDRESS: usize = 128;

/// Raises this process's open-file limit to hold `needed` descriptors (both ends of every
/// held connection live in this process), or fails the test saying why.
fn ensure_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur < needed {
        let wanted = libc::rlimit {
            rlim_cur: needed.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) }, 0);
        assert!(
            wanted.rlim_cur >= needed,
            "the hard open-file limit ({}) is below the {needed} this test needs",
            limit.rlim_max
        );
    }
}

/// Options of the attack tests: held sockets must not time out while the test counts them.
fn patient() -> Options {
    Options {
        limits: ServerLimits {
            auth_timeout: Duration::from_secs(600),
            ..ServerLimits::default()
        },
        ..Options::default()
    }
}

/// A TCP connection from `from` to `to` that never sends anything.
async fn silent(from: IpAddr, to: SocketAddr) -> std::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(to).await.unwrap();
    // Kept as a non-blocking std socket: peeked without the runtime.
    stream.into_std().unwrap()
}

/// Whether the gateway closed `stream` (end of file or reset).
fn is_closed(stream: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Which of `held` are still open once the count of open ones reaches `expected` or stops
/// changing (bounded: the gateway drops displaced connections as soon as it runs).
async fn open_after_settling(held: &[std::net::TcpStream], expected: usize) -> Vec<bool> {
    let mut open: Vec<bool> = held.iter().map(|s| !is_closed(s)).collect();
    for _ in 0..500 {
        if open.iter().filter(|o| **o).count() <= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        open = held.iter().map(|s| !is_closed(s)).collect();
    }
    open
}

#[tokio::test]
async fn silent_connections_from_one_address_are_capped_and_agents_still_get_in() {
    ensure_fd_limit(2 * HELD as u64 + 512);
    let h = Harness::start_with(patient()).await;
    let mut early = h.agent_with(support::LAPTOP_TOKEN).await;
    let addr = h.gateway().ws_addr();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        held.push(silent(localhost, addr).await);
    }
    let open = open_after_settling(&held, MAX_PER_ADDRESS).await;
    let admitted = open.iter().filter(|o| **o).count();
    assert_eq!(admitted, MAX_PER_ADDRESS, "silent connections admitted");
    assert_eq!(h.gateway().unauthenticated_connections(), MAX_PER_ADDRESS);
    // The oldest were dropped first: the newest ones are the ones still open.
    assert!(open[HELD - MAX_PER_ADDRESS..].iter().all(|o| *o));

    // A new agent from the same address gets in and completes a call...
    let mut late = h.agent().await;
    let answer = late.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    // ...by displacing the oldest silent connection still held.
    let open = open_after_settling(&held, MAX_PER_ADDRESS - 1).await;
    assert_eq!(open.iter().filter(|o| **o).count(), MAX_PER_ADDRESS - 1);
    assert!(!open[HELD - MAX_PER_ADDRESS]);
    assert_eq!(
        h.gateway().unauthenticated_connections(),
        MAX_PER_ADDRESS - 1
    );
    // The agent authenticated before the flood was never touched.
    let answer = early.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.gateway().connected_agents(), 2);
    drop(held);
}

#[tokio::test]
async fn silent_connections_from_many_addresses_are_capped_in_total_oldest_first() {
    ensure_fd_limit(2 * HELD as u64 + 512);
    let h = Harness::start_with(patient()).await;
    let mut early = h.agent_with(support::LAPTOP_TOKEN).await;
    let addr = h.gateway().ws_addr();
    // 40 loopback addresses, 50 connections each: under the per-address cap, over the total.
    let sources: Vec<IpAddr> = (2..42u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        held.push(silent(sources[i % sources.len()], addr).await);
    }
    let open = open_after_settling(&held, MAX_TOTAL).await;
    let admitted = open.iter().filter(|o| **o).count();
    assert_eq!(admitted, MAX_TOTAL, "silent connections admitted");
    assert_eq!(h.gateway().unauthenticated_connections(), MAX_TOTAL);
    let expected: Vec<bool> = (0..HELD).map(|i| i >= HELD - MAX_TOTAL).collect();
    assert!(open == expected, "the oldest were not the ones dropped");

    // New agents get in and complete calls; the agent connected before the flood too.
    let mut newcomers = Vec::new();
    for _ in 0..3 {
        let mut agent = h.agent().await;
        let answer = agent.tool("ha_get_config", json!({})).await;
        assert_eq!(answer["result"]["status"], "executed", "{answer}");
        newcomers.push(agent);
    }
    let answer = early.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    // The first newcomer displaced the oldest silent connection; once it had authenticated
    // its place was free again for the next one.
    let open = open_after_settling(&held, MAX_TOTAL - 1).await;
    assert_eq!(open.iter().filter(|o| **o).count(), MAX_TOTAL - 1);
    assert!(!open[HELD - MAX_TOTAL]);
    assert_eq!(h.gateway().unauthenticated_connections(), MAX_TOTAL - 1);
    // pi (several connections, one agent) and laptop.
    assert_eq!(h.gateway().connected_agents(), 2);
    drop((held, newcomers));
}

// ----- frames ---------------------------------------------------------------------------

#[tokio::test]
async fn notifications_are_never_answered_after_auth() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .send(&json!({"jsonrpc": "2.0", "method": "list_tools", "params": {}}))
        .await;
    agent
        .send(&json!({"jsonrpc": "2.0", "method": "no_such_method"}))
        .await;
    agent
        .send(&json!({"jsonrpc": "2.0", "method": "tool_request", "params": {"tool": "ha_get_config", "args": {}}}))
        .await;
    // The next frame is the answer to this call: nothing was sent for the notifications.
    let id = agent.request("list_tools", json!({})).await;
    let next = agent.recv().await.expect("an answer");
    assert_eq!(next["id"], json!(id), "a notification was answered: {next}");
    assert!(agent.backlog.is_empty());
    // A frame without id that is not a request at all is still an error.
    agent.send(&json!({"jsonrpc": "2.0"})).await;
    assert_eq!(agent.recv().await.unwrap()["error"]["code"], -32600);
}

#[tokio::test]
async fn a_notification_before_auth_is_not_answered() {
    let h = Harness::start().await;
    let mut client = h.connect().await;
    client
        .send(&json!({"jsonrpc": "2.0", "method": "auth", "params": {"token": PI_TOKEN}}))
        .await;
    // The connection closes (it did not authenticate) without any JSON-RPC answer.
    let close = client.closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(client.backlog.is_empty(), "answered: {:?}", client.backlog);
}

#[tokio::test]
async fn invalid_utf8_after_auth_closes_with_1007() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    send_invalid_utf8(&mut agent.ws).await;
    let close = agent.closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Invalid);
}

#[tokio::test]
async fn invalid_utf8_before_auth_closes_with_1007() {
    let h = Harness::start().await;
    let mut client = h.connect().await;
    send_invalid_utf8(&mut client.ws).await;
    let close = client
        .closed()
        .await
        .expect("a close frame, not a TCP drop");
    assert_eq!(close.code, CloseCode::Invalid);
}

#[tokio::test]
async fn an_oversized_frame_before_auth_closes_with_1009() {
    let h = Harness::start_with(Options {
        limits: ServerLimits {
            max_message_size: 4096,
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    let mut client = h.connect().await;
    client.send_raw(&"x".repeat(8192)).await;
    let close = client
        .closed()
        .await
        .expect("a close frame, not a TCP drop");
    assert_eq!(close.code, CloseCode::Size);
}

/// Sends a text frame whose payload is not UTF-8, below the client's own checks.
async fn send_invalid_utf8(ws: &mut support::Ws) {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let frame = Frame::message(vec![0xff, 0xfe, 0x80], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.expect("sends");
}

// ----- logs -----------------------------------------------------------------------------

/// Log output captured for one test (the test's current-thread runtime runs the gateway).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|line| line.contains(needle)).count()
    }
}

#[tokio::test(start_paused = true)]
async fn refused_connections_log_one_warning_per_address_not_one_each() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::start().await;
    for _ in 0..6 {
        let mut client = h.connect().await;
        let answer = client.call("auth", json!({"token": "wrong"})).await;
        assert_eq!(answer["error"]["message"], "Invalid token");
    }
    // The address is now blocked: every further connection is refused.
    for _ in 0..100 {
        let mut client = h.connect().await;
        let answer = client.recv().await.expect("refusal");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("too many failed authentications"),
            "{answer}"
        );
    }
    assert_eq!(captured.lines_with("connection refused"), 1);
    assert_eq!(captured.lines_with("authentication failed"), 1);
    // Once the interval is over, the next line says how many were left out.
    tokio::time::advance(Duration::from_secs(11)).await;
    let mut client = h.connect().await;
    let _ = client.call("auth", json!({"token": "wrong"})).await;
    assert_eq!(captured.lines_with("authentication failed"), 2);
    assert_eq!(captured.lines_with("suppressed=5"), 1);
}
