//! Queries of the store (pending vs expired, undelivered results per agent, delivery marks,
//! approver references, audit pages and filters, recent decisions) and group commit.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use agent_gate_gateway::store::{
    AuditEntry, AuditKind, AuditQuery, Decision, NewRequest, RequestState, Store, Timestamp,
    Transition,
};
use serde_json::json;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0.as_millis() + offset_ms)
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("gate.db")).await.unwrap();
    (dir, store)
}

fn ids(records: &[agent_gate_gateway::store::RequestRecord]) -> Vec<&str> {
    records.iter().map(|r| r.request_id.as_str()).collect()
}

#[tokio::test]
async fn pending_requests_split_at_their_expiry() {
    let (_dir, store) = open().await;
    for (id, expires) in [("soon", 1_000), ("later", 5_000), ("gone", -1)] {
        store
            .insert_request(
                NewRequest::pending("pi", id, "t", json!({}), "t()", at(expires))
                    .created_at(at(-10)),
            )
            .await
            .unwrap();
    }
    store
        .insert_request(NewRequest::allowed("pi", "running", "t", json!({}), "t()"))
        .await
        .unwrap();

    assert_eq!(
        ids(&store.pending_unexpired(T0).await.unwrap()),
        vec!["soon", "later"]
    );
    assert_eq!(ids(&store.expired_pending(T0).await.unwrap()), vec!["gone"]);
    // Exactly at the expiry instant a request counts as expired.
    assert_eq!(
        ids(&store.expired_pending(at(1_000)).await.unwrap()),
        vec!["gone", "soon"]
    );
    assert_eq!(
        ids(&store.pending_unexpired(at(1_000)).await.unwrap()),
        vec!["later"]
    );

    // The sweeper expires what it found; decided requests leave both lists.
    assert!(
        store
            .transition(Transition::expire("pi", "gone"))
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(Transition::approve("pi", "later", "tg:1"))
            .await
            .unwrap()
    );
    assert!(store.expired_pending(T0).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.pending_unexpired(T0).await.unwrap()),
        vec!["soon"]
    );
}

