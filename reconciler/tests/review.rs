//! Pull-request review end to end: the real `serve` binary, the real Terraform and provider, the
//! real platform (state backend and policy dry runs), a real git remote, and the recording forge
//! behaving like GitHub's REST API. One scenario walks a repository's pull requests: a change a
//! `block` policy refuses, the same comment updated on the next push, drift context, a syntax
//! error, a fork, `/novacron approve` from a reader and a writer, and a pull request that tries
//! to read the machine's secrets.

#[allow(dead_code)]
mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use novacron_client::Kind;
use novacron_platform::TEST_API_KEY;
use novacron_reconcile::serve::webhook::signature_header;
use serde_json::{Value, json};
use support::git;
use support::{Env, MockForge};

const SECRET: &str = "review-webhook-secret";
const FORGE_TOKEN: &str = "forge-t0ken";
const REVIEW_KEY: (&str, &str) = ("reviewer", "review-only-key-1f2e3d4c");
const PATIENCE: Duration = Duration::from_secs(120);
const USER_DATA: &str = "#cloud-config\npassword: hunter2-very-secret\n";

const BASE: &str = r#"terraform {
  required_providers {
    novacron = { source = "novacron/novacron" }
  }
}

resource "novacron_network" "core" {
  name = "core"
  cidr = "10.50.0.0/24"
  firewall_rule {
    direction = "ingress"
    ports     = "22"
    cidr      = "10.0.0.0/8"
  }
}

resource "novacron_vm" "web" {
  name        = "web"
  cpu_cores   = CPU
  memory_gb   = MEMORY
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = { team = "web" }
  user_data   = "USER_DATA"
}
"#;

fn config(cpu: u32, memory: u32) -> String {
    BASE.replace("CPU", &cpu.to_string()).replace("MEMORY", &memory.to_string()).replace("USER_DATA", &USER_DATA.replace('\n', "\\n"))
}

/// [`config`] with SSH open to the world: a critical change.
fn open_firewall(text: &str) -> String {
    text.replace("cidr      = \"10.0.0.0/8\"", "cidr      = \"0.0.0.0/0\"")
}

const CPU_RULE: &str = "package cpu\n\ndeny contains msg if {\n  input.object.cpu_cores > 8\n  msg := sprintf(\"%s asks for %d cores; at most 8\", [input.object.name, input.object.cpu_cores])\n}\n";
const TEAM_RULE: &str = "package team\n\ndeny contains msg if {\n  not input.object.metadata.owner\n  msg := \"no owner label\"\n}\n";

struct Review {
    env: Env,
    forge: MockForge,
    http: reqwest::Client,
    serve: Child,
    base: String,
    work: std::path::PathBuf,
    deliveries: u32,
}

impl Drop for Review {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

impl Review {
    /// Commits `main_tf` on a new branch of the work tree and pushes it (and, for forks, only
    /// `refs/pull/<n>/head`, as GitHub keeps it); returns the head commit.
    fn push_branch(&self, branch: &str, main_tf: &str, pull_ref: Option<u64>) -> String {
        git(&self.work, &["checkout", "-q", "-B", branch, "main"]);
        std::fs::write(self.work.join("main.tf"), main_tf).expect("write");
        git(&self.work, &["commit", "-q", "-am", &format!("change on {branch}")]);
        let remote = self.env.remote.to_str().expect("utf-8");
        match pull_ref {
            None => git(&self.work, &["push", "-q", "-f", remote, branch]),
            Some(n) => git(&self.work, &["push", "-q", "-f", remote, &format!("{branch}:refs/pull/{n}/head")]),
        };
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["checkout", "-q", "main"]);
        sha
    }

