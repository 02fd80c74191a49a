//! The audit log's hash chain on real SQLite files, checked by the real `agent-gate audit
//! verify`: an intact log passes; one byte changed in the file, a row removed, or a hash
//! dropped is found, at the right row.

use std::path::Path;
use std::process::Command;

use agent_gate_gateway::store::{AuditEntry, AuditKind, NewRequest, Store, Transition};
use serde_json::json;

/// A database with a few requests and audit rows; returns the path.
async fn history(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("gate.db");
    let store = Store::open(&path).await.unwrap();
    for i in 0..3 {
        let rid = format!("r{i}");
        store
            .insert_request(
                NewRequest::allowed("pi", rid.as_str(), "ha_get_state", json!({}), "sig").audit(
                    AuditEntry::new("pi", AuditKind::Decision)
                        .request_id(rid.as_str())
                        .actor("policy"),
                ),
            )
            .await
            .unwrap();
        store
            .transition(
                Transition::executed("pi", rid.as_str(), json!({"ok": true}))
                    .audit(AuditEntry::new("pi", AuditKind::Executed).request_id(rid.as_str())),
            )
            .await
            .unwrap();
    }
    store
        .append_audit(
            AuditEntry::new("pi", AuditKind::Other("note".to_owned()))
                .detail(json!({"text": "tamper-me-please"})),
        )
        .await
        .unwrap();
    store
        .append_audit(AuditEntry::new("pi", AuditKind::Other("last".to_owned())))
        .await
        .unwrap();
    store.close().await.unwrap();
    path
}

fn verify(db: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(["audit", "verify", "--db"])
        .arg(db)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn sql(db: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(statements).unwrap();
}

#[tokio::test]
async fn an_intact_log_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path()).await;
    let (code, text) = verify(&db);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("audit log intact: 8 chained rows"), "{text}");
}

#[tokio::test]
async fn one_byte_changed_in_the_file_is_found_at_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path()).await;
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = b"tamper-me-please";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the row is in the main file after close");
    bytes[at + needle.len() - 1] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
    let (code, text) = verify(&db);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BROKEN at row 7"), "{text}");
}

#[tokio::test]
async fn a_removed_row_or_a_dropped_hash_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path()).await;
    sql(
        &db,
        "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE id = 4;",
    );
    let (code, text) = verify(&db);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("BROKEN at row 5: rows 4 to 4 are missing"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path()).await;
    sql(
        &db,
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET hash = NULL WHERE id = 1;",
    );
    let (code, text) = verify(&db);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BROKEN at row 2"), "{text}");

    // Rewriting a row and its hash does not help: the next row's hash covers it.
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path()).await;
    sql(
        &db,
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'someone else', hash = 'x' WHERE id = 1;",
    );
    let (code, text) = verify(&db);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BROKEN at row 1"), "{text}");
}

#[test]
fn a_missing_database_is_exit_2_and_says_why() {
    let (code, text) = verify(Path::new("/nonexistent/gate.db"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("is not a database file"), "{text}");
}

/// A known history at fixed times: an allowed call that executed, a policy denial, an ask a
/// human approved, one denied with a reason, one still pending (another agent).
async fn known_history(dir: &Path) -> std::path::PathBuf {
    use agent_gate_gateway::store::Timestamp;
    let path = dir.join("known.db");
    let store = Store::open(&path).await.unwrap();
    let t = |s: i64| Timestamp::from_millis(1_796_000_000_000 + s * 1000);
    let args = json!({"entity_id": "light.kitchen"});
    store
        .insert_request(
            NewRequest::allowed(
                "pi",
                "allowed-1",
                "ha_get_state",
                args.clone(),
                "ha_get_state(light.kitchen)",
            )
            .created_at(t(0)),
        )
        .await
        .unwrap();
    store
        .transition(Transition::executed("pi", "allowed-1", json!({"state": "on"})).at(t(1)))
        .await
        .unwrap();
    store
        .insert_request(
            NewRequest::denied(
                "pi",
                "denied-1",
                "ha_call_service",
                args.clone(),
                "ha_call_service(lock.unlock, lock.front_door)",
            )
            .rule("ha_call_service(lock.*)")
            .created_at(t(10)),
        )
        .await
        .unwrap();
    for (rid, at) in [("asked-1", 20), ("asked-2", 30)] {
        store
            .insert_request(
                NewRequest::pending(
                    "pi",
                    rid,
                    "ha_call_service",
                    args.clone(),
                    "ha_call_service(light.turn_on, light.kitchen)",
                    t(at + 900),
                )
                .created_at(t(at)),
            )
            .await
            .unwrap();
    }
    store
        .transition(Transition::approve("pi", "asked-1", "telegram:@alice").at(t(25)))
        .await
        .unwrap();
    store
        .transition(Transition::start("pi", "asked-1").at(t(25)))
        .await
        .unwrap();
    store
        .transition(Transition::executed("pi", "asked-1", json!({"result": []})).at(t(26)))
        .await
        .unwrap();
    store
        .transition(
            Transition::deny("pi", "asked-2", "web:bob")
                .error(-32001, "Denied by user: not tonight")
                .at(t(40)),
        )
        .await
        .unwrap();
    store
        .insert_request(
            NewRequest::pending(
                "laptop",
                "waiting-1",
                "ha_call_service",
                args,
                "ha_call_service(light.turn_on, light.kitchen)",
                t(950),
            )
            .created_at(t(50)),
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    path
}

fn export(db: &Path, extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(["audit", "export", "--db"])
        .arg(db)
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn export_of_a_known_history_is_pinned_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let db = known_history(dir.path()).await;
    let (code, lines, err) = export(&db, &[]);
    assert_eq!(code, 0, "{err}");
    for line in lines.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
    }
    insta::assert_snapshot!("export_known_history", lines);

    let (_, only_laptop, _) = export(&db, &["--agent", "laptop"]);
    assert_eq!(only_laptop.lines().count(), 1, "{only_laptop}");
    assert!(only_laptop.contains("waiting-1"));
    // [since, until): 2026-11-30T00:53:30Z is t(10) exactly, t(30) is excluded.
    let (_, window, _) = export(
        &db,
        &[
            "--since",
            "2026-11-30T00:53:30Z",
            "--until",
            "2026-11-30T00:53:50Z",
        ],
    );
    let ids: Vec<String> = window
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["denied-1", "asked-1"], "{window}");
    let (code, _, err) = export(&db, &["--since", "yesterday"]);
    assert_eq!(code, 4);
    assert!(
        err.contains("--since \"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
}

#[tokio::test]
async fn tail_follows_new_rows_as_they_are_committed() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tail.db");
    let store = Store::open(&path).await.unwrap();
    store
        .append_audit(AuditEntry::new("pi", AuditKind::Other("before".to_owned())))
        .await
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(["audit", "tail", "--interval-ms", "20", "--db"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give tail time to find the end before the new rows.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for kind in ["first", "second"] {
        store
            .append_audit(
                AuditEntry::new("pi", AuditKind::Other(kind.to_owned()))
                    .actor("tester")
                    .detail(json!({"n": kind})),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = lines_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("tail prints the new rows");
        let row: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen.push(row);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen[0]["kind"], "first", "{seen:?}");
    assert_eq!(seen[1]["kind"], "second");
    assert_eq!(seen[1]["detail"], json!({"n": "second"}));
    assert_eq!(seen[1]["actor"], "tester");
    assert_eq!(seen[1]["id"], 3);
    assert!(seen[1]["hash"].as_str().is_some_and(|h| h.len() == 64));
    store.close().await.unwrap();
}
