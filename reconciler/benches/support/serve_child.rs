//! The `serve` binary for a benchmark: starting it (the child, and the address it logs) and delivering signed push webhooks to it.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts the release binary on `config` with the API key in `NOVACRON_BENCH_KEY`; returns it
/// and the address it logged. Its warnings and errors are echoed on stderr.
pub fn spawn_serve(config: &Path, api_key: &str) -> (Child, String) {
    spawn_serve_with(config, api_key, &[])
}

/// [`spawn_serve`] with more environment variables: the secrets that `*_env` keys of the
/// config name (a bench cannot set its own environment: `set_var` is unsafe).
pub fn spawn_serve_with(config: &Path, api_key: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["serve", "--config"])
        .arg(config)
        .env("NOVACRON_BENCH_KEY", api_key)
        .env("NOVACRON_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                let _ = tx.send(addr.to_string());
            } else if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("serve: {line}");
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("serve logs its address");
    (child, addr)
}

/// Delivers a signed GitHub push webhook for `sha` of the local repository `repo` to the
/// service at `base`; panics unless it is accepted (202).
pub async fn deliver_push(http: &reqwest::Client, base: &str, secret: &str, repo: &Path, delivery: &str) {
    let body = serde_json::json!({"ref": "refs/heads/main", "repository": {"clone_url": repo.display().to_string()}}).to_string();
    let answer = http
        .post(format!("{base}/hooks/github"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", novacron_reconcile::serve::webhook::signature_header(secret.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), 202, "webhook refused");
}
