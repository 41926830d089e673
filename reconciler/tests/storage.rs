//! The state store's one storage suite: every case runs against a fresh SQLite file and a fresh PostgreSQL database, and must give the same answers on both.
//!
//! A case is a function of a [`Store`] (a fresh, not yet opened location) that opens it as often
//! as it needs: each [`Store::db`] is a connection of its own, as another process or replica
//! would have. `sqlite_storage_suite` and `postgres_storage_suite` run every case and name the
//! ones that failed; `NOVACRON_STORAGE_CASE=<name>` runs one. The PostgreSQL suite shares one
//! server (a database per case) and stops it when it ends; the restart case has a server of its own.

#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use novacron_reconcile::state::{
    ApprovalError, AuditAction, AuditEntry, DriftRecord, Fence, JournalEntry, JournalOutcome, JournalState, PG_SCHEMA_VERSION, PendingPlan, PlanRecord,
    RolloutIntent, RunRecord, StateDb, StateError, StateLocation, StoredRepo, VerifyOutcome, WakeListener, approve, approve_plan, audit_append, audit_list,
    audit_page, audit_verify, event_seq, forget_review_comment, heartbeat, hold_plan, journal_finish, journal_intent, journal_open_intents, last_wakeup,
    leases, open_rollouts, pending_approvals, pending_plans, plan_file, record_drifts, record_findings, record_review, record_run, register_replica,
    release_lease, remember_delivery, replicas, resolve_drift, resolve_plan, retire_replica, review_comment, rolled_out_revision, rollout_finish,
    rollout_intent, rollout_started, run_history, save_repo, set_event_seq, set_rolled_out, stored_repo, stored_repos, supersede_plans, try_acquire, wake,
    wakeups_since,
};
use novacron_schemas::Severity;
use serde_json::json;
use support::postgres::PgServer;

/// How long a just-started server may take to accept the suite's own admin connections.
const PATIENCE: Duration = Duration::from_secs(10);
/// A lease or heartbeat that outlives any case.
const TTL: u64 = 60_000;
/// What a racing thread waits between its writes: without it, a SQLite connection takes the
/// write lock back before the others wake from their busy handler's sleep, and nothing interleaves.
const TURN: Duration = Duration::from_millis(1);

/// A fresh state location of one engine, not opened yet.
struct Store {
    location: StateLocation,
    /// The PostgreSQL URL (for the suite's own admin connection) and the server's port.
    postgres: Option<(String, u16)>,
    _dir: Option<tempfile::TempDir>,
}

impl Store {
    fn sqlite() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        Store { location: StateLocation::File(dir.path().join("state.db")), postgres: None, _dir: Some(dir) }
    }

    fn postgres(server: &PgServer, case: &str) -> Store {
        let url = server.create_database(&format!("case_{case}"));
        Store { location: url.parse().expect("a postgres:// URL"), postgres: Some((url, server.port())), _dir: None }
    }

    fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A connection of its own (SQLite: the same file opened again), migrated.
    fn db(&self) -> StateDb {
        self.try_db().unwrap_or_else(|e| panic!("connect to {}: {e}", self.location))
    }

    fn try_db(&self) -> Result<StateDb, StateError> {
        StateDb::connect(&self.location)
    }

    /// A plain client of the PostgreSQL database, beside the state store.
    fn admin(&self) -> postgres::Client {
        let (url, _) = self.postgres.as_ref().expect("a PostgreSQL case");
        support::postgres::connect(url, PATIENCE).expect("admin connection")
    }
}

/// A storage case: panics on the first thing that is wrong.
type Case = fn(&Store);

/// The cases both engines run.
const CASES: &[(&str, Case)] = &[
    ("drifts", drifts_are_recorded_approved_once_and_resolved),
    ("plans", plans_wait_are_approved_once_superseded_and_keep_their_bytes),
    ("rollouts", rollouts_are_journalled_and_revisions_remembered),
    ("journal", sync_intents_stay_open_until_finished),
    ("audit", the_audit_log_pages_and_verifies),
    ("audit_concurrent_appends", concurrent_appends_from_four_connections_make_one_chain),
    ("audit_concurrent_approvals", approvals_from_four_connections_interleave_into_one_chain),
    ("serve_tables", serve_positions_deliveries_runs_and_reviews_round_trip),
    ("leases", leases_are_taken_renewed_released_and_their_token_grows),
    ("lease_race", three_connections_racing_for_twenty_leases_get_one_owner_each),
    ("fencing", fenced_writes_are_refused_once_the_lease_moved_on),
    ("wakeups", wakeups_are_read_in_order_and_announced_on_postgres),
];

/// The cases only PostgreSQL has: migrations several replicas share, and connection errors.
const POSTGRES_CASES: &[(&str, Case)] = &[
    ("migrations_idempotent", connecting_twice_migrates_once),
    ("migrations_concurrent", three_replicas_starting_together_on_a_fresh_database_all_connect),
    ("newer_schema", a_database_of_a_newer_release_is_refused),
    ("unknown_role", a_refused_login_is_a_clear_error_without_the_password),
];

#[test]
fn sqlite_storage_suite() {
    run_suite("sqlite", CASES, |_| Store::sqlite());
}

#[test]
fn postgres_storage_suite() {
    let Some(server) = PgServer::start_or_skip("postgres_storage_suite") else { return };
    let cases: Vec<(&str, Case)> = CASES.iter().chain(POSTGRES_CASES).copied().collect();
    run_suite("postgres", &cases, |case| Store::postgres(&server, case));
}

/// Runs each case on a fresh store, one after the other, and fails naming every case that failed.
fn run_suite(engine: &str, cases: &[(&str, Case)], fresh: impl Fn(&str) -> Store) {
    let only = std::env::var("NOVACRON_STORAGE_CASE").ok().filter(|c| !c.is_empty());
    let suite = Instant::now();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, case) in cases.iter().filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name)) {
        ran += 1;
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| case(&fresh(name))));
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => eprintln!("{engine} {name}: ok in {ms} ms"),
            Err(panic) => {
                let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                eprintln!("{engine} {name}: FAILED in {ms} ms");
                failed.push(format!("{name}: {message}"));
            }
        }
    }
    eprintln!("{engine}: {ran} storage cases in {} ms", suite.elapsed().as_millis());
    if let Some(only) = &only {
        let known = CASES.iter().chain(POSTGRES_CASES).any(|(name, _)| name == only);
        assert!(known, "NOVACRON_STORAGE_CASE={only:?} names no storage case");
    }
    assert!(failed.is_empty(), "{engine}: {} of {ran} storage cases failed:\n{}", failed.len(), failed.join("\n"));
}

