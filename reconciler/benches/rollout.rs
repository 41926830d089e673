//! Benchmark of rollouts through real Terraform: `novacron-reconcile serve` (the release binary)
//! manages 100 objects (one network, 99 VMs with `for_each`) with Terraform's state in the
//! platform; each pushed commit changes one VM's memory, its webhook starts a run, Terraform
//! plans and applies it. Prints p50/p99 of push -> rolled out; asserts nothing about speed.
//!
//! Run: `cargo build --release -p terraform-provider-novacron && cargo bench -p novacron-reconcile --bench rollout`
//! Needs Terraform (`bash acceptance/install-terraform.sh`, or NOVACRON_TERRAFORM).
//! Knobs: BENCH_OBJECTS (100), BENCH_PUSHES (10).

#[path = "../tests/support/git_cli.rs"]
mod git_cli;
use git_cli::git;
#[path = "support/serve_child.rs"]
mod serve_child;

#[path = "support/tools.rs"]
mod tools;
use serve_child::{deliver_push, spawn_serve};
use tools::{env_or, quantile, tools};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use serde_json::{Value, json};

const SECRET: &str = "bench-webhook-secret";
const WORKSPACE: &str = "bench";

/// The desired state: one network and `vms` VMs from a tfvars map (the first `bumped` with 8 GB), state in the platform.
fn write_repo(dir: &Path, endpoint: &str, vms: u64, bumped: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let main = format!(
        "terraform {{\n  required_providers {{\n    novacron = {{ source = \"novacron/novacron\" }}\n  }}\n  backend \"http\" {{\n    address = \"{endpoint}/v1/tfstate/{WORKSPACE}\"\n  }}\n}}\n\
         variable \"vms\" {{}}\nresource \"novacron_network\" \"core\" {{\n  name = \"core\"\n  cidr = \"10.0.0.0/16\"\n}}\n\
         resource \"novacron_vm\" \"fleet\" {{\n  for_each    = var.vms\n  name        = each.key\n  cpu_cores   = 2\n  memory_gb   = each.value.memory\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = novacron_network.core.id\n}}\n"
    );
    std::fs::write(dir.join("main.tf"), main).expect("write");
    let map: serde_json::Map<String, Value> = (0..vms).map(|i| (format!("vm-{i:04}"), json!({"memory": if i < bumped { 8 } else { 4 }}))).collect();
    std::fs::write(dir.join("terraform.tfvars.json"), json!({"vms": map}).to_string()).expect("write");
}

async fn repo_status(http: &reqwest::Client, base: &str) -> Value {
    let status: Value = http.get(format!("{base}/api/status")).send().await.expect("status").json().await.expect("json");
    status["repos"][0].clone()
}

/// Polls every 20 ms until the repository has reconciled `sha` with nothing pending.
async fn until_rolled_out(http: &reqwest::Client, base: &str, sha: &str, objects: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = repo_status(http, base).await;
        let done = r["revision"].as_str() == Some(sha) && r["running"] == false && r["summary"]["three_way"]["in_sync"].as_u64() == Some(objects);
        if done {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "gave up waiting for {sha}: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| quantile(&samples, p);
    println!("{label}: n={} p50 {:.2} s, p99 {:.2} s, max {:.2} s", samples.len(), at(0.5), at(0.99), at(1.0));
}

fn main() {
    let (terraform, provider) = match tools() {
        Ok(t) => t,
        Err(why) => {
            println!("rollout benchmark skipped: {why}");
            return;
        }
    };
    let objects = env_or("BENCH_OBJECTS", 100).max(2);
    let pushes = env_or("BENCH_PUSHES", 10).max(1);
    let vms = objects - 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut platform_config = PlatformConfig::for_tests(dir.path().join("platform"));
    platform_config.provision_delay = Duration::from_millis(100);
    let platform = runtime.block_on(novacron_platform::start(platform_config)).expect("platform");
    let endpoint = platform.endpoint();
    let client = Client::new(ClientConfig::new(endpoint.clone(), TEST_API_KEY.1)).expect("client");
    let repo = dir.path().join("repo");
    write_repo(&repo, &endpoint, vms, 0);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "fleet"]);
    let first_sha = git(&repo, &["rev-parse", "HEAD"]);
    let config = dir.path().join("serve.toml");
    let text = format!(
        "endpoint = \"{endpoint}\"\nlisten = \"127.0.0.1:0\"\nstate = \"state.db\"\napi_key_env = \"NOVACRON_BENCH_KEY\"\nterraform = \"{}\"\nprovider = \"{}\"\n\n\
         [[repo]]\nname = \"fleet\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"1h\"\nwebhook_secret = \"{SECRET}\"\n",
        terraform.display(),
        provider.display(),
        repo.display()
    );
    std::fs::write(&config, text).expect("config");
    let (mut child, addr) = spawn_serve(&config, TEST_API_KEY.1);
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    runtime.block_on(async {
        let started = Instant::now();
        let ready = until_rolled_out(&http, &base, &first_sha, objects).await;
        println!("setup: {objects} objects created by the first rollout (plan + apply of {objects} creates) in {:.1} s", (ready - started).as_secs_f64());
        let mut samples = Vec::new();
        for n in 0..pushes {
            write_repo(&repo, &endpoint, vms, n % vms + 1);
            git(&repo, &["commit", "-q", "-am", &format!("vm-{:04} gets 8 GB", n % vms)]);
            let sha = git(&repo, &["rev-parse", "HEAD"]);
            let t0 = Instant::now();
            deliver_push(&http, &base, SECRET, &repo, &format!("bench-{n}-{sha}")).await;
            let seen = until_rolled_out(&http, &base, &sha, objects).await;
            let vm = client.find_by_name(Kind::Vm, &format!("vm-{:04}", n % vms)).await.expect("list").expect("vm");
            assert_eq!(vm.get("memory_gb"), Some(&json!(8)), "the push was applied");
            samples.push(seen - t0);
        }
        percentiles(&format!("pushed commit -> webhook -> rolled out (plan + apply changing 1 of {objects})"), samples);
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    runtime.block_on(platform.shutdown()).expect("platform stops");
}
