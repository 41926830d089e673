//! Benchmark of pull-request reviews through real Terraform: `novacron-reconcile serve` (the
//! release binary) manages 100 objects (one network, 99 VMs with `for_each`) with Terraform's
//! state in the platform and reviews pull requests against a recording forge. Each pull request
//! changes one VM's memory; its signed `pull_request` webhook starts a review (plan of the head
//! with `-refresh=false -lock=false`, policy preview by dry run), which posts one comment and a
//! `novacron/plan` status. Prints p50/p90/max of webhook -> comment and final status posted,
//! for `opened` (a new working copy each) and `synchronize` (the pull request's working copy
//! reused); asserts nothing about speed.
//!
//! Run: `cargo build --release -p terraform-provider-novacron && cargo bench -p novacron-reconcile --bench review`
//! Needs Terraform (`bash acceptance/install-terraform.sh`, or NOVACRON_TERRAFORM).
//! Knobs: BENCH_OBJECTS (100), BENCH_PULL_REQUESTS (10), BENCH_SYNCHRONIZE (3).

// The bench uses the forge's recording side only, and not every helper of the serve child.
#[allow(dead_code)]
#[path = "../tests/support/forge.rs"]
mod forge;
use forge::MockForge;
#[path = "../tests/support/git_cli.rs"]
mod git_cli;
use git_cli::git;
#[allow(dead_code)]
#[path = "support/serve_child.rs"]
mod serve_child;

#[path = "support/tools.rs"]
mod tools;
use serve_child::spawn_serve_with;
use tools::{env_or, quantile, tools};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use novacron_reconcile::serve::webhook::signature_header;
use serde_json::{Value, json};

const SECRET: &str = "bench-webhook-secret";
const REVIEW_KEY: (&str, &str) = ("reviewer", "bench-review-key-5a6b7c8d");
const WORKSPACE: &str = "bench";
const FORGE_REPO: &str = forge::REPO;
const MARKER: &str = "<!-- novacron-reconcile:plan";

/// The desired state: one network and `vms` VMs from a tfvars map, all with 4 GB except
/// `change` (VM index, memory), state in the platform.
fn write_repo(dir: &Path, endpoint: &str, vms: u64, change: Option<(u64, u64)>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let main = format!(
        "terraform {{\n  required_providers {{\n    novacron = {{ source = \"novacron/novacron\" }}\n  }}\n  backend \"http\" {{\n    address = \"{endpoint}/v1/tfstate/{WORKSPACE}\"\n  }}\n}}\n\
         variable \"vms\" {{}}\nresource \"novacron_network\" \"core\" {{\n  name = \"core\"\n  cidr = \"10.0.0.0/16\"\n}}\n\
         resource \"novacron_vm\" \"fleet\" {{\n  for_each    = var.vms\n  name        = each.key\n  cpu_cores   = 2\n  memory_gb   = each.value.memory\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = novacron_network.core.id\n}}\n"
    );
    std::fs::write(dir.join("main.tf"), main).expect("write");
    let memory = |i: u64| change.filter(|(vm, _)| *vm == i).map_or(4, |(_, gb)| gb);
    let map: serde_json::Map<String, Value> = (0..vms).map(|i| (format!("vm-{i:04}"), json!({"memory": memory(i)}))).collect();
    std::fs::write(dir.join("terraform.tfvars.json"), json!({"vms": map}).to_string()).expect("write");
}

