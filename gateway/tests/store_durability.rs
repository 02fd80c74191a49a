//! Durability and the file itself: crashes (dropped handles, `abort()`, SIGKILL mid-stream) lose
//! nothing that was acknowledged, migrations from empty and v1 files, refusal of newer or foreign
//! files, and mode 0600 on the database and its -wal/-shm files.
//!
//! The crash tests run this test binary again as a child process (the ignored
//! `crash_child_writer` test, driven by environment variables) and kill it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use agent_gate_gateway::store::{
    AuditEntry, AuditKind, AuditQuery, Decision, InsertOutcome, NewRequest, RequestState,
    SCHEMA_VERSION, Store, StoreError, StoreOptions, StoreStats, SyncMode, Timestamp, Transition,
};
use serde_json::json;

const CHILD_DB: &str = "AGENT_GATE_STORE_CRASH_DB";
const CHILD_MODE: &str = "AGENT_GATE_STORE_CRASH_MODE";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Not a test of its own: the child process of the crash tests. It writes, prints one line per
/// acknowledged (committed) write, then aborts or waits to be killed.
#[test]
#[ignore = "child process of the crash tests; run by them with its environment"]
fn crash_child_writer() {
    let (Ok(db), Ok(mode)) = (std::env::var(CHILD_DB), std::env::var(CHILD_MODE)) else {
        panic!("run only by the crash tests, with {CHILD_DB} and {CHILD_MODE} set");
    };
    runtime().block_on(async move {
        let store = Store::open(&db).await.unwrap();
        match mode.as_str() {
            "abort" => {
                for i in 0..20 {
                    let id = format!("r{i}");
                    store
                        .insert_request(
                            NewRequest::allowed("pi", id.as_str(), "t", json!({"i": i}), "t()")
                                .audit(
                                    AuditEntry::new("pi", AuditKind::Decision)
                                        .request_id(id.as_str()),
                                ),
                        )
                        .await
                        .unwrap();
                    println!("ACK inserted {id}");
                    if i % 2 == 0 {
                        let done = Transition::executed("pi", id.as_str(), json!({"i": i}));
                        assert!(store.transition(done).await.unwrap());
                        println!("ACK executed {id}");
                    }
                }
                // Crash right after the last acknowledged commit: no close, no destructors.
                std::process::abort();
            }
            "stream" => {
                // Writes from many tasks until killed.
                let mut tasks = Vec::new();
                for task in 0..16 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0.. {
                            let id = format!("t{task}-{i}");
                            let request =
                                NewRequest::allowed("pi", id.as_str(), "t", json!({"i": i}), "t()")
                                    .audit(
                                        AuditEntry::new("pi", AuditKind::Decision)
                                            .request_id(id.as_str()),
                                    );
                            store.insert_request(request).await.unwrap();
                            println!("ACK inserted {id}");
                            let done = Transition::executed(
                                "pi",
                                id.as_str(),
                                json!({"task": task, "i": i}),
                            );
                            assert!(store.transition(done).await.unwrap());
                            println!("ACK executed {id}");
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

/// Runs the child writer and returns its acknowledgements: request id → last acknowledged state.
/// With `kill_after`, the child is SIGKILLed after that many acknowledgements.
fn run_child(db: &Path, mode: &str, kill_after: Option<usize>) -> BTreeMap<String, RequestState> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, db)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = BTreeMap::new();
    let mut count = 0;
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (what, id) = rest.split_once(' ').unwrap();
        let state = match what {
            "inserted" => RequestState::Executing,
            "executed" => RequestState::Executed,
            other => panic!("unexpected ack {other}"),
        };
        acked.insert(id.to_owned(), state);
        count += 1;
        if kill_after == Some(count) {
            // SIGKILL while the other tasks are mid-write.
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have crashed, got {status}"
    );
    acked
}

async fn assert_acknowledged_writes_survived(db: &Path, acked: &BTreeMap<String, RequestState>) {
    let store = Store::open(db).await.unwrap();
    for (id, state) in acked {
        let record = store
            .get_request("pi", id.as_str())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged request {id} was lost"));
        match state {
            RequestState::Executed => assert_eq!(record.state, RequestState::Executed, "{id}"),
            // Acknowledged as executing; its completion may or may not have been committed.
            _ => assert!(
                matches!(
                    record.state,
                    RequestState::Executing | RequestState::Executed
                ),
                "{id}: {:?}",
                record.state
            ),
        }
        let audit = store
            .audit_page(
                AuditQuery::new()
                    .request_id(id.as_str())
                    .kind(AuditKind::Decision),
            )
            .await
            .unwrap();
        assert_eq!(audit.len(), 1, "decision audit of {id}");
    }
    // Whatever was interrupted is failed, never re-run.
    let report = store.recover_on_startup().await.unwrap();
    for record in &report.failed {
        assert_ne!(acked.get(&record.request_id), Some(&RequestState::Executed));
    }
    store.close().await.unwrap();
}

#[test]
fn abort_after_a_committed_write_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gate.db");
    let acked = run_child(&db, "abort", None);
    assert_eq!(acked.len(), 20);
    assert_eq!(
        acked
            .values()
            .filter(|s| **s == RequestState::Executed)
            .count(),
        10
    );
    runtime().block_on(async {
        assert_acknowledged_writes_survived(&db, &acked).await;
        let store = Store::open(&db).await.unwrap();
        // Recovery (run above) failed exactly the ten requests that were still executing.
        let failed = store
            .audit_page(AuditQuery::new().kind(AuditKind::Failed))
            .await
            .unwrap();
        assert_eq!(failed.len(), 10);
        store.close().await.unwrap();
    });
}

#[test]
fn sigkill_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gate.db");
    let acked = run_child(&db, "stream", Some(400));
    assert!(acked.len() >= 200);
    runtime().block_on(assert_acknowledged_writes_survived(&db, &acked));
}

/// Records an allowed request `id` of agent `pi` (tool `t`) with `args`.
async fn insert_allowed(store: &Store, id: &str, args: serde_json::Value) {
    store
        .insert_request(NewRequest::allowed("pi", id, "t", args, "t()"))
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_without_close_keeps_every_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    for i in 0..50 {
        insert_allowed(&store, &format!("r{i}"), json!({"i": i})).await;
    }
    let clone = store.clone();
    drop(store);
    drop(clone);
    let reopened = Store::open(&path).await.unwrap();
    for i in 0..50 {
        let record = reopened
            .get_request("pi", format!("r{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.args, json!({"i": i}));
    }
    reopened.close().await.unwrap();
    // Once every connection is closed the WAL has been checkpointed into the database file and
    // removed. The dropped store's threads close their connections on their own, possibly
    // after `close` above returned (then the last of them removes the file): wait for them.
    let wal = dir.path().join("gate.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!wal.exists(), "the WAL outlived every connection");
}

/// Writes `count` requests one after another, checking `after_each(stats)` after every answer.
async fn sequential_writes(store: &Store, count: usize, after_each: impl Fn(StoreStats)) {
    for i in 0..count {
        insert_allowed(store, &format!("s{i}"), json!({"i": i})).await;
        after_each(store.stats());
    }
}

/// Waits up to 10 s for the store's counters to satisfy `done`; fails with `what` otherwise.
async fn stats_eventually(store: &Store, what: &str, done: impl Fn(&StoreStats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = store.stats();
        if done(&stats) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {stats:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_always_answers_only_after_the_disk_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path().join("gate.db"),
        StoreOptions::new().sync(SyncMode::Always),
    )
    .await
    .unwrap();
    // One write at a time: each is its own transaction, and its answer waits for a sync that
    // started after its commit.
    sequential_writes(&store, 20, |stats| {
        assert!(
            stats.synced_transactions >= stats.transactions,
            "answered before its sync: {stats:?}"
        );
    })
    .await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_background_answers_at_commit_and_syncs_right_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    sequential_writes(&store, 20, |stats| {
        assert_eq!(stats.writes, stats.transactions)
    })
    .await;
    // Every commit is followed by a sync without anyone waiting for it.
    stats_eventually(&store, "never synced", |stats| {
        stats.syncs > 0 && stats.synced_transactions == stats.transactions
    })
    .await;
    // What was answered is readable at once (nothing waits for the sync).
    assert!(store.get_request("pi", "s19").await.unwrap().is_some());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_checkpointed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    // ~2 KiB of arguments per request: 3,000 of them write far more than the 1,000-page
    // (4 MiB) log the sync thread lets grow before copying it into the database file.
    let padding = "x".repeat(2048);
    for i in 0..3000 {
        insert_allowed(
            &store,
            &format!("c{i}"),
            json!({"i": i, "padding": padding}),
        )
        .await;
    }
    stats_eventually(&store, "no checkpoint", |stats| stats.checkpoints > 0).await;
    // The log restarted from its beginning instead of growing with every write (without
    // checkpoints it reaches ~75 MiB here; the writer restarts it at 4,000 pages = 16 MiB).
    let wal = std::fs::metadata(dir.path().join("gate.db-wal"))
        .unwrap()
        .len();
    assert!(wal < 24 << 20, "the write-ahead log grew to {wal} bytes");
    assert!(store.get_request("pi", "c2999").await.unwrap().is_some());
    store.close().await.unwrap();
    let reopened = Store::open(&path).await.unwrap();
    assert!(reopened.get_request("pi", "c0").await.unwrap().is_some());
    reopened.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_can_sync_inside_each_commit_instead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open_with(&path, StoreOptions::new().sync_in_commit(true).readers(1))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("r{i}");
            store
                .insert_request(NewRequest::allowed(
                    "pi",
                    id.as_str(),
                    "t",
                    json!({"i": i}),
                    "t()",
                ))
                .await
                .unwrap();
            assert!(
                store
                    .transition(Transition::executed("pi", id.as_str(), json!(i)))
                    .await
                    .unwrap()
            );
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.stats();
    // SQLite synced every transaction itself.
    assert_eq!(stats.syncs, stats.transactions);
    assert_eq!(stats.writes, 40);
    drop(store);
    let reopened = Store::open(&path).await.unwrap();
    for i in 0..20 {
        let record = reopened
            .get_request("pi", format!("r{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.state, RequestState::Executed);
        assert_eq!(record.result, Some(json!(i)));
    }
    reopened.close().await.unwrap();
}

#[tokio::test]
async fn a_closed_store_refuses_work_and_close_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("gate.db")).await.unwrap();
    let other = store.clone();
    store.close().await.unwrap();
    store.close().await.unwrap();
    let error = other
        .append_audit(AuditEntry::new("pi", AuditKind::Delivered))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Closed { .. }), "{error:?}");
    assert!(error.to_string().contains("closed"));
    let error = other.get_request("pi", "r").await.unwrap_err();
    assert!(matches!(error, StoreError::Closed { .. }), "{error:?}");
}

#[tokio::test]
async fn new_files_and_their_wal_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    store
        .append_audit(AuditEntry::new("pi", AuditKind::Decision))
        .await
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    for companion in ["gate.db-wal", "gate.db-shm"] {
        let companion = dir.path().join(companion);
        assert!(
            companion.exists(),
            "{} should exist in WAL mode",
            companion.display()
        );
        assert_eq!(mode(&companion), 0o600, "{}", companion.display());
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_empty_world_readable_file_is_migrated_and_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&path).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    store
        .insert_request(NewRequest::allowed("pi", "r1", "t", json!({}), "t()"))
        .await
        .unwrap();
    store.close().await.unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        vec!["audit_log", "grants", "requests", "undelivered"]
    );
}

/// The v1 schema exactly as shipped (a fixture: it must never change, so that upgrades from real
/// v1 files stay tested when later versions are added).
const V1_SCHEMA: &str = r#"
CREATE TABLE requests (
    agent_id TEXT NOT NULL, request_id TEXT NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL,
    args_digest TEXT NOT NULL, signature TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'ask')), rule TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'executing', 'executed', 'failed', 'denied', 'expired')),
    created_at INTEGER NOT NULL, expires_at INTEGER, resolved_by TEXT, resolved_at INTEGER,
    result TEXT, error_code INTEGER, error_message TEXT,
    delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)), approver_refs TEXT,
    updated_at INTEGER NOT NULL, PRIMARY KEY (agent_id, request_id)
);
CREATE INDEX requests_pending_expiry ON requests (expires_at) WHERE state = 'pending';
CREATE INDEX requests_undelivered ON requests (agent_id, updated_at)
    WHERE delivered = 0 AND state IN ('executed', 'failed', 'denied', 'expired');
