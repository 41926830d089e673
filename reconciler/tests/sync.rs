//! End to end `sync`, `approve` and `audit`: the real platform on 127.0.0.1:0, real git remotes, a recording forge.

#[allow(dead_code)]
mod support;

use std::process::{Command, Stdio};

use novacron_client::Kind;
use novacron_reconcile::drift::LiveObject;
use novacron_reconcile::live::{ClientApi, LiveError, PatchOutcome, PlatformApi};
use novacron_reconcile::state::{StateDb, approve, audit_list, audit_verify, pending_approvals};
use novacron_reconcile::sync::{SyncOutcome, run_sync};
use serde_json::{Value, json};
use support::{Env, MockForge, git};

fn action<'a>(report: &'a novacron_reconcile::sync::SyncReport, address: &str) -> &'a novacron_reconcile::sync::SyncAction {
    report.actions.iter().find(|a| a.address == address).unwrap_or_else(|| panic!("no action for {address}: {:?}", report.actions))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_drift_is_reverted_critical_drift_gets_a_pull_request_then_approval_reverts_it() {
    let mut env = Env::start().await;
    let (_net, vm, pol) = env.create_all().await;
    let forge = MockForge::start().await;
    let db = StateDb::open(&env.state_path()).expect("state");

    env.patch(Kind::Vm, &vm, json!({"metadata": {"env": "dev", "owner": "eve"}})).await;
    env.patch(Kind::Policy, &pol, json!({"enforcement_mode": "audit"})).await;
    let options = env.sync_options(true);
    let first = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    assert_eq!(action(&first, "novacron_vm.web").outcome, SyncOutcome::Reverted, "{:?}", first.actions);
    assert_eq!(env.get(Kind::Vm, &vm).await["metadata"], json!({"env": "prod", "team": "web"}), "owner removed, env put back");
    let policy = action(&first, "novacron_policy.guard");
    assert_eq!(policy.outcome, SyncOutcome::AwaitingApproval);
    assert_eq!(env.get(Kind::Policy, &pol).await["enforcement_mode"], "audit", "critical drift is never auto-synced");
    assert_eq!(first.exit_code(), 2);

    // The remediation branch holds the live value, with formatting and comments kept.
    let remediation = first.remediation.clone().expect("a remediation change");
    assert_eq!(remediation.branch, format!("novacron/drift/{}", policy.drift_id));
    assert!(remediation.pull_request.created);
    let pushed = git(&env.remote, &["show", &format!("{}:main.tf", remediation.branch)]);
    assert!(pushed.contains("enforcement_mode = \"audit\" # who may relax this?"), "{pushed}");
    assert_eq!(pushed.replace("enforcement_mode = \"audit\"", "enforcement_mode = \"block\""), support::MAIN_TF.trim_end(), "only the drifted literal changed");
    assert_eq!(git(&env.remote, &["rev-parse", &format!("{}^", remediation.branch)]), env.revision, "on top of the compared revision");
    let requests = forge.requests();
    assert_eq!(requests.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["GET", "POST"]);
    assert_eq!(requests[0].query.get("head").map(String::as_str), Some(format!("acme:{}", remediation.branch).as_str()));
    assert_eq!(requests[1].authorization, "token forge-t0ken");
    let body = &requests[1].body;
    assert_eq!((body["head"].as_str(), body["base"].as_str()), (Some(remediation.branch.as_str()), Some("main")));
    let text = body["body"].as_str().expect("body");
    assert!(text.contains("## NovaCron drift report") && text.contains("enforcement_mode") && text.contains(&policy.drift_id), "{text}");
    assert!(text.contains("2 in sync, 1 drifted") && text.contains("critical 1, high 0, medium 0, low 0"), "the reverted VM shows in sync: {text}");

    // The same drift again: the same branch and commit, nothing pushed, the pull request left as it is.
    let audited = audit_list(&db, None).expect("audit").len();
    let second = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    let again = second.remediation.clone().expect("remediation");
    assert_eq!((again.branch.as_str(), again.commit.as_str(), again.pushed), (remediation.branch.as_str(), remediation.commit.as_str(), false));
    assert_eq!((again.pull_request.number, again.pull_request.created, again.pull_request.changed), (remediation.pull_request.number, false, false));
    assert_eq!(forge.requests().len(), 3, "one more GET only");
    assert_eq!(audit_list(&db, None).expect("audit").len(), audited, "a repeated sync appends nothing");

    // A new revision of the repository, the same drift: the branch is force-updated onto it and
    // the existing pull request updated, not a second one opened.
    env.commit_unrelated();
    let third = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    let moved = third.remediation.clone().expect("remediation");
    assert_eq!(
        (moved.branch.as_str(), moved.pushed, moved.pull_request.number, moved.pull_request.created, moved.pull_request.changed),
        (remediation.branch.as_str(), true, remediation.pull_request.number, false, true)
    );
    assert_eq!(git(&env.remote, &["rev-parse", &format!("{}^", moved.branch)]), env.revision, "rebased onto the new revision");
    assert_eq!(forge.requests().iter().filter(|r| r.method == "POST").count(), 1);
    let last = forge.requests().last().cloned().expect("a request");
    assert_eq!((last.method.as_str(), last.path), ("PATCH", format!("/repos/acme/infra/pulls/{}", remediation.pull_request.number)));
    assert!(last.body["body"].as_str().expect("body").contains(&env.revision));
    assert!(support::local_branches(&env).is_empty(), "no local branch left in the cached clone");

    // Approval through the binary, then the next sync reverts it.
    let out = env.bin(&["approve", "feedbeef0000"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"feedbeef0000\"") && stderr.contains("novacron-reconcile approvals list") && stderr.lines().count() == 1, "{stderr}");
    let out = env.bin(&["approve", &policy.drift_id, "--actor", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pending_approvals(&db, None).expect("pending")[0].approved_by.as_deref(), Some("alice"));
    let fourth = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    assert_eq!(action(&fourth, "novacron_policy.guard").outcome, SyncOutcome::Reverted);
    assert_eq!(fourth.exit_code(), 0, "{:?}", fourth.actions);
    assert_eq!(env.get(Kind::Policy, &pol).await["enforcement_mode"], "block");
    assert!(pending_approvals(&db, None).expect("pending").is_empty());

    let actions: Vec<String> = audit_list(&db, None).expect("audit").into_iter().map(|e| e.action).collect();
    for wanted in ["detect", "sync", "push", "pull_request", "approve"] {
        assert!(actions.iter().any(|a| a == wanted), "{wanted} missing from {actions:?}");
    }
    assert!(audit_verify(&db).expect("verify").ok);
    env.stop().await;
}

/// Changes the object through a second client just before delegating the PATCH, so the ETag
/// that was compared is stale by the time the PATCH arrives.
struct Interfering<'a> {
    inner: ClientApi,
    env: &'a Env,
    change: Value,
    done: std::sync::atomic::AtomicBool,
}