/// Runs `f` on a thread per item, all released together, and returns what each returned (a
/// panic in one is raised here with its own message).
fn in_parallel<I: Sync, T: Send>(items: &[I], f: impl Fn(usize, &I) -> T + Sync) -> Vec<T> {
    let start = Barrier::new(items.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let (start, f) = (&start, &f);
                s.spawn(move || {
                    start.wait();
                    f(i, item)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

fn drift(id: &str, severity: Severity) -> DriftRecord {
    DriftRecord {
        id: id.into(),
        address: format!("novacron_vm.{id}"),
        kind: "novacron_vm".into(),
        object_id: format!("vm-{id}"),
        severity,
        desired_hash: format!("sha256:desired-{id}"),
        live_hash: format!("sha256:live-{id}"),
    }
}

fn entry(actor: &str, action: AuditAction, subject: &str) -> AuditEntry {
    AuditEntry { actor: actor.into(), action, repo: "infra".into(), subject: subject.into(), detail: json!({}) }
}

fn plan(id: &str, repo: &str, path: &str, revision: &str, bytes: &[u8]) -> PlanRecord {
    PlanRecord {
        id: id.into(),
        repo: repo.into(),
        path: path.into(),
        revision: revision.into(),
        severity: Severity::High,
        summary: "0 to add, 1 to change, 0 to destroy: 1 high".into(),
        changes: json!([{"address": "novacron_vm.web", "severity": "high"}]),
        plan: bytes.to_vec(),
    }
}

fn drift_ids(db: &StateDb, repo: Option<&str>) -> Vec<String> {
    pending_approvals(db, repo).expect("pending approvals").into_iter().map(|d| d.id).collect()
}

fn plan_ids(db: &StateDb, repo: Option<&str>) -> Vec<String> {
    pending_plans(db, repo).expect("pending plans").into_iter().map(|p| p.id).collect()
}

fn audit_actions(db: &StateDb) -> Vec<String> {
    audit_list(db, None).expect("audit list").into_iter().map(|r| r.action).collect()
}

fn drifts_are_recorded_approved_once_and_resolved(store: &Store) {
    let db = store.db();
    let (d1, d2, d3) = (drift("d1", Severity::Critical), drift("d2", Severity::High), drift("d3", Severity::Low));
    assert_eq!(record_drifts(&db, "infra", &[d1.clone(), d2.clone()]).expect("record"), [d1.clone(), d2.clone()], "both are new");
    assert_eq!(record_drifts(&db, "infra", &[d1.clone(), d2.clone()]).expect("again"), [], "seen again: nothing new");
    assert_eq!(record_drifts(&db, "apps", std::slice::from_ref(&d3)).expect("other repo"), std::slice::from_ref(&d3));
    assert_eq!(drift_ids(&db, None), ["d1", "d2", "d3"]);
    assert_eq!(drift_ids(&db, Some("apps")), ["d3"]);
    assert_eq!(drift_ids(&db, Some("nowhere")), Vec::<String>::new());
    let first = &pending_approvals(&db, Some("infra")).expect("pending")[0];
    assert_eq!(
        (first.repo.as_str(), first.address.as_str(), first.object_id.as_str(), first.severity, first.approved_by.as_deref()),
        ("infra", "novacron_vm.d1", "vm-d1", Severity::Critical, None)
    );
    assert!(!first.created_at.is_empty());

    // d2 is gone from infra: resolved; apps' drift is not touched by infra's sync.
    assert_eq!(record_drifts(&db, "infra", std::slice::from_ref(&d1)).expect("d2 gone"), []);
    assert_eq!(drift_ids(&db, Some("infra")), ["d1"]);
    assert_eq!(drift_ids(&db, Some("apps")), ["d3"]);
    // Seen again the same way: open again, but not new.
    assert_eq!(record_drifts(&db, "infra", &[d1.clone(), d2.clone()]).expect("d2 back"), []);
    assert_eq!(drift_ids(&db, Some("infra")), ["d1", "d2"]);

    let approved = approve(&db, "d1", "alice").expect("approve");
    assert_eq!(approved.approved_by.as_deref(), Some("alice"));
    assert!(approved.approved_at.is_some());
    assert_eq!(approve(&db, "d1", "bob").expect("approve twice").approved_by.as_deref(), Some("alice"), "the first approval stands");
    assert_eq!(pending_approvals(&db, Some("infra")).expect("pending")[0].approved_by.as_deref(), Some("alice"));
    match approve(&db, "nope", "alice") {
        Err(ApprovalError::UnknownId { id }) => assert_eq!(id, "nope"),
        other => panic!("approving an unknown id: {other:?}"),
    }
    let approvals: Vec<_> = audit_list(&db, None).expect("audit").into_iter().filter(|r| r.action == "approve").collect();
    assert_eq!(approvals.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(), ["alice", "bob"], "every approval call is audited");
    assert!(approvals.iter().all(|r| r.detail["approved_by"] == "alice" && r.detail["drift_id"] == "d1" && r.subject == "novacron_vm.d1"));

    resolve_drift(&db, "d1", "reverted").expect("resolve");
    assert_eq!(drift_ids(&db, Some("infra")), ["d2"]);
    assert!(matches!(approve(&db, "d1", "carol"), Err(ApprovalError::UnknownId { .. })), "a resolved drift awaits no approval");

    let finding = |id: &str| (id.to_string(), format!("novacron_vm.{id}"), "unmanaged".to_string());
    assert_eq!(record_findings(&db, "infra", &[finding("f1"), finding("f2")]).expect("findings"), [finding("f1"), finding("f2")]);
    assert_eq!(record_findings(&db, "infra", &[finding("f1"), finding("f2"), finding("f3")]).expect("again"), [finding("f3")]);
    assert_eq!(drift_ids(&db, None), ["d2", "d3"], "findings await no approval");
    assert!(audit_verify(&db).expect("verify").ok);
}

fn plans_wait_are_approved_once_superseded_and_keep_their_bytes(store: &Store) {
    let db = store.db();
    // A saved plan is a zip: NUL, 0xff and invalid UTF-8 sequences must survive as they are.
    let bytes: Vec<u8> = [0x00, 0xff, 0xc3, 0x28, 0x80, 0x00].into_iter().chain(0..=255u8).chain(*b"PK\x03\x04\xfe").collect();
    let p1 = plan("plan-1", "infra", "prod", "rev1", &bytes);
    assert!(hold_plan(&db, &p1, "awaiting approval", entry("svc", AuditAction::Plan, "prod")).expect("hold"));
    assert!(!hold_plan(&db, &p1, "still awaiting approval", entry("svc", AuditAction::Plan, "prod")).expect("hold again"), "pending already");
    assert_eq!(audit_actions(&db), ["plan"], "a repeated hold makes no audit entry");
    assert_eq!(plan_file(&db, "plan-1").expect("plan file"), Some(bytes.clone()));
    assert_eq!(plan_file(&db, "plan-404").expect("no such plan"), None);
    let pending = pending_plans(&db, None).expect("pending");
    let expected = PendingPlan {
        id: "plan-1".into(),
        repo: "infra".into(),
        path: "prod".into(),
        revision: "rev1".into(),
        severity: Severity::High,
        summary: p1.summary.clone(),
        reason: "still awaiting approval".into(),
        created_at: pending[0].created_at.clone(),
        approved_by: None,
        approved_at: None,
    };
    assert_eq!(pending, [expected]);

    let p9 = plan("plan-9", "apps", "", "rev9", b"");
    assert!(hold_plan(&db, &p9, "critical", entry("svc", AuditAction::Plan, "")).expect("hold apps"));
    assert_eq!(plan_file(&db, "plan-9").expect("empty plan file"), Some(Vec::new()));
    assert_eq!(plan_ids(&db, Some("apps")), ["plan-9"]);
    assert_eq!(plan_ids(&db, Some("infra")), ["plan-1"]);
    assert_eq!(plan_ids(&db, None).len(), 2);

    let approved = approve_plan(&db, "plan-1", "alice").expect("approve").expect("pending");
    assert_eq!((approved.approved_by.as_deref(), approved.approved_at.is_some()), (Some("alice"), true));
    assert_eq!(approve_plan(&db, "plan-1", "bob").expect("approve twice").expect("pending").approved_by.as_deref(), Some("alice"), "the first stands");
    assert_eq!(approve_plan(&db, "plan-404", "bob").expect("approve unknown"), None);

    // A newer revision of the same path supersedes the older plan, approved or not.
    let bytes2 = vec![0xff; 3];
    assert!(hold_plan(&db, &plan("plan-2", "infra", "prod", "rev2", &bytes2), "awaiting approval", entry("svc", AuditAction::Plan, "prod")).expect("newer"));
    assert_eq!(plan_ids(&db, Some("infra")), ["plan-2"]);
    assert_eq!(plan_file(&db, "plan-1").expect("superseded"), None, "a superseded plan is not applied");
    assert_eq!(plan_file(&db, "plan-2").expect("newer file"), Some(bytes2));
    assert_eq!(approve_plan(&db, "plan-1", "alice").expect("approve superseded"), None);

    resolve_plan(&db, "plan-2", "applied", Some(entry("svc", AuditAction::Apply, "prod"))).expect("resolve");
    assert_eq!(plan_ids(&db, Some("infra")), Vec::<String>::new());
    resolve_plan(&db, "plan-404", "applied", None).expect("resolving an unknown plan is a no-op");

    assert!(hold_plan(&db, &plan("plan-3", "infra", "stage", "rev3", b"x"), "awaiting", entry("svc", AuditAction::Plan, "stage")).expect("stage"));
    supersede_plans(&db, "infra", "stage").expect("supersede");
    assert_eq!(plan_ids(&db, Some("infra")), Vec::<String>::new());
    assert_eq!(plan_ids(&db, Some("apps")), ["plan-9"], "another repository's plans are not superseded");

    // Planned again after being superseded: it waits again, its old approval gone.
    assert!(hold_plan(&db, &p1, "awaiting approval", entry("svc", AuditAction::Plan, "prod")).expect("planned again"));
    let again = pending_plans(&db, Some("infra")).expect("pending");
    assert_eq!((again.len(), again[0].id.as_str(), again[0].approved_by.as_deref()), (1, "plan-1", None));
    assert_eq!(plan_file(&db, "plan-1").expect("file again"), Some(bytes));
    assert_eq!(audit_actions(&db), ["plan", "plan", "approve", "approve", "plan", "apply", "plan", "plan"]);
    assert!(audit_verify(&db).expect("verify").ok);
}

fn rollouts_are_journalled_and_revisions_remembered(store: &Store) {
    let db = store.db();
    assert_eq!(rolled_out_revision(&db, "infra", "prod").expect("none yet"), None);
    set_rolled_out(&db, "infra", "prod", "rev1").expect("set");
    set_rolled_out(&db, "infra", "prod", "rev2").expect("set again");
    set_rolled_out(&db, "infra", "stage", "rev1").expect("other path");
    assert_eq!(rolled_out_revision(&db, "infra", "prod").expect("read").as_deref(), Some("rev2"));
    assert_eq!(rolled_out_revision(&db, "infra", "stage").expect("read").as_deref(), Some("rev1"));
    assert_eq!(rolled_out_revision(&db, "apps", "prod").expect("read"), None);

    let apply = rollout_intent(&db, "infra", "prod", "apply", Some("plan-2"), entry("svc", AuditAction::Apply, "prod")).expect("intent");
    let refresh = rollout_intent(&db, "infra", "prod", "refresh", None, entry("svc", AuditAction::Refresh, "prod")).expect("intent");
    assert!(refresh > apply, "{refresh} after {apply}");
    rollout_started(&db, apply, 4_242).expect("pid");
    let open = open_rollouts(&db, "infra").expect("open");
    let started_at = |i: usize| open[i].started_at.clone();
    assert_eq!(
        open,
        [
            RolloutIntent {
                seq: apply,
                repo: "infra".into(),
                path: "prod".into(),
                operation: "apply".into(),
                plan_id: Some("plan-2".into()),
                pid: Some(4_242),
                host: Some(novacron_reconcile::state::host_id()),
                started_at: started_at(0)
            },
            RolloutIntent {
                seq: refresh,
                repo: "infra".into(),
                path: "prod".into(),
                operation: "refresh".into(),
                plan_id: None,
                pid: None,
                host: None,
                started_at: started_at(1)
            },
        ]
    );
    assert_eq!(open_rollouts(&db, "apps").expect("other repo"), []);
    rollout_finish(&db, apply, "applied", Some(entry("svc", AuditAction::Apply, "prod"))).expect("finish");
    assert_eq!(open_rollouts(&db, "infra").expect("open").iter().map(|r| r.seq).collect::<Vec<_>>(), [refresh]);
    rollout_finish(&db, refresh, "failed", None).expect("finish");
    assert_eq!(open_rollouts(&db, "infra").expect("open"), []);
    assert_eq!(audit_actions(&db), ["apply", "refresh", "apply"]);
    assert!(audit_verify(&db).expect("verify").ok);
}

fn sync_intents_stay_open_until_finished(store: &Store) {
    let db = store.db();
    let intent = |drift_id: &str, attributes: &[&str]| JournalEntry {
        seq: 0,
        drift_id: drift_id.into(),
        repo: "infra".into(),
        address: format!("novacron_vm.{drift_id}"),
        kind: "novacron_vm".into(),
        object_id: format!("vm-{drift_id}"),
        etag: "W/\"3\"".into(),
        attributes: attributes.iter().map(|a| a.to_string()).collect(),
        state: JournalState::Intent,
        outcome: None,
    };
    let audit = |phase: &str| AuditEntry { detail: json!({"phase": phase}), ..entry("svc", AuditAction::Sync, "novacron_vm.web") };
    let (a, b) = (intent("a1", &["metadata", "labels"]), intent("b2", &["spec \"quoted\" ü"]));
    let seq_a = journal_intent(&db, &a, audit("intent")).expect("intent a");
    let seq_b = journal_intent(&db, &b, audit("intent")).expect("intent b");
    assert!(seq_b > seq_a);
    assert_eq!(journal_open_intents(&db, "infra").expect("open"), [JournalEntry { seq: seq_a, ..a.clone() }, JournalEntry { seq: seq_b, ..b.clone() }]);
    assert_eq!(journal_open_intents(&db, "apps").expect("other repo"), []);
    journal_finish(&db, seq_a, JournalOutcome::Applied, Some(audit("done"))).expect("finish a");
    assert_eq!(journal_open_intents(&db, "infra").expect("open"), [JournalEntry { seq: seq_b, ..b }]);
    journal_finish(&db, seq_b, JournalOutcome::Stale, None).expect("finish b");
    assert_eq!(journal_open_intents(&db, "infra").expect("open"), []);
    let records = audit_list(&db, None).expect("audit");
    assert_eq!(
        records.iter().map(|r| (r.detail["phase"].as_str(), r.detail["journal"].as_u64())).collect::<Vec<_>>(),
        [(Some("intent"), Some(seq_a)), (Some("intent"), Some(seq_b)), (Some("done"), Some(seq_a))],
        "each audit entry names its journal row"
    );
}

fn the_audit_log_pages_and_verifies(store: &Store) {
    let db = store.db();
    assert_eq!(audit_verify(&db).expect("verify empty"), VerifyOutcome { ok: true, entries: 0, first_bad: None });
    assert_eq!(audit_page(&db, 0, 10).expect("empty page"), (vec![], 0));
    let detail = json!({"n": 1, "nested": {"z": [1, 2, {"k": null}], "a": "ü \"quoted\" \\ line\nbreak"}, "big": 9_007_199_254_740_993u64});
    let first = audit_append(&db, AuditEntry { detail: detail.clone(), ..entry("alice ü", AuditAction::Detect, "novacron_vm.web") }).expect("append");
    assert_eq!((first.seq, first.prev_hash.as_str()), (1, "0000000000000000000000000000000000000000000000000000000000000000"));
    let mut written = vec![first];
    for (n, action) in (2..=5).zip([AuditAction::Sync, AuditAction::SyncConflict, AuditAction::PullRequest, AuditAction::RolloutFailed]) {
        let record = audit_append(&db, entry("svc", action, &format!("s{n}"))).expect("append");
        assert_eq!((record.seq, record.prev_hash.as_str()), (n, written.last().expect("previous").hash.as_str()), "linked to the entry before");
        written.push(record);
    }
    assert_eq!(audit_list(&db, None).expect("all"), written, "read back as written, detail included");
    assert_eq!(audit_list(&db, Some(2)).expect("newest two"), written[3..], "the newest, oldest first");
    assert_eq!(audit_list(&db, Some(0)).expect("none"), []);
    let newest_first: Vec<_> = written.iter().rev().cloned().collect();
    assert_eq!(audit_page(&db, 0, 2).expect("page 1"), (newest_first[..2].to_vec(), 5));
    assert_eq!(audit_page(&db, 2, 2).expect("page 2"), (newest_first[2..4].to_vec(), 5));
    assert_eq!(audit_page(&db, 4, 2).expect("page 3"), (newest_first[4..].to_vec(), 5));
    assert_eq!(audit_page(&db, 9, 2).expect("past the end"), (vec![], 5));
    assert_eq!(audit_verify(&db).expect("verify"), VerifyOutcome { ok: true, entries: 5, first_bad: None });
    assert_eq!(audit_verify(&store.db()).expect("verify from another connection"), VerifyOutcome { ok: true, entries: 5, first_bad: None });
}

/// Checks the chain after a concurrent run: verified, seqs 1..=`total`, and each thread's
/// entries (`detail.at` is `<thread>-<i>`) in the order that thread wrote them.
fn assert_one_chain(db: &StateDb, total: u64) -> Vec<novacron_reconcile::state::AuditRecord> {
    assert_eq!(audit_verify(db).expect("verify"), VerifyOutcome { ok: true, entries: total, first_bad: None });
    let records = audit_list(db, None).expect("list");
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    let mut by_thread: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (thread, i) in records.iter().filter_map(|r| r.detail["at"].as_str()?.split_once('-')) {
        by_thread.entry(thread.to_string()).or_default().push(i.parse().expect("detail.at is <thread>-<i>"));
    }
    for (thread, order) in &by_thread {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{thread}'s entries out of order: {order:?}");
    }
    let writer = |r: &novacron_reconcile::state::AuditRecord| r.actor.split('-').next().unwrap_or_default().to_string();
    let switches = records.windows(2).filter(|w| writer(&w[0]) != writer(&w[1])).count();
    eprintln!("audit chain of {total}: the writer changed {switches} times");
    records
}

fn concurrent_appends_from_four_connections_make_one_chain(store: &Store) {
    let dbs: Vec<StateDb> = (0..4).map(|_| store.db()).collect();
    in_parallel(&dbs, |t, db| {
        for i in 0..25 {
            let at = format!("t{t}-{i}");
            audit_append(db, AuditEntry { detail: json!({"at": at}), ..entry(&format!("t{t}"), AuditAction::Sync, &at) })
                .unwrap_or_else(|e| panic!("append {at}: {e}"));
            std::thread::sleep(TURN);
        }
    });
    let records = assert_one_chain(&store.db(), 100);
    let mut per_actor: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        *per_actor.entry(r.actor.as_str()).or_default() += 1;
    }
    assert_eq!(per_actor, HashMap::from([("t0", 25), ("t1", 25), ("t2", 25), ("t3", 25)]));
}

fn approvals_from_four_connections_interleave_into_one_chain(store: &Store) {
    let setup = store.db();
    let drifts: Vec<DriftRecord> = (0..4).map(|t| drift(&format!("d{t}"), Severity::Critical)).collect();
    assert_eq!(record_drifts(&setup, "infra", &drifts).expect("drifts").len(), 4);
    for t in 0..4 {
        let p = plan(&format!("plan-{t}"), "infra", &format!("p{t}"), "rev", &[t]);
        assert!(
            hold_plan(&setup, &p, "awaiting", AuditEntry { detail: json!({"at": format!("setup-{t}")}), ..entry("svc", AuditAction::Plan, "") }).expect("hold")
        );
    }
    let dbs: Vec<StateDb> = (0..4).map(|_| store.db()).collect();
    // Each connection appends, approves a drift and approves a plan, in turn: approvals write
    // their audit entry inside their own transaction, so they contend for the head like appends.
    in_parallel(&dbs, |t, db| {
        for i in 0..24 {
            let at = format!("t{t}-{i}");
            match (t + i) % 3 {
                0 => {
                    audit_append(db, AuditEntry { detail: json!({"at": at}), ..entry(&format!("t{t}"), AuditAction::Detect, &at) })
                        .unwrap_or_else(|e| panic!("append {at}: {e}"));
                }
                1 => {
                    approve(db, &format!("d{}", (t + i) % 4), &at).unwrap_or_else(|e| panic!("approve {at}: {e}"));
                }
                _ => {
                    approve_plan(db, &format!("plan-{}", (t + i) % 4), &at).unwrap_or_else(|e| panic!("approve plan {at}: {e}")).expect("pending");
                }
            }
            std::thread::sleep(TURN);
        }
    });
    let records = assert_one_chain(&store.db(), 4 + 96);
    // Approvals name their actor (`t<thread>-<i>`) instead of carrying `detail.at`: check their order too.
    let mut approvals: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.action == "approve") {
        let (thread, i) = r.actor.split_once('-').expect("actor t<thread>-<i>");
        approvals.entry(thread).or_default().push(i.parse().expect("i"));
    }
    assert_eq!(approvals.values().map(Vec::len).sum::<usize>(), 64, "two approvals in every three iterations");
    for (thread, order) in &approvals {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{thread}'s approvals out of order: {order:?}");
    }
    // Whoever was first for each drift and plan stands.
    for d in pending_approvals(&setup, Some("infra")).expect("drifts") {
        let first = records.iter().find(|r| r.action == "approve" && r.detail["drift_id"] == d.id.as_str()).expect("approved");
        assert_eq!(d.approved_by.as_deref(), Some(first.actor.as_str()), "{}", d.id);
    }
    for p in pending_plans(&setup, Some("infra")).expect("plans") {
        let first = records.iter().find(|r| r.action == "approve" && r.detail["plan_id"] == p.id.as_str()).expect("approved");
        assert_eq!(p.approved_by.as_deref(), Some(first.actor.as_str()), "{}", p.id);
    }
}

fn serve_positions_deliveries_runs_and_reviews_round_trip(store: &Store) {
    let db = store.db();
    assert_eq!(stored_repo(&db, "prod").expect("never ran"), StoredRepo::default());
    assert!(stored_repos(&db).expect("none").is_empty());
    let prod = StoredRepo {
        revision: Some("abc123".into()),
        last_run: Some("2026-01-01T00:00:00Z".into()),
        last_error: None,
        summary: Some(r#"{"critical":1,"low":0}"#.into()),
    };
    let stage = StoredRepo { revision: None, last_run: Some("2026-01-02T00:00:00Z".into()), last_error: Some("clone failed: ü".into()), summary: None };
    save_repo(&db, "prod", &stage).expect("save");
    save_repo(&db, "prod", &prod).expect("overwrite");
    save_repo(&db, "stage", &stage).expect("save stage");
    assert_eq!(stored_repo(&db, "prod").expect("read"), prod);
    assert_eq!(stored_repos(&db).expect("all"), HashMap::from([("prod".to_string(), prod), ("stage".to_string(), stage)]));

    assert_eq!(event_seq(&db).expect("no position"), None);
    set_event_seq(&db, 41).expect("set");
    set_event_seq(&db, 9_007_199_254_740_993).expect("set again");
    assert_eq!(event_seq(&db).expect("read"), Some(9_007_199_254_740_993));

    assert!(remember_delivery(&db, "delivery-1").expect("first"));
    assert!(remember_delivery(&db, "delivery-2").expect("second"));
    assert!(!remember_delivery(&db, "delivery-1").expect("replay"), "a replay");
    assert!(!remember_delivery(&store.db(), "delivery-2").expect("replay on another connection"));

    let run = |repo: &str, n: u64| RunRecord {
        repo: repo.into(),
        finished_at: format!("2026-01-01T00:00:0{n}Z"),
        duration_ms: 1_000 + n,
        trigger: "webhook".into(),
        revision: Some(format!("rev{n}")),
        ok: n.is_multiple_of(2),
        drifted: n,
        critical: 1,
        high: 2,
        medium: 3,
        low: 4,
        info: 5,
        error: (n % 2 == 1).then(|| format!("failed {n}")),
        ..RunRecord::default()
    };
    let mut seqs = Vec::new();
    for n in 0..5 {
        seqs.push(record_run(&db, &run("prod", n), 3).expect("record"));
    }
    record_run(&db, &run("stage", 9), 3).expect("other repo");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let history = run_history(&db, "prod", 100).expect("history");
    let expected: Vec<RunRecord> = (2..5).zip(&seqs[2..]).map(|(n, seq)| RunRecord { seq: *seq, ..run("prod", n) }).collect();
    assert_eq!(history, expected, "the newest three kept, oldest first, every field read back");
    assert_eq!(run_history(&db, "prod", 1).expect("last").iter().map(|r| r.drifted).collect::<Vec<_>>(), [4]);
    assert_eq!(run_history(&db, "stage", 100).expect("stage").len(), 1, "another repository's history is not trimmed");
    record_run(&db, &run("prod", 5), 0).expect("keep at least one");
    assert_eq!(run_history(&db, "prod", 100).expect("history").iter().map(|r| r.drifted).collect::<Vec<_>>(), [5]);

    assert_eq!(review_comment(&db, "infra", "prod", 7).expect("none"), None);
    record_review(&db, "infra", "prod", 7, Some(4_200_000_001), "head1", "pending").expect("record");
    assert_eq!(review_comment(&db, "infra", "prod", 7).expect("read"), Some(4_200_000_001));
    record_review(&db, "infra", "prod", 7, None, "head2", "success").expect("comment could not be posted");
    assert_eq!(review_comment(&db, "infra", "prod", 7).expect("kept"), Some(4_200_000_001), "a review without a new comment keeps the old one");
    record_review(&db, "infra", "stage", 7, Some(5), "head1", "failure").expect("other path");
    forget_review_comment(&db, "infra", "prod", 7).expect("forget");
    assert_eq!(review_comment(&db, "infra", "prod", 7).expect("forgotten"), None);
    assert_eq!(review_comment(&db, "infra", "stage", 7).expect("other path"), Some(5));
    record_review(&db, "infra", "prod", 7, Some(43), "head3", "success").expect("new comment");
    assert_eq!(review_comment(&db, "infra", "prod", 7).expect("new"), Some(43));
}

fn leases_are_taken_renewed_released_and_their_token_grows(store: &Store) {
    let db = store.db();
    assert!(register_replica(&db, "r1", "10.0.0.1:8080", TTL).expect("register"));
    assert!(!register_replica(&db, "r1", "10.0.0.9:8080", TTL).expect("register again"), "a live replica's id is refused");
    assert!(register_replica(&db, "r2", "10.0.0.2:8080", 0).expect("register, expiring at once"));
    assert!(register_replica(&db, "r2", "10.0.0.22:8080", TTL).expect("an expired id"), "an expired replica's id is taken again");
    let seen: Vec<_> = replicas(&db).expect("replicas").into_iter().map(|r| (r.id, r.address, r.alive)).collect();
    assert_eq!(seen, [("r1".into(), "10.0.0.1:8080".into(), true), ("r2".into(), "10.0.0.22:8080".into(), true)], "the refused one changed nothing");

    assert_eq!(try_acquire(&db, "prod", "r1", TTL).expect("acquire"), Some(1));
    assert_eq!(try_acquire(&db, "prod", "r2", TTL).expect("held"), None, "held by r1");
    assert_eq!(try_acquire(&store.db(), "prod", "r2", TTL).expect("held, seen from another connection"), None);
    assert_eq!(try_acquire(&db, "stage", "r1", 0).expect("acquire, expiring at once"), Some(1));
    assert_eq!(try_acquire(&db, "stage", "r2", TTL).expect("expired"), Some(2), "an expired lease is taken over with the next token");

    assert_eq!(
        heartbeat(&db, "r1", "10.0.0.1:8080", TTL, &[("prod".into(), 1), ("stage".into(), 1)]).expect("heartbeat r1"),
        [("prod".to_string(), 1)],
        "stage moved on to r2"
    );
    assert_eq!(heartbeat(&db, "r2", "10.0.0.2:9090", TTL, &[("stage".into(), 2)]).expect("heartbeat r2"), [("stage".to_string(), 2)]);
    assert_eq!(replicas(&db).expect("replicas")[1].address, "10.0.0.2:9090", "the heartbeat carries the address");
    let all = leases(&db).expect("leases");
    assert_eq!(
        all.iter().map(|l| (l.repo.as_str(), l.owner.as_str(), l.token, l.live)).collect::<Vec<_>>(),
        [("prod", "r1", 1, true), ("stage", "r2", 2, true)]
    );
    assert!(all.iter().all(|l| l.expires_in_ms > 0 && l.expires_in_ms <= TTL as i64 && !l.acquired_at.is_empty()), "{all:?}");

    // A heartbeat renews an expired lease nobody took meanwhile.
    assert_eq!(try_acquire(&db, "dev", "r1", 0).expect("acquire, expiring at once"), Some(1));
    let mut renewed = heartbeat(&db, "r1", "10.0.0.1:8080", TTL, &[("dev".into(), 1), ("prod".into(), 1)]).expect("heartbeat");
    renewed.sort();
    assert_eq!(renewed, [("dev".to_string(), 1), ("prod".to_string(), 1)]);
    assert_eq!(try_acquire(&db, "dev", "r2", TTL).expect("renewed"), None, "renewed by the heartbeat");
    // A lease listed under r1 that r1 does not act on is not renewed: it expires and is taken.
    assert_eq!(try_acquire(&db, "lost", "r1", 0).expect("acquire, expiring at once"), Some(1));
    heartbeat(&db, "r1", "10.0.0.1:8080", TTL, &[("prod".into(), 1)]).expect("heartbeat without it");
    assert_eq!(try_acquire(&db, "lost", "r2", TTL).expect("expired"), Some(2), "nobody renews a lease nobody acts on");
    // A heartbeat of a replica that never registered announces it.
    assert_eq!(heartbeat(&db, "r3", "10.0.0.3:8080", TTL, &[]).expect("heartbeat r3"), []);
    assert_eq!(replicas(&db).expect("replicas").iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r1", "r2", "r3"]);

    assert!(!release_lease(&db, "prod", "r1", 7).expect("wrong token"));
    assert!(!release_lease(&db, "prod", "r2", 1).expect("wrong owner"));
    assert!(release_lease(&db, "prod", "r1", 1).expect("release"));
    assert!(!release_lease(&db, "prod", "r1", 1).expect("released already"));
    let prod = leases(&db).expect("leases").into_iter().find(|l| l.repo == "prod").expect("prod");
    assert_eq!((prod.owner.as_str(), prod.token, prod.live), ("", 1, false));
    assert_eq!(try_acquire(&db, "prod", "r2", TTL).expect("free"), Some(2), "a released lease is taken at once, with the next token");

    assert_eq!(retire_replica(&db, "r2").expect("retire"), 3, "lost, prod and stage");
    assert_eq!(replicas(&db).expect("replicas").iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r1", "r3"]);
    assert_eq!(
        leases(&db).expect("leases").iter().map(|l| (l.repo.as_str(), l.owner.as_str(), l.live)).collect::<Vec<_>>(),
        [("dev", "r1", true), ("lost", "", false), ("prod", "", false), ("stage", "", false)]
    );
    assert_eq!(try_acquire(&db, "stage", "r1", TTL).expect("free"), Some(3));
    assert_eq!(retire_replica(&db, "nobody").expect("retire unknown"), 0);
}

fn three_connections_racing_for_twenty_leases_get_one_owner_each(store: &Store) {
    let repos: Vec<String> = (0..20).map(|n| format!("repo-{n:02}")).collect();
    let replicas: Vec<(String, StateDb)> = (0..3).map(|n| (format!("replica-{n}"), store.db())).collect();
    let won = in_parallel(&replicas, |_, (owner, db)| {
        // All in the same order: each repository is raced for by all three at once.
        repos
            .iter()
            .filter_map(|repo| {
                let token = try_acquire(db, repo, owner, TTL).unwrap_or_else(|e| panic!("{owner} acquires {repo}: {e}"));
                std::thread::sleep(TURN);
                token.map(|token| (repo.clone(), token))
            })
            .collect::<Vec<_>>()
    });
    let mut winner: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for (t, got) in won.iter().enumerate() {
        for (repo, token) in got {
            if let Some(other) = winner.insert(repo.clone(), (format!("replica-{t}"), *token)) {
                panic!("{repo} taken twice: by {other:?} and by replica-{t} (token {token})");
            }
        }
    }
    assert_eq!(winner.keys().cloned().collect::<Vec<_>>(), repos, "every repository has an owner");
    eprintln!("lease race: {:?} repositories each", won.iter().map(Vec::len).collect::<Vec<_>>());
    let stored: BTreeMap<String, (String, u64)> = leases(&store.db()).expect("leases").into_iter().map(|l| (l.repo, (l.owner, l.token))).collect();
    assert_eq!(stored, winner.iter().map(|(repo, (owner, _))| (repo.clone(), (owner.clone(), 1))).collect(), "one owner each, with token 1");
}

fn fenced_writes_are_refused_once_the_lease_moved_on(store: &Store) {
    let db = store.db();
    let other_replica = store.db();
    let token = try_acquire(&db, "prod", "a", 0).expect("acquire").expect("free");
    let a = db.fenced(Fence { repo: "prod".into(), owner: "a".into(), token, clock: None });
    assert_eq!(a.fence().map(|f| f.token), Some(1));
    // Expired but not taken yet: still a's.
    set_rolled_out(&a, "infra", "prod", "rev-a").expect("the holder writes");
    audit_append(&a, entry("a", AuditAction::Sync, "by a")).expect("the holder appends");

    assert_eq!(try_acquire(&other_replica, "prod", "b", TTL).expect("take over"), Some(2));
    let refused = |what: &str, result: Result<(), StateError>| match result {
        Err(StateError::Fenced { repo, token, now, .. }) => {
            assert_eq!((repo.as_str(), token, now.as_str()), ("prod", 1, "b, token 2"), "{what}");
        }
        other => panic!("{what} by a replica that lost its lease: {other:?}"),
    };
    refused("set_rolled_out", set_rolled_out(&a, "infra", "prod", "rev-stale"));
    refused("audit_append", audit_append(&a, entry("a", AuditAction::Sync, "stale")).map(drop));
    refused("record_drifts", record_drifts(&a, "infra", &[drift("d1", Severity::Low)]).map(drop));
    refused("record_findings", record_findings(&a, "infra", &[("f1".into(), "novacron_vm.f1".into(), "missing".into())]).map(drop));
    refused("hold_plan", hold_plan(&a, &plan("plan-1", "infra", "prod", "rev", b"p"), "awaiting", entry("a", AuditAction::Plan, "prod")).map(drop));
    refused("rollout_intent", rollout_intent(&a, "infra", "prod", "apply", None, entry("a", AuditAction::Apply, "prod")).map(drop));
    let intent = JournalEntry {
        seq: 0,
        drift_id: "d1".into(),
        repo: "infra".into(),
        address: "novacron_vm.d1".into(),
        kind: "novacron_vm".into(),
        object_id: "vm-d1".into(),
        etag: "\"1\"".into(),
        attributes: vec![],
        state: JournalState::Intent,
        outcome: None,
    };
    refused("journal_intent", journal_intent(&a, &intent, entry("a", AuditAction::Sync, "d1")).map(drop));
    refused("save_repo", save_repo(&a, "prod", &StoredRepo { revision: Some("stale".into()), ..StoredRepo::default() }));
    refused("set_event_seq", set_event_seq(&a, 99));
    refused("record_run", record_run(&a, &RunRecord { repo: "prod".into(), ..RunRecord::default() }, 10).map(drop));
    refused("record_review", record_review(&a, "infra", "prod", 1, Some(1), "h", "success"));
    refused("wake", wake(&a, "prod", "stale").map(drop));
    match approve(&a, "d1", "a") {
        Err(ApprovalError::State(StateError::Fenced { .. })) => {}
        other => panic!("approve by a replica that lost its lease: {other:?}"),
    }
    // What a refused write tried left nothing behind.
    assert_eq!(rolled_out_revision(&db, "infra", "prod").expect("read").as_deref(), Some("rev-a"));
    assert_eq!(audit_list(&db, None).expect("audit").iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(), ["by a"]);
    assert_eq!(drift_ids(&db, None), Vec::<String>::new());
    assert_eq!(plan_ids(&db, None), Vec::<String>::new());
    assert_eq!(open_rollouts(&db, "infra").expect("rollouts"), []);
    assert_eq!(journal_open_intents(&db, "infra").expect("journal"), []);
    assert_eq!(stored_repo(&db, "prod").expect("repo"), StoredRepo::default());
    assert_eq!(event_seq(&db).expect("feed"), None);
    assert_eq!(run_history(&db, "prod", 10).expect("runs"), []);
    assert_eq!(review_comment(&db, "infra", "prod", 1).expect("review"), None);
    assert_eq!(last_wakeup(&db).expect("wakeups"), 0);
    assert_eq!(record_findings(&db, "infra", &[("f1".into(), "novacron_vm.f1".into(), "missing".into())]).expect("findings").len(), 1, "not recorded before");
    // Reads through the fenced handle still work.
    assert_eq!(rolled_out_revision(&a, "infra", "prod").expect("a fenced read").as_deref(), Some("rev-a"));

    let b = other_replica.fenced(Fence { repo: "prod".into(), owner: "b".into(), token: 2, clock: None });
    set_rolled_out(&b, "infra", "prod", "rev-b").expect("the new holder writes");
    audit_append(&b, entry("b", AuditAction::Sync, "by b")).expect("the new holder appends");
    assert_eq!(record_drifts(&b, "infra", &[drift("d1", Severity::Low)]).expect("drifts").len(), 1);
    assert_eq!(approve(&b, "d1", "b").expect("approve").approved_by.as_deref(), Some("b"));
    assert_eq!(rolled_out_revision(&db, "infra", "prod").expect("read").as_deref(), Some("rev-b"));
    assert!(audit_verify(&db).expect("verify").ok);

    assert!(release_lease(&other_replica, "prod", "b", 2).expect("release"));
    match set_rolled_out(&b, "infra", "prod", "rev-late") {
        Err(StateError::Fenced { now, .. }) => assert_eq!(now, "released"),
        other => panic!("a write after giving the lease up: {other:?}"),
    }
    let never = db.fenced(Fence { repo: "never-leased".into(), owner: "a".into(), token: 1, clock: None });
    assert!(matches!(set_event_seq(&never, 1), Err(StateError::Fenced { .. })), "a lease that never existed fences too");
    assert_eq!(rolled_out_revision(&db, "infra", "prod").expect("read").as_deref(), Some("rev-b"));
}

fn wakeups_are_read_in_order_and_announced_on_postgres(store: &Store) {
    let db = store.db();
    assert_eq!(last_wakeup(&db).expect("none yet"), 0);
    assert_eq!(wakeups_since(&db, 0).expect("none yet"), (vec![], 0));
    let first = wake(&db, "prod", "webhook").expect("wake");
    let second = wake(&store.db(), "stage", "approval").expect("wake from another connection");
    assert!(second > first && first > 0, "{first}, {second}");
    assert_eq!(last_wakeup(&db).expect("last"), second);
    let both = vec![("prod".to_string(), "webhook".to_string()), ("stage".to_string(), "approval".to_string())];
    assert_eq!(wakeups_since(&db, 0).expect("all"), (both.clone(), second));
    assert_eq!(wakeups_since(&db, first).expect("after the first"), (both[1..].to_vec(), second));
    assert_eq!(wakeups_since(&db, second).expect("nothing new"), (vec![], second), "where a replica left off, when nothing is new");

    let Some(listener) = WakeListener::connect(&db) else {
        assert!(!store.is_postgres(), "PostgreSQL has no wake listener");
        return;
    };
    assert!(store.is_postgres(), "SQLite has a wake listener");
    let mut listener = listener.expect("listen");
    let quiet = Instant::now();
    assert!(!listener.wait(Duration::from_millis(300)).expect("wait"), "nothing announced (wake-ups before LISTEN are not)");
    eprintln!("wake listener: a quiet wait of 300 ms returned after {} ms", quiet.elapsed().as_millis());

    let waker = store.db();
    let (woken, third) = std::thread::scope(|s| {
        let wake_later = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            wake(&waker, "prod", "approval").expect("wake from another StateDb")
        });
        let started = Instant::now();
        let woken = listener.wait(Duration::from_secs(2)).expect("wait");
        eprintln!("wake listener: woken after {} ms (the wake-up came after 100 ms)", started.elapsed().as_millis());
        (woken, wake_later.join().expect("waker"))
    });
    assert!(woken, "no notification within 2 s of a wake-up");
    assert_eq!(wakeups_since(&db, second).expect("the announced one"), (vec![("prod".to_string(), "approval".to_string())], third));
    assert!(!listener.wait(Duration::from_millis(200)).expect("wait again"), "one wake-up is announced once");
}

fn connecting_twice_migrates_once(store: &Store) {
    let first = store.db();
    set_event_seq(&first, 7).expect("write");
    let second = store.db();
    assert_eq!(event_seq(&second).expect("read on the second connection"), Some(7));
    drop((first, second));
    assert_eq!(event_seq(&store.db()).expect("read after reconnecting"), Some(7));
    let versions: Vec<i64> =
        store.admin().query("SELECT version FROM novacron_schema ORDER BY version", &[]).expect("versions").iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=PG_SCHEMA_VERSION as i64).collect::<Vec<_>>(), "each migration recorded once");
}

fn three_replicas_starting_together_on_a_fresh_database_all_connect(store: &Store) {
    let connected = in_parallel(&[(); 3], |_, _| store.try_db());
    let dbs: Vec<StateDb> = connected.into_iter().enumerate().map(|(n, db)| db.unwrap_or_else(|e| panic!("replica {n} could not connect: {e}"))).collect();
    for (n, db) in dbs.iter().enumerate() {
        audit_append(db, entry(&format!("replica-{n}"), AuditAction::Detect, "started")).expect("append");
    }
    assert_eq!(audit_verify(&dbs[0]).expect("verify"), VerifyOutcome { ok: true, entries: 3, first_bad: None });
    let rows: i64 = store.admin().query_one("SELECT COUNT(*) FROM novacron_schema", &[]).expect("count").get(0);
    assert_eq!(rows, PG_SCHEMA_VERSION as i64, "migrated once, under the advisory lock");
}

fn a_database_of_a_newer_release_is_refused(store: &Store) {
    drop(store.db());
    store.admin().execute("INSERT INTO novacron_schema (version) VALUES (99)", &[]).expect("a newer release's schema");
    match store.try_db() {
        Err(err @ StateError::Open { .. }) => {
            let text = err.to_string();
            assert!(text.contains("newer novacron-reconcile") && text.contains("99"), "{text}");
        }
        other => panic!("a database of schema version 99: {other:?}"),
    }
}

fn a_refused_login_is_a_clear_error_without_the_password(store: &Store) {
    let (_, port) = store.postgres.as_ref().expect("a PostgreSQL case");
    let location: StateLocation = format!("postgres://no_such_role:hunter2@127.0.0.1:{port}/postgres").parse().expect("url");
    assert!(!location.to_string().contains("hunter2"), "{location}");
    let err = StateDb::connect(&location).expect_err("an unknown role is refused");
    let text = format!("{err} / {err:?}");
    eprintln!("unknown role: {err}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("no_such_role") && text.contains("check --state"), "{text}");
}

#[test]
fn postgres_an_unreachable_server_is_a_clear_error_without_the_password() {
    let location: StateLocation = "postgres://postgres:hunter2@127.0.0.1:1/x".parse().expect("url");
    let started = Instant::now();
    let err = StateDb::connect(&location).expect_err("nothing listens on port 1");
    eprintln!("unreachable: {err} (after {} ms)", started.elapsed().as_millis());
    let text = format!("{err} / {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("postgres://postgres@127.0.0.1:1/x") && text.contains("does not answer") && text.contains("cannot connect"), "{text}");
    assert!(err.is_unreachable(), "a server that does not answer is told apart from one that refuses: {err:?}");
    assert!(text.contains("Connection refused"), "the cause is named: {text}");
}

#[test]
fn postgres_a_restarted_server_is_reached_again_by_the_same_state_db() {
    let Some(server) = PgServer::start_or_skip("postgres_a_restarted_server_is_reached_again_by_the_same_state_db") else { return };
    let db = StateDb::connect(&server.create_database("restart").parse().expect("url")).expect("connect");
    set_event_seq(&db, 7).expect("write before the stop");
    // Enough calls that every pooled connection is open when the server goes away.
    for n in 0..8 {
        audit_append(&db, entry("svc", AuditAction::Detect, &format!("before-{n}"))).expect("append before the stop");
    }

    server.stop();
    // One call per pooled connection: each finds its connection gone.
    for n in 0..6 {
        let started = Instant::now();
        let err = event_seq(&db).expect_err("the server is stopped");
        eprintln!("restart: call {n} while stopped failed after {} ms: {err}", started.elapsed().as_millis());
        assert!(err.is_unreachable(), "call {n} while stopped: not reported unreachable: {err:?}");
    }

    server.start_again();
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match event_seq(&db) {
            Ok(seq) => {
                assert_eq!(seq, Some(7), "the data written before the stop");
                break;
            }
            Err(err) if started.elapsed() < Duration::from_secs(8) => {
                assert!(err.is_unreachable(), "while reconnecting: {err:?}");
                failures += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("the same StateDb still fails {} ms after the restart: {err}", started.elapsed().as_millis()),
        }
    }
    eprintln!("restart: the same StateDb works again {} ms after the restart ({failures} refused calls meanwhile)", started.elapsed().as_millis());
    for n in 0..8 {
        audit_append(&db, entry("svc", AuditAction::Detect, &format!("after-{n}"))).unwrap_or_else(|e| panic!("append {n} after the restart: {e}"));
    }
    assert_eq!(audit_verify(&db).expect("verify"), VerifyOutcome { ok: true, entries: 16, first_bad: None });
}
