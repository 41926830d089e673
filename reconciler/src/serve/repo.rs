//! One configured repository inside `serve`: its webhook secret, its coalescing trigger, and where it stands (revision, last run, drift, the objects it manages).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use novacron_client::Event;
use novacron_schemas::Kind;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::config::{Remediation, RepoConfig};
use crate::remediation::{FORGE_TOKEN_ENV, GitHubForge};
use crate::report::{DriftReport, Status, Summary};
use crate::state::StoredRepo;
use crate::sync::SyncReport;

/// A repository, its trigger and its status.
pub struct RepoHandle {
    /// The `[[repo]]` table.
    pub config: RepoConfig,
    /// The webhook secret, when one is configured; webhooks cannot trigger the repo without it.
    pub secret: Option<Vec<u8>>,
    /// The forge for remediation pull requests (`remediation = "pr"`) and reviews.
    pub forge: Option<GitHubForge>,
    /// The forge token (for scrubbing what is posted).
    pub forge_token: Option<String>,
    /// The API key pull-request plans use (`review_api_key_env`); `None`: the service's key.
    pub review_key: Option<String>,
    wake: Notify,
    pending: Mutex<Option<&'static str>>,
    status: Mutex<RepoStatus>,
    managed: Mutex<HashSet<(Kind, String)>>,
    last_sync: Mutex<Option<Arc<SyncReport>>>,
}

impl std::fmt::Debug for RepoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The webhook secret is never printed; only whether there is one.
        f.debug_struct("RepoHandle").field("config", &self.config).field("secret", &self.secret.as_ref().map(|_| "***")).finish_non_exhaustive()
    }
}

/// Where a repository stands, as `/api/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoStatus {
    /// The commit last reconciled.
    pub revision: Option<String>,
    /// When the last run ended (RFC 3339).
    pub last_run: Option<String>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// True while a reconcile runs.
    pub running: bool,
    /// Runs started since this process started.
    pub runs: u64,
    /// Failures in a row (drives the backoff).
    pub consecutive_errors: u32,
    /// How long the last run took, in milliseconds.
    pub last_duration_ms: Option<u64>,
    /// What started the last run (`startup`, `poll`, `webhook`, `event`, `retry`).
    pub last_trigger: Option<&'static str>,
    /// Counts of the last successful report.
    pub summary: Option<Summary>,
    /// Drift awaiting approval.
    pub pending_approvals: Vec<serde_json::Value>,
}

impl RepoHandle {
    /// A handle for `config`, resuming from `stored`; `env` looks up `webhook_secret_env`.
    pub fn new(config: RepoConfig, stored: StoredRepo, env: impl Fn(&str) -> Option<String>) -> Result<RepoHandle, String> {
        let name = config.name.get_ref().clone();
        let secret = match (&config.webhook_secret_env, &config.webhook_secret) {
            (Some(var), _) => {
                let var = var.get_ref();
                let value = env(var).filter(|s| !s.is_empty()).ok_or_else(|| format!("repo {name:?}: webhook_secret_env names {var}, which is not set"))?;
                Some(value.into_bytes())
            }
            (None, Some(plain)) => {
                tracing::warn!(repo = %name, "webhook_secret is written in the config file in plain text; prefer webhook_secret_env");
                Some(plain.expose().as_bytes().to_vec())
            }
            (None, None) => {
                tracing::info!(repo = %name, "no webhook secret configured: webhooks cannot trigger this repo");
                None
            }
        };
        let forge = match (config.remediation, config.review_pull_requests) {
            (Remediation::None, false) => None,
            _ => {
                let var = config.forge_token_env.as_deref().unwrap_or(FORGE_TOKEN_ENV);
                let token = env(var).unwrap_or_default();
                let url = config.forge_url.as_deref().unwrap_or("https://api.github.com");
                let owner_repo = config.forge_repo.as_deref().unwrap_or_default();
                Some(GitHubForge::new(url, owner_repo, &token).map_err(|e| format!("repo {name:?}: forge: {e} (forge_token_env: {var})"))?)
            }
        };
        let forge_token = forge.as_ref().and_then(|_| env(config.forge_token_env.as_deref().unwrap_or(FORGE_TOKEN_ENV))).filter(|t| !t.is_empty());
        let review_key = match &config.review_api_key_env {
            Some(var) => {
                Some(env(var).filter(|k| !k.trim().is_empty()).ok_or_else(|| format!("repo {name:?}: review_api_key_env names {var}, which is not set"))?)
            }
            None => None,
        };
        let summary = stored.summary.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        let status = RepoStatus {
            revision: stored.revision,
            last_run: stored.last_run,
            last_error: stored.last_error,
            summary: summary.and_then(|s| summary_from_json(&s)),
            ..RepoStatus::default()
        };
        Ok(RepoHandle {
            config,
            secret,
            forge,
            forge_token,
            review_key,
            wake: Notify::new(),
            pending: Mutex::new(None),
            status: Mutex::new(status),
            managed: Mutex::new(HashSet::new()),
            last_sync: Mutex::new(None),
        })
    }