    async fn deliver(&mut self, event: &str, body: Value) -> Value {
        self.deliveries += 1;
        let body = body.to_string();
        let answer = self
            .http
            .post(format!("{}/hooks/github", self.base))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", format!("delivery-{}", self.deliveries))
            .header("X-Hub-Signature-256", signature_header(SECRET.as_bytes(), body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("webhook");
        assert_eq!(answer.status(), 202, "webhook accepted");
        answer.json().await.expect("json")
    }

    fn pull_request(&self, action: &str, number: u64, sha: &str, branch: &str, head_repo: &str) -> Value {
        json!({"action": action, "number": number,
               "pull_request": {"head": {"ref": branch, "sha": sha, "repo": {"full_name": head_repo}},
                                "base": {"ref": "main", "sha": self.env.revision, "repo": {"full_name": "acme/infra"}}},
               "repository": {"full_name": "acme/infra", "clone_url": self.env.repo_url(), "default_branch": "main"}})
    }

    /// Waits until `sha` has a final `novacron/plan` status; returns (state, description).
    async fn final_status(&self, sha: &str) -> (String, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some((state, _, description)) = self.forge.statuses(sha).into_iter().rfind(|(_, c, _)| c == "novacron/plan")
                && state != "pending"
            {
                return (state, description);
            }
            assert!(Instant::now() < deadline, "no final novacron/plan status for {sha}: {:?}", self.forge.statuses(sha));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The one review comment on pull request `n` (panics if there are several).
    fn review_comment(&self, n: u64) -> String {
        let ours: Vec<_> = self.forge.comments(n).into_iter().filter(|(_, _, body)| body.starts_with("<!-- novacron-reconcile:plan")).collect();
        assert_eq!(ours.len(), 1, "exactly one review comment on #{n}: {ours:?}");
        assert_eq!(ours[0].1, "novacron-bot", "posted with the forge token");
        ours[0].2.clone()
    }

    async fn wait_for_comment(&self, n: u64, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some((_, _, body)) = self.forge.comments(n).into_iter().find(|(_, _, b)| b.contains(needle)) {
                return body;
            }
            assert!(Instant::now() < deadline, "no comment on #{n} containing {needle:?}: {:?}", self.forge.comments(n));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status_json(&self) -> Value {
        self.http.get(format!("{}/api/status", self.base)).send().await.expect("status").json().await.expect("json")
    }
}

fn spawn_serve(config: &Path, terraform: &Path, provider: &Path) -> (Child, String) {
    let envs = [
        ("NOVACRON_TEST_KEY", OsStr::new(TEST_API_KEY.1)),
        ("NOVACRON_TEST_REVIEW_KEY", OsStr::new(REVIEW_KEY.1)),
        ("NOVACRON_TEST_WEBHOOK", OsStr::new(SECRET)),
        ("NOVACRON_FORGE_TOKEN", OsStr::new(FORGE_TOKEN)),
        ("NOVACRON_TERRAFORM", terraform.as_os_str()),
        ("NOVACRON_PROVIDER", provider.as_os_str()),
    ];
    let (child, addr) = support::spawn_serve(config, &envs, &[TEST_API_KEY.1, REVIEW_KEY.1, FORGE_TOKEN, SECRET, "hunter2"]);
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_requests_get_one_graded_comment_a_policy_preview_and_approvals_from_writers() {
    let Some((terraform, provider)) = support::terraform::tools("pull request review scenario") else { return };
    // The review key can read and read state, nothing else: pull-request plans need no more.
    let scoped = format!("{}:read,state", REVIEW_KEY.1);
    let env = Env::start_with_keys(&config(2, 4), &[(REVIEW_KEY.0, scoped.as_str())]).await;
    let forge = MockForge::start().await;
    forge.set_permission("alice", "write");
    forge.set_permission("mallory", "read");
    for (name, rule, mode) in [("cpu-limit", CPU_RULE, "block"), ("owner-label", TEAM_RULE, "warn")] {
        env.client()
            .create(Kind::Policy, &json!({"name": name, "type": "compliance", "rule": rule, "enabled": true, "enforcement_mode": mode}))
            .await
            .expect("policy");
    }
    let config_file = env.dir().join("serve.toml");
    std::fs::write(
        &config_file,
        format!(
            "endpoint = \"{}\"\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\napi_key_env = \"NOVACRON_TEST_KEY\"\n\n[[repo]]\nname = \"infra\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"1h\"\nworkspace = \"prod\"\nauto_sync_max = \"none\"\nwebhook_secret_env = \"NOVACRON_TEST_WEBHOOK\"\nreview_pull_requests = true\nreview_api_key_env = \"NOVACRON_TEST_REVIEW_KEY\"\nforge_url = \"{}\"\nforge_repo = \"acme/infra\"\n",
            env.endpoint,
            env.state_path().display(),
            env.repo_url(),
            forge.url
        ),
    )
    .expect("config");
    let (serve, base) = spawn_serve(&config_file, &terraform, &provider);
    let work = env.dir().join("work");
    let mut t = Review { env, forge, http: reqwest::Client::new(), serve, base, work, deliveries: 0 };

    // The first reconcile rolls main out through Terraform into the platform's state.
    let deadline = Instant::now() + PATIENCE;
    while t.env.client().terraform_state("prod").await.ok().flatten().is_none() || t.env.client().find_by_name(Kind::Vm, "web").await.expect("list").is_none() {
        assert!(Instant::now() < deadline, "main was never rolled out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 1. A pull request raising cores above the `block` policy's limit: one comment, a failure
    // status naming the policy, the warn verdict listed, user data never shown.
    let sha = t.push_branch("more-cpu", &config(16, 4), None);
    let started = Instant::now();
    let answer = t.deliver("pull_request", t.pull_request("opened", 1, &sha, "more-cpu", "acme/infra")).await;
    assert_eq!(answer["reviewing"], json!(["infra"]), "{answer}");
    let (state, description) = t.final_status(&sha).await;
    eprintln!("review of pull request #1 posted {} ms after the webhook", started.elapsed().as_millis());
    assert_eq!(state, "failure");
    assert!(description.contains("cpu-limit"), "the status names the policy: {description}");
    let body = t.review_comment(1);
    assert!(body.contains("1 to change"), "{body}");
    assert!(body.contains("<code>cpu_cores</code>") && body.contains("<code>2</code> → <code>16</code>"), "old → new: {body}");
    assert!(body.contains("web asks for 16 cores; at most 8"), "the block verdict's message: {body}");
    assert!(body.contains("owner-label"), "the warn verdict is listed: {body}");
    assert!(body.contains(&sha[..12]), "the revision it describes: {body}");

    // 2. A second push to the same pull request: the same comment, updated in place.
    let posts_before = t.forge.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/issues/1/comments")).count();
    let sha2 = t.push_branch("more-cpu", &config(4, 8), None);
    t.deliver("pull_request", t.pull_request("synchronize", 1, &sha2, "more-cpu", "acme/infra")).await;
    let (state, description) = t.final_status(&sha2).await;
    assert_eq!(state, "success", "{description}");
    let body = t.review_comment(1);
    assert!(body.contains(&sha2[..12]) && !body.contains(&sha[..12]), "the comment describes the new head: {body}");
    assert!(body.contains("<code>memory_gb</code>"), "{body}");
    let posts_after = t.forge.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/issues/1/comments")).count();
    assert_eq!(posts_after, posts_before, "no new comment per push");

    // 3. Drift on a resource the pull request touches: the comment warns, naming who changed it.
    let web = t.env.client().find_by_name(Kind::Vm, "web").await.expect("list").expect("web");
    let web_id = web.id().to_string();
    t.env.patch(Kind::Vm, &web_id, json!({"metadata": {"team": "hotfix"}})).await;
    let drift_id = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = t.status_json().await;
            if let Some(id) = status["repos"][0]["pending_approvals"].as_array().and_then(|a| a.first()).and_then(|p| p["id"].as_str()) {
                break id.to_string();
            }
            assert!(Instant::now() < deadline, "the drift never awaited approval: {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let sha3 = t.push_branch("more-memory", &config(2, 8), None);
    t.deliver("pull_request", t.pull_request("opened", 2, &sha3, "more-memory", "acme/infra")).await;
    t.final_status(&sha3).await;
    let body = t.review_comment(2);
    assert!(body.contains("already differs on the platform"), "drift context: {body}");
    assert!(body.contains(&format!("<code>{}</code>", TEST_API_KEY.0)), "who changed it: {body}");

    // 4. A syntax error: Terraform's error with file and line instead of a plan.
    let sha4 = t.push_branch("broken", &config(2, 4).replace("metadata    = { team = \"web\" }", "metadata    = { team = "), None);
    // The forge fails the next two requests (a 502 as GitHub sends them): retried, nothing doubled.
    t.forge.fail_next(2, 502);
    t.deliver("pull_request", t.pull_request("opened", 3, &sha4, "broken", "acme/infra")).await;
    let (state, description) = t.final_status(&sha4).await;
    assert_eq!(state, "failure");
    assert!(description.contains("main.tf:"), "{description}");
    let body = t.review_comment(3);
    assert!(body.contains("Terraform rejects the configuration") && body.contains("<code>main.tf:"), "{body}");

    // 5. A fork: not planned, and the comment says why.
    let sha5 = t.push_branch("fork-change", &config(2, 6), Some(4));
    t.deliver("pull_request", t.pull_request("opened", 4, &sha5, "fork-change", "mallory/infra")).await;
    let (state, _) = t.final_status(&sha5).await;
    assert_eq!(state, "failure");
    assert!(t.review_comment(4).contains("comes from a fork"));

    // 6. `/novacron approve` from a reader is refused; from a writer it approves the drift's revert.
    let repo_url = t.env.repo_url();
    let comment = |login: &str, text: &str| {
        json!({"action": "created", "issue": {"number": 2, "pull_request": {"url": "x"}},
               "comment": {"body": text, "user": {"login": login}},
               "repository": {"full_name": "acme/infra", "clone_url": repo_url}})
    };
    let answer = t.deliver("issue_comment", comment("mallory", &format!("/novacron approve {drift_id}"))).await;
    assert_eq!(answer["approving"], json!(["infra"]), "{answer}");
    let refusal = t.wait_for_comment(2, "@mallory").await;
    assert!(refusal.contains("not approved") && refusal.contains("you have read"), "{refusal}");
    t.deliver("issue_comment", comment("alice", &format!("/novacron approve {drift_id}"))).await;
    let reply = t.wait_for_comment(2, "@alice").await;
    assert!(reply.contains("approved"), "{reply}");
    let deadline = Instant::now() + PATIENCE;
    while t.env.get(Kind::Vm, &web_id).await["metadata"]["team"] != "web" {
        assert!(Instant::now() < deadline, "the approved revert never happened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = t.env.bin(&["audit", "list", "--format", "json"]);
    let audit: Value = serde_json::from_slice(&audit.stdout).expect("audit list is JSON");
    let approved = audit.as_array().expect("array").iter().any(|e| e["actor"] == "alice" && e["action"] == "approve");
    assert!(approved, "the approval is audited with the login: {audit}");

    // 7. A pull request that reads the machine's environment into planned values: every known
    // secret is scrubbed from what is posted, whatever the encoding.
    let leak = config(2, 4).replace(
        "metadata    = { team = \"web\" }",
        "metadata    = { team = \"web\", env = file(\"/proc/self/environ\"), b64 = base64encode(file(\"/proc/self/environ\")) }",
    );
    let sha6 = t.push_branch("leak", &leak, None);
    t.deliver("pull_request", t.pull_request("opened", 5, &sha6, "leak", "acme/infra")).await;
    t.final_status(&sha6).await;
    let body = t.review_comment(5);
    assert!(body.contains("metadata.env") && body.contains("***"), "the environment was planned, secrets scrubbed: {}", &body[..body.len().min(3000)]);

    // No secret in any comment, reply or status the forge received.
    for r in t.forge.requests() {
        let text = r.body.to_string();
        for secret in [TEST_API_KEY.1, REVIEW_KEY.1, FORGE_TOKEN, SECRET, "hunter2"] {
            assert!(!text.contains(secret), "{secret:?} reached the forge in {} {}: {}", r.method, r.path, &text[..text.len().min(400)]);
        }
    }

    // 8. A critical change on main is held as a pending plan; a pull request that touches the
    // same network marks that change as already pending on the base branch, and a writer
    // approves the plan from the pull request.
    let main_rev = t.env.commit_main_tf(&open_firewall(&config(2, 4)), "open ssh");
    let push = json!({"ref": "refs/heads/main", "repository": {"clone_url": repo_url, "default_branch": "main"}});
    t.deliver("push", push).await;
    let plan_id = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = t.status_json().await;
            let plan = status["repos"][0]["pending_approvals"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["kind"] == "plan" && p["revision"] == main_rev.as_str()).cloned());
            if let Some(p) = plan {
                break p["id"].as_str().expect("plan id").to_string();
            }
            assert!(Instant::now() < deadline, "the critical rollout was never held: {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    git(&t.work, &["pull", "-q", t.env.remote.to_str().expect("utf-8"), "main"]);
    let sha7 = t.push_branch("ssh-and-memory", &open_firewall(&config(2, 6)), None);
    t.deliver("pull_request", t.pull_request("opened", 6, &sha7, "ssh-and-memory", "acme/infra")).await;
    let (state, description) = t.final_status(&sha7).await;
    assert_eq!(state, "failure", "a critical change fails the status: {description}");
    let body = t.review_comment(6);
    assert!(body.contains("<code>firewall_rule[0].cidr</code> ⏳"), "the base's pending change is marked: {body}");
    assert!(!body.contains("<code>memory_gb</code> ⏳"), "what the pull request adds is not: {body}");
    t.deliver("issue_comment", comment("alice", &format!("/novacron approve {plan_id}"))).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let net = t.env.client().find_by_name(Kind::Network, "core").await.expect("list").expect("core");
        if net.get("firewall_rules").and_then(|r| r[0]["cidr"].as_str()) == Some("0.0.0.0/0") {
            break;
        }
        assert!(Instant::now() < deadline, "the plan approved from the pull request was never applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The same review without a forge, for any CI: exit 2 (changes) with JSON, 0 for no changes.
    let plan = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
            .arg("plan")
            .args(args)
            .env("NOVACRON_API_KEY", REVIEW_KEY.1)
            .env("NOVACRON_ENDPOINT", &t.env.endpoint)
            .env("NOVACRON_CACHE_DIR", t.env.dir().join("cli-cache"))
            .env("NOVACRON_TERRAFORM", &terraform)
            .env("NOVACRON_PROVIDER", &provider)
            .output()
            .expect("plan runs")
    };
    let out = plan(&["--repo", &repo_url, "--ref", "more-memory", "--workspace", "prod", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let review: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(review["outcome"], "planned");
    let addresses: Vec<&str> = review["changes"].as_array().expect("changes").iter().filter_map(|c| c["address"].as_str()).collect();
    assert!(addresses.contains(&"novacron_vm.web"), "{addresses:?}");
    let out = plan(&["--repo", &repo_url, "--ref", "refs/pull/4/head", "--workspace", "prod"]);
    assert_eq!(out.status.code(), Some(2), "a fork's head is fetched from refs/pull/<n>/head: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha5[..12]), "{}", String::from_utf8_lossy(&out.stdout));
    let out = plan(&["--repo", &repo_url, "--ref", "main", "--workspace", "prod", "--format", "markdown"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "main has nothing to change: {text}");
    assert!(text.contains("no changes"), "{text}");

    // `drift` with that read-and-state key works too: detection needs no write scope.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["drift", "--repo", &repo_url, "--workspace", "prod", "--format", "json"])
        .env("NOVACRON_API_KEY", REVIEW_KEY.1)
        .env("NOVACRON_ENDPOINT", &t.env.endpoint)
        .env("NOVACRON_CACHE_DIR", t.env.dir().join("cli-cache"))
        .output()
        .expect("drift runs");
    assert!(matches!(out.status.code(), Some(0 | 2)), "drift with a read,state key: {}", String::from_utf8_lossy(&out.stderr));
}