/// Polls every 20 ms until the repository has reconciled `sha` with nothing pending.
async fn until_rolled_out(http: &reqwest::Client, base: &str, sha: &str, objects: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status: Value = http.get(format!("{base}/api/status")).send().await.expect("status").json().await.expect("json");
        let r = &status["repos"][0];
        if r["revision"].as_str() == Some(sha) && r["running"] == false && r["summary"]["three_way"]["in_sync"].as_u64() == Some(objects) {
            return;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {sha}: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The serve child, the forge it posts to, and the work tree pull requests are pushed from.
struct Bench {
    forge: MockForge,
    http: reqwest::Client,
    base: String,
    work: PathBuf,
    remote: PathBuf,
    remote_url: String,
    main_sha: String,
    endpoint: String,
    vms: u64,
}

impl Bench {
    /// Commits the fleet with VM `vm` at `memory` GB on `branch` (from main) and force-pushes it; returns the head.
    fn push_branch(&self, branch: &str, vm: u64, memory: u64) -> String {
        git(&self.work, &["checkout", "-q", "-B", branch, "main"]);
        write_repo(&self.work, &self.endpoint, self.vms, Some((vm, memory)));
        git(&self.work, &["commit", "-q", "-am", &format!("vm-{vm:04} gets {memory} GB")]);
        git(&self.work, &["push", "-q", "-f", self.remote.to_str().expect("utf-8"), branch]);
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["checkout", "-q", "main"]);
        sha
    }

    /// Delivers a signed `pull_request` webhook; panics unless a review is queued.
    async fn deliver(&self, action: &str, number: u64, sha: &str, branch: &str, delivery: &str) {
        let body = json!({"action": action, "number": number,
               "pull_request": {"head": {"ref": branch, "sha": sha, "repo": {"full_name": FORGE_REPO}},
                                "base": {"ref": "main", "sha": self.main_sha, "repo": {"full_name": FORGE_REPO}}},
               "repository": {"full_name": FORGE_REPO, "clone_url": self.remote_url, "default_branch": "main"}})
        .to_string();
        let answer = self
            .http
            .post(format!("{}/hooks/github", self.base))
            .header("X-GitHub-Event", "pull_request")
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", signature_header(SECRET.as_bytes(), body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("webhook");
        assert_eq!(answer.status(), 202, "webhook refused");
        let answer: Value = answer.json().await.expect("json");
        assert_eq!(answer["reviewing"], json!(["fleet"]), "{answer}");
    }

    /// Polls the forge every 20 ms until pull request `number` has a review comment describing
    /// `sha` and `sha` has a final `novacron/plan` status; returns when, the comment and the status.
    async fn until_reviewed(&self, number: u64, sha: &str) -> (Instant, String, (String, String)) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let comment = self.forge.comments(number).into_iter().find(|(_, _, b)| b.starts_with(MARKER) && b.contains(&sha[..12]));
            let status = self.forge.statuses(sha).into_iter().rfind(|(_, c, _)| c == "novacron/plan").filter(|(s, _, _)| s != "pending");
            if let (Some((_, _, body)), Some((state, _, description))) = (comment, status) {
                return (Instant::now(), body, (state, description));
            }
            assert!(Instant::now() < deadline, "no review of #{number} at {sha}: {:?} {:?}", self.forge.comments(number), self.forge.statuses(sha));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The correctness of one review: one comment on the pull request, planning 1 change to
    /// VM `vm`, with a successful final status.
    fn check(&self, number: u64, vm: u64, body: &str, status: &(String, String)) {
        let ours = self.forge.comments(number).into_iter().filter(|(_, _, b)| b.starts_with(MARKER)).count();
        assert_eq!(ours, 1, "exactly one review comment on #{number}");
        assert!(body.contains("1 to change") && body.contains(&format!("vm-{vm:04}")), "#{number} plans the one change: {}", &body[..body.len().min(2000)]);
        assert_eq!(status.0, "success", "#{number}: {}", status.1);
    }

    fn comment_posts(&self, number: u64) -> usize {
        let path = format!("/issues/{number}/comments");
        self.forge.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with(&path)).count()
    }
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| quantile(&samples, p);
    println!("{label}: n={} p50 {:.2} s, p90 {:.2} s, max {:.2} s", samples.len(), at(0.5), at(0.9), at(1.0));
}

