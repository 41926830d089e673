//! Benchmark: provider start-to-handshake time, `terraform plan` of 200 VMs + 20 networks beside 220 `terraform_data`, with provider peak RSS, and `terraform query` over 1,000 VMs.
//!
//! Prints figures and asserts nothing about speed. Run with
//! `cargo build --release -p terraform-provider-novacron && cargo bench -p novacron-acceptance --bench plan`
//! after `acceptance/install-terraform.sh`. The provider is `NOVACRON_PROVIDER_BIN`, else
//! `target/release`, else `target/debug` (the figures say which).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use novacron_acceptance::{InstallMode, Output, TestPlatform, Tf, TfVersion, find_provider, platform::API_KEY};

/// The go-plugin magic cookie Terraform hands its providers.
const HANDSHAKE_RUNS: usize = 50;
const PLAN_ROUNDS: usize = 5;
const VMS: usize = 200;
const NETWORKS: usize = 20;
const QUERY_VMS: usize = 1_000;
const QUERY_ROUNDS: usize = 3;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plan benchmark: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let provider = find_provider(&["release", "debug"])?;
    println!("provider: {}", provider.display());
    handshake(&provider)?;
    let terraform = TfVersion::V1_15_5;
    if !terraform.binary().is_file() {
        println!("SKIP terraform plan comparison: {} is missing; run acceptance/install-terraform.sh", terraform.binary().display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(plans(&provider, terraform))?;
    runtime.block_on(query(&provider, terraform))
}

/// `terraform query` of a `list "novacron_vm"` block over 1,000 VMs: the wall time with
/// `limit` at 1,000 (every VM, two API pages), with and without `include_resource`, and at
/// Terraform's default limit of 100; the provider's peak RSS.
async fn query(provider: &Path, version: TfVersion) -> anyhow::Result<()> {
    let platform = TestPlatform::start_with(|c| c.provision_delay = Duration::ZERO).await;
    let net = platform.client().create(novacron_client::Kind::Network, &serde_json::json!({"name": "query-net", "cidr": "10.90.0.0/16"})).await?.value;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (client, net) = (platform.client().clone(), net.id().to_string());
        tasks.spawn(async move {
            for i in (worker..QUERY_VMS).step_by(8) {
                let body =
                    serde_json::json!({"name": format!("q-{i:04}"), "cpu_cores": 1, "memory_gb": 2, "template_id": "tpl-ubuntu-24-04", "network_id": net});
                client.create(novacron_client::Kind::Vm, &body).await?;
            }
            Ok::<(), novacron_client::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!("query setup: {QUERY_VMS} vms created through the API in {:.1} s", started.elapsed().as_secs_f64());
    let mut tf = Tf::new(version, InstallMode::DevOverrides, provider, &platform.endpoint(), API_KEY)?;
    tf.set_echo(false);
    tf.write("main.tf", "terraform {\n  required_providers {\n    novacron = { source = \"novacron/novacron\" }\n  }\n}\n\nprovider \"novacron\" {}\n");
    for (label, limit, include) in [("limit 1000", 1000, false), ("limit 1000, include_resource", 1000, true), ("default limit (100)", 0, false)] {
        let limit_line = if limit > 0 { format!("  limit            = {limit}\n") } else { String::new() };
        tf.write(
            "all.tfquery.hcl",
            &format!("list \"novacron_vm\" \"all\" {{\n  provider         = novacron\n  include_resource = {include}\n{limit_line}  config {{\n    name_prefix = \"q-\"\n  }}\n}}\n"),
        );
        let mut times = Vec::new();
        let mut peak_kib = 0;
        let mut results = 0;
        for _ in 0..QUERY_ROUNDS {
            let sampler = RssSampler::start();
            let out = tf.run(&["query", "-no-color"]).await;
            let (peak, _) = sampler.stop();
            anyhow::ensure!(out.code == 0, "terraform query failed:\n{out}");
            results = out.stdout.lines().filter(|l| l.contains("list.novacron_vm.all")).count();
            peak_kib = peak_kib.max(peak);
            times.push(out.elapsed);
        }
        times.sort();
        println!(
            "terraform query, {label}: {results} results, median {:.2} s of {QUERY_ROUNDS} (best {:.2} s); provider peak RSS {:.1} MiB",
            percentile(&times, 50).as_secs_f64(),
            times[0].as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
    platform.shutdown().await;
    Ok(())
}

/// Spawns the provider as Terraform would and times how long until it prints its handshake line.
fn handshake(provider: &Path) -> anyhow::Result<()> {
    let mut samples = Vec::with_capacity(HANDSHAKE_RUNS);
    let mut line = String::new();
    for run in 0..HANDSHAKE_RUNS + 3 {
        let started = Instant::now();
        let mut child = Command::new(provider)
            .env_clear()
            .env(terraform_provider_novacron::server::MAGIC_COOKIE_KEY, terraform_provider_novacron::server::MAGIC_COOKIE_VALUE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", provider.display()))?;
        line.clear();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let elapsed = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        let read = read.context("reading the handshake line")?;
        anyhow::ensure!(read > 0 && line.starts_with("1|5|"), "the provider printed {line:?} instead of a `1|5|...` handshake line");
        // The first runs warm the page cache; they are not counted.
        if run >= 3 {
            samples.push(elapsed);
        }
    }
    samples.sort();
    println!(
        "handshake: {HANDSHAKE_RUNS} runs, p50 {:.2} ms, p99 {:.2} ms, min {:.2} ms, max {:.2} ms (line: {})",
        ms(percentile(&samples, 50)),
        ms(percentile(&samples, 99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        line.trim_end()
    );
    Ok(())
}

/// Applies both configurations, then times alternating plans of each.
async fn plans(provider: &Path, version: TfVersion) -> anyhow::Result<()> {
    let platform = TestPlatform::start_with(|c| c.provision_delay = Duration::ZERO).await;
    let mut novacron = Tf::new(version, InstallMode::DevOverrides, provider, &platform.endpoint(), API_KEY)?;
    let mut builtin = Tf::new(version, InstallMode::DevOverrides, provider, &platform.endpoint(), API_KEY)?;
    novacron.set_echo(false);
    builtin.set_echo(false);
    novacron.write("main.tf", &novacron_config());
    builtin.write("main.tf", &builtin_config());

    let setup = Instant::now();
    builtin.ok(&["init", "-input=false", "-no-color"]).await;
    novacron.apply().await;
    builtin.apply().await;
    println!("setup: applied {VMS} vms + {NETWORKS} networks and {} terraform_data in {:.1} s", VMS + NETWORKS, setup.elapsed().as_secs_f64());

    let mut novacron_times = Vec::new();
    let mut builtin_times = Vec::new();
    let mut no_refresh_times = Vec::new();
    let mut peak_kib = 0u64;
    for round in 1..=PLAN_ROUNDS {
        let sampler = RssSampler::start();
        let out = novacron.plan().await;
        let (peak, processes) = sampler.stop();
        clean(&out, "novacron")?;
        peak_kib = peak_kib.max(peak);
        let out_builtin = builtin.plan().await;
        clean(&out_builtin, "terraform_data")?;
        // Without refresh: what the plan costs beyond reading 220 objects from the platform.
        let no_refresh = novacron.run(&["plan", "-refresh=false", "-detailed-exitcode", "-input=false", "-no-color"]).await;
        clean(&no_refresh, "novacron -refresh=false")?;
        println!(
            "round {round}: plan of {VMS} vms + {NETWORKS} networks {:.2} s (-refresh=false {:.2} s; {processes} provider processes, peak RSS {:.1} MiB), plan of {} terraform_data {:.2} s",
            out.elapsed.as_secs_f64(),
            no_refresh.elapsed.as_secs_f64(),
            peak as f64 / 1024.0,
            VMS + NETWORKS,
            out_builtin.elapsed.as_secs_f64()
        );
        novacron_times.push(out.elapsed);
        builtin_times.push(out_builtin.elapsed);
        no_refresh_times.push(no_refresh.elapsed);
    }
    novacron_times.sort();
    builtin_times.sort();
    no_refresh_times.sort();
    let a = percentile(&novacron_times, 50);
    let b = percentile(&builtin_times, 50);
    println!(
        "plan (refresh included), median of {PLAN_ROUNDS}: novacron {:.2} s, terraform_data {:.2} s, ratio {:.2}x \
         (novacron -refresh=false {:.2} s); provider peak RSS (VmHWM) {:.1} MiB; terraform {}",
        a.as_secs_f64(),
        b.as_secs_f64(),
        a.as_secs_f64() / b.as_secs_f64(),
        percentile(&no_refresh_times, 50).as_secs_f64(),
        peak_kib as f64 / 1024.0,
        version.as_str()
    );
    platform.shutdown().await;
    Ok(())
}

/// A plan of an applied configuration must be empty, or the timing means nothing.
fn clean(out: &Output, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(out.code == 0, "the {what} plan is not empty (exit {}):\n{out}", out.code);
    Ok(())
}

fn novacron_config() -> String {
    format!(
        r#"terraform {{
  required_providers {{
    novacron = {{
      source = "novacron/novacron"
    }}
  }}
}}

provider "novacron" {{}}

resource "novacron_network" "net" {{
  count = {NETWORKS}
  name  = "bench-net-${{count.index}}"
  cidr  = "10.${{count.index}}.0.0/24"
}}

resource "novacron_vm" "vm" {{
  count       = {VMS}
  name        = "bench-vm-${{count.index}}"
  cpu_cores   = 1
  memory_gb   = 1
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.net[count.index % {NETWORKS}].id
  metadata = {{
    index = tostring(count.index)
  }}
}}
"#
    )
}

fn builtin_config() -> String {
    format!(
        r#"resource "terraform_data" "d" {{
  count = {}
  input = {{
    name      = "bench-${{count.index}}"
    cpu_cores = 1
    memory_gb = 1
  }}
}}
"#,
        VMS + NETWORKS
    )
}

/// Polls `/proc` for `terraform-provider-novacron` processes descending from this one and
/// keeps the largest peak resident set (`VmHWM`) seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, usize)>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let me = std::process::id();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            let mut seen = std::collections::BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                for pid in provider_pids(me) {
                    if let Some(kib) = status_kib(pid, "VmHWM:") {
                        peak = peak.max(kib);
                        seen.insert(pid);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (peak, seen.len())
        });
        RssSampler { stop, thread }
    }

    /// Peak RSS in KiB, and how many provider processes were seen.
    fn stop(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// Pids of provider processes whose ancestry includes `ancestor`.
fn provider_pids(ancestor: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| "terraform-provider-novacron".starts_with(c.trim_end())))
        .filter(|pid| descends_from(*pid, ancestor))
        .collect()
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..32 {
        if pid == ancestor {
            return true;
        }
        match status_kib(pid, "PPid:") {
            Some(parent) if parent > 0 => pid = parent as u32,
            _ => return false,
        }
    }
    false
}

/// A numeric field of `/proc/<pid>/status` (`VmHWM:` in KiB, `PPid:`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status"))).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.split_whitespace().next()?.parse().ok())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