    /// The repo's name.
    pub fn name(&self) -> &str {
        self.config.name.get_ref()
    }

    /// The repository as the state database records it (URL without credentials).
    pub fn state_key(&self) -> String {
        crate::git::redact(&self.config.url)
    }

    /// Asks for a reconcile now. Triggers that arrive while one runs coalesce into one follow-up run.
    pub fn trigger(&self, source: &'static str) {
        *lock(&self.pending) = Some(source);
        self.wake.notify_one();
    }

    /// Waits for [`RepoHandle::trigger`] and returns its source.
    pub async fn triggered(&self) -> &'static str {
        self.wake.notified().await;
        lock(&self.pending).take().unwrap_or("trigger")
    }

    /// A copy of the status.
    pub fn status(&self) -> RepoStatus {
        lock(&self.status).clone()
    }

    /// Changes the status.
    pub fn update_status<T>(&self, f: impl FnOnce(&mut RepoStatus) -> T) -> T {
        f(&mut lock(&self.status))
    }

    /// The latest successful sync of this process (its report, actions and remediation), for the console.
    pub fn last_sync(&self) -> Option<Arc<SyncReport>> {
        lock(&self.last_sync).clone()
    }

    /// Keeps `sync` as the latest.
    pub fn set_last_sync(&self, sync: Arc<SyncReport>) {
        *lock(&self.last_sync) = Some(sync);
    }

    /// Remembers which objects the last report matched (by kind and id, and by kind and name,
    /// so that a missing object, once created, is recognised too).
    pub fn set_managed(&self, report: &DriftReport) {
        let mut set = HashSet::new();
        for r in report.resources.iter().filter(|r| r.status != Status::Unmanaged) {
            let Some(kind) = Kind::from_terraform_type(&r.resource_type) else { continue };
            set.insert((kind, format!("name:{}", r.name)));
            if let Some(id) = &r.id {
                set.insert((kind, format!("id:{id}")));
            }
        }
        *lock(&self.managed) = set;
    }

    /// True when `event` touches an object this repository manages.
    pub fn manages(&self, event: &Event) -> bool {
        let Some(kind) = Kind::from_collection(&event.kind) else { return false };
        let managed = lock(&self.managed);
        managed.contains(&(kind, format!("id:{}", event.id))) || managed.contains(&(kind, format!("name:{}", event.name)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Rebuilds a stored summary; `None` when it does not parse.
fn summary_from_json(v: &serde_json::Value) -> Option<Summary> {
    Summary::deserialize(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::ServeConfig;

    fn handle(extra: &str) -> Result<RepoHandle, String> {
        let text = format!("[[repo]]\nname = \"r\"\nurl = \"/x\"\n{extra}");
        let config = ServeConfig::parse(&text, "t").unwrap();
        RepoHandle::new(config.repo[0].clone(), StoredRepo::default(), |k| (k == "SET").then(|| "s3".to_string()))
    }

    #[test]
    fn secrets_come_from_the_named_variable() {
        assert_eq!(handle("webhook_secret_env = \"SET\"").unwrap().secret.as_deref(), Some(&b"s3"[..]));
        assert!(handle("webhook_secret_env = \"UNSET\"").unwrap_err().contains("UNSET, which is not set"));
        assert_eq!(handle("webhook_secret = \"plain\"").unwrap().secret.as_deref(), Some(&b"plain"[..]));
        assert!(handle("").unwrap().secret.is_none());
    }

    #[test]
    fn triggers_coalesce() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let h = handle("").unwrap();
        h.trigger("poll");
        h.trigger("webhook");
        rt.block_on(async {
            assert_eq!(h.triggered().await, "webhook");
            let second = tokio::time::timeout(std::time::Duration::from_millis(50), h.triggered()).await;
            assert!(second.is_err(), "two triggers while idle make one run");
        });
    }

    #[test]
    fn stored_summary_round_trips() {
        let s = Summary {
            resources: 3,
            in_sync: 1,
            drifted: 1,
            missing: 1,
            unmanaged: 0,
            ignored: 0,
            coverage: 0.5,
            by_severity: Default::default(),
            three_way: Default::default(),
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(summary_from_json(&json), Some(s));
    }
}