fn main() {
    let (terraform, provider) = match tools() {
        Ok(t) => t,
        Err(why) => {
            println!("review benchmark skipped: {why}");
            return;
        }
    };
    let objects = env_or("BENCH_OBJECTS", 100).max(2);
    let pull_requests = env_or("BENCH_PULL_REQUESTS", 10).max(1);
    let synchronize = env_or("BENCH_SYNCHRONIZE", 3);
    let vms = objects - 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut platform_config = PlatformConfig::for_tests(dir.path().join("platform"));
    platform_config.provision_delay = Duration::from_millis(100);
    platform_config.api_keys.push(novacron_platform::ApiKey::parse(&format!("{}:{}", REVIEW_KEY.0, REVIEW_KEY.1)).expect("a well-formed key"));
    let platform = runtime.block_on(novacron_platform::start(platform_config)).expect("platform");
    let endpoint = platform.endpoint();
    let client = Client::new(ClientConfig::new(endpoint.clone(), TEST_API_KEY.1)).expect("client");
    let forge = runtime.block_on(MockForge::start());

    let work = dir.path().join("work");
    write_repo(&work, &endpoint, vms, None);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "fleet"]);
    let remote = dir.path().join("remote.git");
    git(dir.path(), &["clone", "-q", "--bare", work.to_str().expect("utf-8"), remote.to_str().expect("utf-8")]);
    let main_sha = git(&work, &["rev-parse", "HEAD"]);
    let remote_url = format!("file://{}", remote.display());
    let config = dir.path().join("serve.toml");
    let text = format!(
        "endpoint = \"{endpoint}\"\nlisten = \"127.0.0.1:0\"\nstate = \"state.db\"\napi_key_env = \"NOVACRON_BENCH_KEY\"\nterraform = \"{}\"\nprovider = \"{}\"\n\n\
         [[repo]]\nname = \"fleet\"\nurl = \"{remote_url}\"\nref = \"main\"\ninterval = \"1h\"\nworkspace = \"{WORKSPACE}\"\nauto_apply_max = \"medium\"\n\
         webhook_secret_env = \"NOVACRON_BENCH_WEBHOOK\"\nreview_pull_requests = true\nreview_api_key_env = \"NOVACRON_BENCH_REVIEW_KEY\"\n\
         forge_url = \"{}\"\nforge_repo = \"{FORGE_REPO}\"\n",
        terraform.display(),
        provider.display(),
        forge.url
    );
    std::fs::write(&config, text).expect("config");
    let started = Instant::now();
    let secrets = [("NOVACRON_BENCH_WEBHOOK", SECRET), ("NOVACRON_BENCH_REVIEW_KEY", REVIEW_KEY.1), ("NOVACRON_FORGE_TOKEN", forge::TOKEN)];
    let (mut child, addr) = spawn_serve_with(&config, TEST_API_KEY.1, &secrets);
    let b = Bench { forge, http: reqwest::Client::new(), base: format!("http://{addr}"), work, remote, remote_url, main_sha, endpoint, vms };
    runtime.block_on(async {
        until_rolled_out(&b.http, &b.base, &b.main_sha, objects).await;
        assert!(client.terraform_state(WORKSPACE).await.expect("state").is_some(), "the state is in the platform");
        println!("setup: {objects} objects created by the first rollout (plan + apply of {objects} creates) in {:.1} s", started.elapsed().as_secs_f64());

        let mut opened = Vec::new();
        for n in 1..=pull_requests {
            // A different VM and memory each time: vm-0000, vm-0007, ... at 5, 6, ... GB.
            let (vm, memory) = ((n - 1) * 7 % vms, 4 + n);
            let branch = format!("pr-{n}");
            let sha = b.push_branch(&branch, vm, memory);
            let t0 = Instant::now();
            b.deliver("opened", n, &sha, &branch, &format!("bench-opened-{n}-{sha}")).await;
            let (seen, body, status) = b.until_reviewed(n, &sha).await;
            b.check(n, vm, &body, &status);
            opened.push(seen - t0);
        }

        let mut updated = Vec::new();
        let posts = b.comment_posts(1);
        for k in 1..=synchronize {
            let (vm, memory) = (0, 100 + k);
            let sha = b.push_branch("pr-1", vm, memory);
            let t0 = Instant::now();
            b.deliver("synchronize", 1, &sha, "pr-1", &format!("bench-synchronize-{k}-{sha}")).await;
            let (seen, body, status) = b.until_reviewed(1, &sha).await;
            b.check(1, vm, &body, &status);
            assert!(body.contains(&format!("<code>{memory}</code>")), "the updated comment plans {memory} GB");
            updated.push(seen - t0);
        }
        assert_eq!(b.comment_posts(1), posts, "synchronize updates the comment in place");

        let label = format!("pull_request webhook -> review comment + final status (plan changing 1 of {objects})");
        percentiles(&format!("{label}, opened"), opened.clone());
        if opened.len() > 1 {
            let mut later = opened[1..].to_vec();
            later.sort();
            println!("  first opened {:.2} s, later p50 {:.2} s", opened[0].as_secs_f64(), later[(later.len() - 1) / 2].as_secs_f64());
        }
        if !updated.is_empty() {
            percentiles(&format!("{label}, synchronize (comment updated, working copy reused)"), updated);
        }
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    runtime.block_on(platform.shutdown()).expect("platform stops");
}