impl PlatformApi for Interfering<'_> {
    async fn list_all(&self, kind: Kind) -> Result<Vec<LiveObject>, LiveError> {
        self.inner.list_all(kind).await
    }

    async fn get_object(&self, kind: Kind, id: &str) -> Result<Option<LiveObject>, LiveError> {
        self.inner.get_object(kind, id).await
    }

    async fn patch_object(&self, kind: Kind, id: &str, patch: &Value, etag: &str) -> Result<PatchOutcome, LiveError> {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.env.patch(kind, id, self.change.clone()).await;
        }
        self.inner.patch_object(kind, id, patch, etag).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_compare_and_patch_is_never_overwritten() {
    let env = Env::start().await;
    let (_net, vm, _pol) = env.create_all().await;
    let db = StateDb::open(&env.state_path()).expect("state");
    let options = env.sync_options(false);

    // Someone else changes the same attribute meanwhile: 412, re-read, re-diff, conflict.
    env.patch(Kind::Vm, &vm, json!({"metadata": {"env": "dev", "team": "web"}})).await;
    let api = Interfering { inner: env.api(), env: &env, change: json!({"metadata": {"env": "staging", "team": "web"}}), done: false.into() };
    let report = run_sync(&options, &api, &db, None, None).await.expect("sync runs");
    assert!(matches!(&action(&report, "novacron_vm.web").outcome, SyncOutcome::Conflict(why) if why.contains("metadata.env")), "{:?}", report.actions);
    assert_eq!(env.get(Kind::Vm, &vm).await["metadata"]["env"], "staging", "the unseen change stays");
    assert_eq!(report.exit_code(), 2);
    assert!(audit_list(&db, None).expect("audit").iter().any(|e| e.action == "sync_conflict"));

    // Someone changes an attribute the HCL does not configure: the same revert is still right.
    let api = Interfering { inner: env.api(), env: &env, change: json!({"tags": ["hotfix"]}), done: false.into() };
    let report = run_sync(&options, &api, &db, None, None).await.expect("sync runs");
    assert_eq!(action(&report, "novacron_vm.web").outcome, SyncOutcome::Reverted, "{:?}", report.actions);
    let live = env.get(Kind::Vm, &vm).await;
    assert_eq!((live["metadata"]["env"].as_str(), live["tags"].clone()), (Some("prod"), json!(["hotfix"])));
    assert!(audit_verify(&db).expect("verify").ok);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_error_is_clear_and_audited_and_leaves_nothing_locally() {
    let env = Env::start().await;
    let (_net, _vm, pol) = env.create_all().await;
    let forge = MockForge::start().await;
    forge.fail_with(500);
    let db = StateDb::open(&env.state_path()).expect("state");
    env.patch(Kind::Policy, &pol, json!({"enforcement_mode": "audit"})).await;
    let report = run_sync(&env.sync_options(true), &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    assert_eq!(report.exit_code(), 1);
    assert!(report.errors.iter().any(|e| e.contains("HTTP 500") && e.contains("/repos/acme/infra/pulls")), "{:?}", report.errors);
    assert!(report.errors.iter().all(|e| !e.contains("forge-t0ken")));
    let errors: Vec<_> = audit_list(&db, None).expect("audit").into_iter().filter(|e| e.action == "error").collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].detail["stage"], "pull_request");
    assert!(support::local_branches(&env).is_empty());
    // The CLI says it in one line and exits 1.
    let out = env.bin_sync(&["--remediation", "pr", "--forge-url", &forge.url, "--forge-repo", "acme/infra"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: remediation: branch novacron/drift/") && stderr.contains("HTTP 500"), "{stderr}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_from_a_tag_or_a_commit_targets_the_default_branch() {
    let env = Env::start().await;
    let (_net, _vm, pol) = env.create_all().await;
    env.patch(Kind::Policy, &pol, json!({"enforcement_mode": "audit"})).await;
    git(&env.remote, &["tag", "v1", "main"]);
    for reference in ["v1".to_string(), env.revision.clone()] {
        let forge = MockForge::start().await;
        let db = StateDb::open(&env.dir().join(format!("state-{}.db", &reference[..2]))).expect("state");
        let mut options = env.sync_options(true);
        options.drift.reference = Some(reference.clone());
        let report = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
        assert!(report.errors.is_empty(), "--ref {reference}: {:?}", report.errors);
        let opened = forge.requests().into_iter().find(|r| r.method == "POST" && r.path.ends_with("/pulls")).expect("a pull request");
        assert_eq!(opened.body["base"], "main", "--ref {reference} is not a branch: the pull request targets the default branch");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sync_then_rerun_applies_once_and_the_chain_verifies() {
    let env = Env::start().await;
    let (_net, vm, _pol) = env.create_all().await;
    for (round, pause) in ["after-intent", "after-patch"].into_iter().enumerate() {
        let baseline = env.last_event().await;
        env.patch(Kind::Vm, &vm, json!({"metadata": {"env": format!("dev{round}"), "team": "web"}})).await;
        let mut child = env
            .bin_command(&["sync", "--repo", &env.repo_url(), "--endpoint", &env.endpoint])
            .env("NOVACRON_RECONCILE_TEST_PAUSE", pause)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        support::wait_for_line(&mut child, "test hook: paused");
        child.kill().expect("kill -9");
        let _ = child.wait();
        let out = env.bin(&["sync", "--repo", &env.repo_url(), "--endpoint", &env.endpoint]);
        assert_eq!(out.status.code(), Some(0), "{pause}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(env.get(Kind::Vm, &vm).await["metadata"]["env"], "prod");
        let updates = env.update_events_since(baseline, &vm).await;
        assert_eq!(updates, 2, "{pause}: the out-of-band change and exactly one revert");
        let db = StateDb::open(&env.state_path()).expect("state");
        let recovered = audit_list(&db, None).expect("audit").into_iter().rfind(|e| e.detail["phase"] == "recovered").expect("a recovered entry");
        let found = if pause == "after-intent" { "not_applied" } else { "found_applied" };
        assert_eq!(recovered.detail["outcome"], found);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("recovered revert of novacron_vm.web, left unfinished by a stopped run: {found}")),
            "the output shows the recovery: {stdout}"
        );
    }
    let out = env.bin(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log intact"));

    // Tampering with one entry is named.
    let conn = rusqlite::Connection::open(env.state_path()).expect("sqlite");
    conn.execute("UPDATE audit SET detail = '{\"phase\":\"nothing to see\"}' WHERE seq = 3", []).expect("tamper");
    let out = env.bin(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("entry 3 does not match"), "{stderr}");
    let listed = env.bin(&["audit", "list", "--format", "json"]);
    let entries: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("audit list --format json is one JSON document");
    assert!(entries.as_array().expect("an array").len() >= 6);
    // Each command offers only its own subcommands and flags.
    let help = String::from_utf8_lossy(&env.bin_command(&["approvals", "--help"]).output().expect("help").stdout).to_string();
    assert!(help.contains("list") && !help.contains("verify"), "{help}");
    let limit = env.bin(&["approvals", "list", "--limit", "3"]);
    assert_eq!(limit.status.code(), Some(1), "approvals list has no --limit: {}", String::from_utf8_lossy(&limit.stderr));
    let approvals = env.bin(&["approvals", "list", "--format", "json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&approvals.stdout).expect("json").is_array());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_approve_needs_a_known_drift() {
    let env = Env::start().await;
    let (_net, vm, _pol) = env.create_all().await;
    env.patch(Kind::Vm, &vm, json!({"metadata": {"env": "dev", "team": "web"}})).await;
    let out = env.bin_sync(&["--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(0), "a real sync would leave nothing: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("would revert"));
    assert_eq!(env.get(Kind::Vm, &vm).await["metadata"]["env"], "dev");
    let db = StateDb::open(&env.state_path()).expect("state");
    assert!(audit_list(&db, None).expect("audit").is_empty(), "a dry run writes nothing");
    assert!(matches!(approve(&db, "000000000000", "bob"), Err(novacron_reconcile::state::ApprovalError::UnknownId { .. })));
    let out = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["sync", "--repo", &env.repo_url(), "--auto-sync-max", "none", "--state"])
        .arg(env.state_path())
        .env("NOVACRON_API_KEY", "x")
        .env("NOVACRON_ENDPOINT", &env.endpoint)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "a refused key is an error");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_smart_http_a_refused_push_is_audited_then_an_allowed_push_lands() {
    assert!(
        std::path::Path::new(support::smart_http::HTTP_BACKEND).exists(),
        "{} is missing: install Debian's git (apt-get install git); .ci/run does",
        support::smart_http::HTTP_BACKEND
    );
    let env = Env::start().await;
    let (_net, _vm, pol) = env.create_all().await;
    let server = support::smart_http::GitHttpServer::start(env.remote.parent().expect("parent").to_path_buf()).await;
    let forge = MockForge::start().await;
    let db = StateDb::open(&env.state_path()).expect("state");
    env.patch(Kind::Policy, &pol, json!({"enforcement_mode": "audit"})).await;
    let mut options = env.sync_options(true);
    options.drift.repo = format!("{}/remote.git", server.base);

    // Fetching works anonymously; pushing is refused (403) until the server allows it.
    let refused = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    assert_eq!(refused.exit_code(), 1);
    assert!(refused.errors.iter().any(|e| e.contains("push of novacron/drift/") && e.contains("refused") && e.contains("403")), "{:?}", refused.errors);
    let audited = audit_list(&db, None).expect("audit");
    assert!(audited.iter().any(|e| e.action == "error" && e.detail["stage"] == "push"), "{audited:?}");
    assert!(forge.requests().is_empty(), "no pull request without its branch");
    assert!(support::local_branches(&env).is_empty(), "nothing half-made left locally");
    assert_eq!(git(&env.remote, &["for-each-ref", "refs/heads/novacron"]), "");

    server.allow_push(true);
    let pushed = run_sync(&options, &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    assert_eq!(pushed.exit_code(), 2, "{:?}", pushed.errors);
    let branch = pushed.remediation.expect("remediation").branch;
    assert!(git(&env.remote, &["show", &format!("{branch}:main.tf")]).contains("enforcement_mode = \"audit\" # who may relax this?"));
    assert!(audit_verify(&db).expect("verify").ok);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_objects_are_adopted_in_the_pull_request_never_deleted() {
    let env = Env::start().await;
    let (net, _vm, pol) = env.create_all().await;
    let stray = env.create_stray_vm(&net).await;
    env.patch(Kind::Policy, &pol, json!({"enforcement_mode": "audit"})).await;
    // A remote whose default branch is not `main`: the pull request targets it.
    git(&env.remote, &["branch", "-m", "main", "trunk"]);
    git(&env.remote, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    let forge = MockForge::start().await;
    let db = StateDb::open(&env.state_path()).expect("state");
    let report = run_sync(&env.sync_options(true), &env.api(), &db, Some(&forge.forge()), None).await.expect("sync runs");
    assert_eq!(report.exit_code(), 2, "an unmanaged object remains: {:?}", report.errors);
    assert!(env.get(Kind::Vm, &stray).await["id"] == stray, "never deleted");
    let remediation = report.remediation.clone().expect("a remediation change");
    assert!(remediation.rewritten.iter().any(|r| r.starts_with("novacron_vm.stray (unmanaged)")), "{:?}", remediation.rewritten);
    let detected: Vec<_> = audit_list(&db, None).expect("audit").into_iter().filter(|e| e.action == "detect" && e.detail["status"].is_string()).collect();
    assert_eq!(detected.iter().map(|e| (e.subject.as_str(), e.detail["status"].as_str())).collect::<Vec<_>>(), [("novacron_vm.stray", Some("unmanaged"))]);
    let opened = forge.requests().into_iter().find(|r| r.method == "POST").expect("a pull request");
    assert_eq!(opened.body["base"], "trunk");
    // Two findings in one run: one branch named by the id of the set, both in its body.
    let policy = action(&report, "novacron_policy.guard");
    let stray_id = detected[0].detail["finding_id"].as_str().expect("finding id").to_string();
    assert_eq!(remediation.branch, format!("novacron/drift/{}", novacron_reconcile::remediation::set_id(&[policy.drift_id.clone(), stray_id.clone()])));
    let text = opened.body["body"].as_str().expect("body");
    assert!(text.contains(&format!("`{}`", policy.drift_id)) && text.contains(&format!("`{stray_id}`")), "{text}");
    // The branch declares the object exactly as it is live: drift on it finds it in sync.
    let mut options = env.sync_options(false).drift;
    options.reference = Some(remediation.branch.clone());
    let on_branch = novacron_reconcile::command::run_drift(&options, &env.api()).await.expect("drift on the branch");
    let adopted = on_branch.resources.iter().find(|r| r.address == "novacron_vm.stray").expect("declared on the branch");
    assert_eq!(adopted.status, novacron_reconcile::report::Status::InSync, "{:?}", adopted.changes);
    assert!(!on_branch.has_drift(), "the branch holds the live state: {:?}", on_branch.resources.iter().map(|r| (&r.address, r.status)).collect::<Vec<_>>());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_attribute_is_reverted_by_sending_it_and_never_shown() {
    let env = Env::start().await;
    let (_net, vm, _pol) = env.create_all().await;
    let hash = |text: &str| novacron_schemas::sha256_hex(text.as_bytes());
    assert_eq!(env.get(Kind::Vm, &vm).await["user_data_sha256"], hash(support::USER_DATA));
    env.patch(Kind::Vm, &vm, json!({"user_data": "#cloud-config\npassword: changed-by-hand\n"})).await;
    // user_data drift is medium: above the default threshold, so reported and left.
    let waiting = env.bin_sync(&["--format", "json"], &[]);
    assert_eq!(waiting.status.code(), Some(2));
    let reverted = env.bin_sync(&["--auto-sync-max", "medium", "--format", "json"], &[]);
    assert_eq!(reverted.status.code(), Some(0), "{}", String::from_utf8_lossy(&reverted.stderr));
    assert_eq!(env.get(Kind::Vm, &vm).await["user_data_sha256"], hash(support::USER_DATA), "the desired value was sent");
    let listed = env.bin(&["audit", "list", "--format", "json"]);
    for text in [&waiting.stdout, &waiting.stderr, &reverted.stdout, &reverted.stderr, &listed.stdout] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains("hunter2") && !text.contains("changed-by-hand") && !text.contains("cloud-config"), "a sensitive value leaked:\n{text}");
    }
    assert!(String::from_utf8_lossy(&reverted.stdout).contains("\"outcome\": \"reverted\""));
    env.stop().await;
}