#[tokio::test]
async fn undelivered_results_belong_to_their_agent_until_marked() {
    let (_dir, store) = open().await;
    for agent in ["alice", "bob"] {
        for (n, id) in ["r1", "r2", "r3"].into_iter().enumerate() {
            let created = at(i64::try_from(n).unwrap());
            store
                .insert_request(
                    NewRequest::allowed(agent, id, "t", json!({"n": n}), "t()").created_at(created),
                )
                .await
                .unwrap();
            assert!(
                store
                    .transition(
                        Transition::executed(agent, id, json!({"agent": agent})).at(created)
                    )
                    .await
                    .unwrap()
            );
        }
    }
    // Still running and still pending requests have no outcome to deliver.
    store
        .insert_request(NewRequest::allowed(
            "alice",
            "running",
            "t",
            json!({}),
            "t()",
        ))
        .await
        .unwrap();
    store
        .insert_request(NewRequest::pending(
            "alice",
            "asking",
            "t",
            json!({}),
            "t()",
            at(9_000),
        ))
        .await
        .unwrap();
    // A denied one does.
    store
        .insert_request(
            NewRequest::denied("alice", "nope", "t", json!({}), "t()").created_at(at(10)),
        )
        .await
        .unwrap();

    let alice = store.undelivered("alice").await.unwrap();
    assert_eq!(ids(&alice), vec!["r1", "r2", "r3", "nope"]);
    assert!(alice.iter().all(|r| r.agent_id == "alice"));
    assert_eq!(alice[0].result, Some(json!({"agent": "alice"})));
    assert_eq!(alice[3].state, RequestState::Denied);
    assert_eq!(
        ids(&store.undelivered("bob").await.unwrap()),
        vec!["r1", "r2", "r3"]
    );
    assert!(store.undelivered("carol").await.unwrap().is_empty());

    // Marking is per agent: alice cannot mark bob's results, unfinished requests are skipped,
    // and marking twice counts once.
    assert_eq!(
        store
            .mark_delivered("alice", ["r1", "r3", "running", "asking", "unknown"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.mark_delivered("alice", ["r1"]).await.unwrap(), 0);
    assert_eq!(
        ids(&store.undelivered("alice").await.unwrap()),
        vec!["r2", "nope"]
    );
    assert_eq!(
        ids(&store.undelivered("bob").await.unwrap()),
        vec!["r1", "r2", "r3"]
    );
    assert!(
        store
            .get_request("alice", "r1")
            .await
            .unwrap()
            .unwrap()
            .delivered
    );
    assert!(
        !store
            .get_request("bob", "r1")
            .await
            .unwrap()
            .unwrap()
            .delivered
    );
}

#[tokio::test]
async fn approver_references_are_stored_per_request() {
    let (_dir, store) = open().await;
    let refs = json!({"telegram": [{"chat_id": -100123, "message_id": 77}]});
    store
        .insert_request(
            NewRequest::pending("pi", "r1", "t", json!({}), "t()", at(1_000))
                .approver_refs(json!({"telegram": []})),
        )
        .await
        .unwrap();
    assert!(
        store
            .set_approver_refs("pi", "r1", refs.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_approver_refs("pi", "missing", refs.clone())
            .await
            .unwrap()
    );
    let record = store.get_request("pi", "r1").await.unwrap().unwrap();
    assert_eq!(record.approver_refs, Some(refs));
    assert_eq!(store.get_request("pi", "missing").await.unwrap(), None);
}

async fn fill_audit(store: &Store) {
    // 30 records: agents a/b alternate, request ids q0..q9 repeat, kinds cycle, one per ms.
    let kinds = [
        AuditKind::Decision,
        AuditKind::Executed,
        AuditKind::Other("auth_failed".into()),
    ];
    for n in 0..30i64 {
        let agent = if n % 2 == 0 { "a" } else { "b" };
        let kind = kinds[usize::try_from(n % 3).unwrap()].clone();
        let entry = AuditEntry::new(agent, kind)
            .at(at(n))
            .request_id(format!("q{}", n % 10))
            .signature(format!("t(q{n})"))
            .decision(Decision::Allow)
            .rule("allow t(*)")
            .actor("policy")
            .detail(json!({"n": n}));
        store.append_audit(entry).await.unwrap();
    }
}

#[tokio::test]
async fn audit_pages_filter_and_page_newest_first() {
    let (_dir, store) = open().await;
    fill_audit(&store).await;
    let n_of = |records: &[agent_gate_gateway::store::AuditRecord]| -> Vec<i64> {
        records
            .iter()
            .map(|r| r.detail.as_ref().unwrap()["n"].as_i64().unwrap())
            .collect()
    };

    let all = store.audit_page(AuditQuery::new()).await.unwrap();
    assert_eq!(n_of(&all), (0..30).rev().collect::<Vec<_>>());
    let first = &all[29];
    assert_eq!(first.agent_id, "a");
    assert_eq!(first.request_id.as_deref(), Some("q0"));
    assert_eq!(first.kind, AuditKind::Decision);
    assert_eq!(first.signature.as_deref(), Some("t(q0)"));
    assert_eq!(first.decision, Some(Decision::Allow));
    assert_eq!(first.rule.as_deref(), Some("allow t(*)"));
    assert_eq!(first.actor.as_deref(), Some("policy"));
    assert_eq!(first.at, at(0));

    let agent_b = store
        .audit_page(AuditQuery::new().agent("b"))
        .await
        .unwrap();
    assert_eq!(
        n_of(&agent_b),
        (0..30).rev().filter(|n| n % 2 == 1).collect::<Vec<_>>()
    );

    let q3 = store
        .audit_page(AuditQuery::new().request_id("q3"))
        .await
        .unwrap();
    assert_eq!(n_of(&q3), vec![23, 13, 3]);
    let q3_of_a = store
        .audit_page(AuditQuery::new().agent("a").request_id("q3"))
        .await
        .unwrap();
    assert!(q3_of_a.is_empty());

    let custom = store
        .audit_page(AuditQuery::new().kind(AuditKind::Other("auth_failed".into())))
        .await
        .unwrap();
    assert_eq!(n_of(&custom), vec![29, 26, 23, 20, 17, 14, 11, 8, 5, 2]);
    assert!(
        custom
            .iter()
            .all(|r| r.kind == AuditKind::Other("auth_failed".into()))
    );

    // since is inclusive, until exclusive.
    let window = store
        .audit_page(AuditQuery::new().since(at(10)).until(at(14)))
        .await
        .unwrap();
    assert_eq!(n_of(&window), vec![13, 12, 11, 10]);

    let offset_page = store
        .audit_page(AuditQuery::new().limit(5).offset(5))
        .await
        .unwrap();
    assert_eq!(n_of(&offset_page), vec![24, 23, 22, 21, 20]);

    // Keyset paging visits every record once.
    let mut seen = Vec::new();
    let mut query = AuditQuery::new().agent("a").limit(4);
    loop {
        let page = store.audit_page(query.clone()).await.unwrap();
        let Some(last) = page.last() else { break };
        query = query.before_id(last.id);
        seen.extend(n_of(&page));
    }
    assert_eq!(
        seen,
        (0..30).rev().filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );

    // Ids only grow.
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
}

#[tokio::test]
async fn recently_resolved_asks_are_human_decisions_newest_first() {
    let (_dir, store) = open().await;
    let ask = |id: &str, created: i64| {
        NewRequest::pending("pi", id, "t", json!({}), "t()", at(9_000)).created_at(at(created))
    };
    // Still pending: not resolved.
    store.insert_request(ask("asking", 0)).await.unwrap();
    // Decided by the policy alone: not asks.
    store
        .insert_request(NewRequest::denied("pi", "denied", "t", json!({}), "t()").created_at(at(1)))
        .await
        .unwrap();
    store
        .insert_request(NewRequest::allowed("pi", "done", "t", json!({}), "t()").created_at(at(2)))
        .await
        .unwrap();
    assert!(
        store
            .transition(Transition::executed("pi", "done", json!({})).at(at(7)))
            .await
            .unwrap()
    );
    // Asks resolved by a human: approved at 4, refused at 6, an older one approved at 3.
    for (id, created) in [("approved", 3), ("refused", 5), ("older", 1)] {
        store.insert_request(ask(id, created)).await.unwrap();
    }
    for transition in [
        Transition::approve("pi", "approved", "tg:1").at(at(4)),
        Transition::deny("pi", "refused", "web:alice").at(at(6)),
        Transition::approve("pi", "older", "tg:1").at(at(3)),
    ] {
        assert!(store.transition(transition).await.unwrap());
    }

    let recent = store.recently_resolved_asks(10).await.unwrap();
    assert_eq!(ids(&recent), vec!["refused", "approved", "older"]);
    assert_eq!(recent[1].resolved_at, Some(at(4)));
    assert_eq!(
        ids(&store.recently_resolved_asks(2).await.unwrap()),
        vec!["refused", "approved"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writes_all_land() {
    let (_dir, store) = open().await;
    let mut tasks = Vec::new();
    for task in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..10 {
                let id = store
                    .append_audit(
                        AuditEntry::new(format!("agent-{task}"), AuditKind::Decision)
                            .detail(json!({"i": i})),
                    )
                    .await
                    .unwrap();
                ids.push(id);
            }
            ids
        }));
    }
    let mut all_ids = Vec::new();
    for task in tasks {
        all_ids.extend(task.await.unwrap());
    }
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 640);
    let stored = store
        .audit_page(AuditQuery::new().limit(1000))
        .await
        .unwrap();
    assert_eq!(stored.len(), 640);
    let stats = store.stats();
    assert_eq!(stats.writes, 640);
    assert!(stats.transactions <= 640);
    // Every transaction was made durable by a sync, and a sync can cover several.
    assert!(
        stats.syncs >= 1 && stats.syncs <= stats.transactions,
        "{stats:?}"
    );
    store.close().await.unwrap();
}

/// A fresh store, and another connection to its database holding the write lock (roll it back
/// to release it).
async fn open_locked() -> (tempfile::TempDir, Store, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    (dir, store, blocker)
}

#[tokio::test]
async fn concurrent_writes_share_transactions() {
    // Another connection holds the write lock, so the writer cannot commit anything yet.
    let (_dir, store, blocker) = open_locked().await;
    let before = store.stats();

    let writes = (0..200).map(|n| {
        let store = store.clone();
        async move {
            store
                .insert_request(
                    NewRequest::allowed("pi", format!("r{n}"), "t", json!({"n": n}), "t()").audit(
                        AuditEntry::new("pi", AuditKind::Decision).request_id(format!("r{n}")),
                    ),
                )
                .await
        }
    });
    let mut all = pin!(futures_util::future::join_all(writes));
    // One poll enqueues all 200 writes (none can be answered while the lock is held).
    std::future::poll_fn(|cx| {
        assert!(all.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    blocker.execute_batch("ROLLBACK").unwrap();
    for outcome in all.await {
        outcome.unwrap();
    }

    let after = store.stats();
    assert_eq!(after.writes - before.writes, 200);
    // At most: one transaction for a write the writer took before the others were queued, one
    // for the rest.
    assert!(
        after.transactions - before.transactions <= 2,
        "200 queued writes took {} transactions",
        after.transactions - before.transactions
    );
    assert!(after.largest_batch >= 100);
    // Each commit writes every page it changed once, however many writes changed it: 200
    // requests with their audit records fill a few dozen pages, not a page per write.
    let pages = after.wal_frames - before.wal_frames;
    assert!((10..100).contains(&pages), "{pages} pages written");
    assert_eq!(store.undelivered("pi").await.unwrap().len(), 0);
    assert_eq!(
        store
            .audit_page(AuditQuery::new().agent("pi").limit(1000))
            .await
            .unwrap()
            .len(),
        200
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_write_finding_the_writer_idle_is_committed_by_its_caller() {
    let (_dir, store) = open().await;
    let before = store.stats();
    for n in 0..20 {
        let rid = format!("r{n}");
        store
            .insert_request(
                NewRequest::allowed("pi", rid.as_str(), "t", json!({"n": n}), "t()")
                    .audit(AuditEntry::new("pi", AuditKind::Decision).request_id(rid.as_str())),
            )
            .await
            .unwrap();
        let won = store
            .transition(Transition::executed("pi", rid.as_str(), json!({"ok": n})))
            .await
            .unwrap();
        assert!(won);
    }
    let after = store.stats();
    // One at a time, nothing queued: every write was its own transaction, committed inline.
    assert_eq!(after.writes - before.writes, 40);
    assert_eq!(after.transactions - before.transactions, 40);
    assert_eq!(after.inline_commits - before.inline_commits, 40);
    let stored = store.get_request("pi", "r19").await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Executed);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_write_waiting_for_another_connection_does_not_block_the_runtime() {
    // Another connection (another process, say) holds the write lock.
    let (_dir, store, blocker) = open_locked().await;
    let before = store.stats();

    let write = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append_audit(AuditEntry::new("pi", AuditKind::Decision).request_id("r1"))
                .await
        }
    });
    // The runtime's only thread stays free while the write waits for the lock: this timer
    // fires, and the write has not finished.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!write.is_finished());
    blocker.execute_batch("ROLLBACK").unwrap();
    write.await.unwrap().unwrap();

    let after = store.stats();
    assert_eq!(after.writes - before.writes, 1);
    // The writer thread, not the caller, waited and committed it.
    assert_eq!(after.inline_commits, before.inline_commits);
    store.close().await.unwrap();
}

#[tokio::test]
async fn writes_with_other_calls_in_progress_go_to_the_writer_thread() {
    let (_dir, store) = open().await;
    let audit = |n: u32| AuditEntry::new("pi", AuditKind::Decision).request_id(format!("r{n}"));
    let before = store.stats();
    let first = store.call_in_progress();
    store.append_audit(audit(0)).await.unwrap();
    let alone = store.stats();
    // One call in progress: its write commits inline.
    assert_eq!(alone.inline_commits - before.inline_commits, 1);

    let second = store.call_in_progress();
    for n in 1..4 {
        store.append_audit(audit(n)).await.unwrap();
    }
    let company = store.stats();
    // Two calls in progress: their writes are for the writer thread to share.
    assert_eq!(company.writes - alone.writes, 3);
    assert_eq!(company.inline_commits, alone.inline_commits);
    drop((first, second));
    store.close().await.unwrap();
}
