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