CREATE INDEX requests_resolved ON requests (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX requests_approved ON requests (created_at) WHERE state = 'approved';
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, agent_id TEXT NOT NULL,
    request_id TEXT, kind TEXT NOT NULL, signature TEXT, decision TEXT, rule TEXT, actor TEXT,
    detail TEXT
);
CREATE INDEX audit_at ON audit_log (at);
CREATE INDEX audit_agent ON audit_log (agent_id, request_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
PRAGMA user_version = 1;
"#;

#[tokio::test]
async fn an_existing_v1_file_opens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO requests (agent_id, request_id, tool, args, args_digest, signature, decision, state, \
             created_at, expires_at, approver_refs, updated_at) \
             VALUES ('pi', 'old', 'ha_call_service', '{\"domain\":\"light\"}', 'd', 'sig', 'ask', 'pending', \
             1000, 999999999999999, '{\"chat_id\":1,\"message_id\":2}', 1000)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO audit_log (at, agent_id, request_id, kind, decision, detail) \
             VALUES (1000, 'pi', 'old', 'decision', 'ask', '{\"note\":\"v1\"}')",
            [],
        )
        .unwrap();
        // Finished requests: one whose outcome the agent has received, two it has not
        // (inserted newest first, so that only the update time orders them).
        for (id, delivered, updated) in [("got", 1, 2000), ("later", 0, 4000), ("waiting", 0, 3000)]
        {
            conn.execute(
                "INSERT INTO requests (agent_id, request_id, tool, args, args_digest, signature, \
                 decision, state, created_at, resolved_by, resolved_at, result, delivered, updated_at) \
                 VALUES ('pi', ?1, 't', '{}', 'd', 'sig', 'ask', 'executed', 1500, 'tg:1', 1600, \
                 '{\"ok\":true}', ?2, ?3)",
                rusqlite::params![id, delivered, updated],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path).await.unwrap();
    let record = store.get_request("pi", "old").await.unwrap().unwrap();
    assert_eq!(record.state, RequestState::Pending);
    assert_eq!(record.decision, Decision::Ask);
    assert_eq!(record.args, json!({"domain": "light"}));
    assert_eq!(
        record.approver_refs,
        Some(json!({"chat_id": 1, "message_id": 2}))
    );
    // Delivery marks carry over: what the agent had not received still waits for it.
    assert!(
        store
            .get_request("pi", "got")
            .await
            .unwrap()
            .unwrap()
            .delivered
    );
    let waiting = store.undelivered("pi").await.unwrap();
    let waiting: Vec<&str> = waiting.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(waiting, vec!["waiting", "later"]);
    assert_eq!(store.mark_delivered("pi", ["waiting"]).await.unwrap(), 1);
    assert_eq!(store.undelivered("pi").await.unwrap().len(), 1);
    // Resolved asks keep their order (ties broken by insertion order).
    let resolved = store.recently_resolved_asks(10).await.unwrap();
    let resolved: Vec<&str> = resolved.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(resolved, vec!["waiting", "later", "got"]);
    let audit = store.audit_page(AuditQuery::new()).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].detail, Some(json!({"note": "v1"})));
    // The old request is fully usable.
    assert!(
        store
            .transition(Transition::approve("pi", "old", "tg:1"))
            .await
            .unwrap()
    );
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// Before v7 a request withdrawn by its agent was stored as denied with "Cancelled by the
/// agent"; upgrading makes it `cancelled` (with the cancellation's code) and keeps real
/// denials denied.
#[tokio::test]
async fn requests_cancelled_before_v7_become_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        for (id, message) in [
            ("withdrawn", "Cancelled by the agent"),
            ("refused", "Denied by user"),
        ] {
            conn.execute(
                "INSERT INTO requests (agent_id, request_id, tool, args, args_digest, signature, \
                 decision, state, created_at, resolved_by, resolved_at, error_code, error_message, \
                 delivered, updated_at) \
                 VALUES ('pi', ?1, 't', '{}', 'd', 'sig', 'ask', 'denied', 1500, 'agent:pi', 1600, \
                 -32001, ?2, 0, 1600)",
                rusqlite::params![id, message],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path).await.unwrap();
    let withdrawn = store.get_request("pi", "withdrawn").await.unwrap().unwrap();
    assert_eq!(withdrawn.state, RequestState::Cancelled);
    assert_eq!(withdrawn.error.as_ref().map(|e| e.code), Some(-32007));
    let refused = store.get_request("pi", "refused").await.unwrap().unwrap();
    assert_eq!(refused.state, RequestState::Denied);
    assert_eq!(refused.error.as_ref().map(|e| e.code), Some(-32001));
    // Both outcomes still wait for the agent.
    assert_eq!(store.undelivered("pi").await.unwrap().len(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_file_from_a_newer_gateway_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let error = Store::open(&path).await.unwrap_err();
    match &error {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("newer agent-gate"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[tokio::test]
async fn foreign_and_broken_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT)")
            .unwrap();
    }
    let error = Store::open(&foreign).await.unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("did not create"));

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let error = Store::open(&garbage).await.unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("cannot open database at"),
        "{error}"
    );

    let missing = dir.path().join("no-such-dir").join("gate.db");
    let error = Store::open(&missing).await.unwrap_err();
    assert!(matches!(error, StoreError::CreateFile { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("check that the directory exists"),
        "{error}"
    );
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    store
        .append_audit(AuditEntry::new("pi", AuditKind::Decision).at(Timestamp::from_millis(1)))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert!(
        conn.execute("UPDATE audit_log SET agent_id = 'x'", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    drop(conn);
    assert_eq!(
        store
            .audit_page(AuditQuery::new().agent("pi"))
            .await
            .unwrap()
            .len(),
        1
    );
    // Inserting a request still works afterwards (no lock was left behind).
    assert_eq!(
        store
            .insert_request(NewRequest::allowed("pi", "r", "t", json!({}), "t()"))
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
    store.close().await.unwrap();
}

/// Light traffic: one write at a time, each waiting for its disk sync (`always`) or with a
/// pause after it (`background`), so the sync thread checkpoints between writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_light_traffic_the_sync_thread_checkpoints_and_the_log_stays_small() {
    for (mode, pause) in [
        (SyncMode::Always, None),
        (
            SyncMode::Background,
            Some(std::time::Duration::from_millis(2)),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path().join("gate.db"), StoreOptions::new().sync(mode))
            .await
            .unwrap();
        let padding = "x".repeat(200);
        for i in 0..2000 {
            let id = format!("c{i}");
            insert_allowed(&store, &id, json!({"i": i, "padding": padding})).await;
            if i % 2 == 0 {
                let done = Transition::executed("pi", id.as_str(), json!({"ok": true}));
                assert!(store.transition(done).await.unwrap());
            }
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
        let stats = store.stats();
        // Far more than the writer's own 4,000-page checkpoint: without the sync thread's
        // checkpoints (at 1,000 pages) the log would grow to 4,000 pages (16 MiB) first.
        assert!(stats.wal_frames > 5000, "{mode:?}: {stats:?}");
        let wal = std::fs::metadata(dir.path().join("gate.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal < 8 << 20,
            "{mode:?}: the write-ahead log grew to {wal} bytes: {stats:?}"
        );
        store.close().await.unwrap();
    }
}
