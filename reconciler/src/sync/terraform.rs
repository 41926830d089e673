//! The real [`RolloutRunner`]: the `terraform` binary in a clean working copy of the revision, with the state backend the detection read.

use std::path::PathBuf;
use std::time::Duration;

use novacron_schemas::sha256_hex;

use super::rollout::{BoxFuture, PidSink, RolloutRunner};
use crate::command::Detection;
use crate::rollout::{Backend, PlanModel, RolloutError, StopOutcome, TerraformSettings, WorkingCopy, default_provider, prepare, stop_recorded};
use crate::tfstate::StateSource;

/// How long Terraform waits for a state lock someone else holds before the run reports its holder.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How rollouts run Terraform, before the repository and backend are known.
#[derive(Clone)]
pub struct RunnerSettings {
    /// `--terraform` / `NOVACRON_TERRAFORM` / serve key `terraform`; `None`: terraform on PATH.
    pub terraform: Option<PathBuf>,
    /// The provider binary; `None`: the one beside this program, if any.
    pub provider: Option<PathBuf>,
    /// Working copies, the provider mirror and the plugin cache live here.
    pub cache_dir: PathBuf,
    /// The platform endpoint.
    pub endpoint: String,
    /// The platform API key (secret: only ever in terraform's environment).
    pub api_key: String,
    /// CA bundle for an https:// endpoint; Terraform gets it as `SSL_CERT_FILE`.
    pub ca_file: Option<PathBuf>,
}

/// Shows everything but the API key.
impl std::fmt::Debug for RunnerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSettings")
            .field("terraform", &self.terraform)
            .field("provider", &self.provider)
            .field("cache_dir", &self.cache_dir)
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// The Terraform runner for these settings.
pub fn terraform_runner(settings: &RunnerSettings) -> Option<Box<dyn RolloutRunner>> {
    Some(Box::new(TerraformRunner { settings: settings.clone() }))
}

/// Runs the real terraform.
struct TerraformRunner {
    settings: RunnerSettings,
}

impl TerraformRunner {
    /// A prepared and initialised working copy of the detection's revision.
    async fn working_copy(&self, detection: &Detection) -> Result<WorkingCopy, RolloutError> {
        let backend = match &detection.state_source {
            Some(StateSource::Platform { workspace }) => Backend::Platform { workspace: workspace.clone() },
            Some(StateSource::File(path)) => Backend::LocalFile(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            None => {
                return Err(RolloutError::CommandFailed {
                    command: "plan".into(),
                    summary: "no Terraform state backend is known".into(),
                    detail: "give --workspace NAME or --tfstate FILE".into(),
                });
            }
        };
        let mut settings = TerraformSettings::new(self.settings.cache_dir.clone(), self.settings.endpoint.clone(), self.settings.api_key.clone(), backend);
        settings.binary = self.settings.terraform.clone();
        settings.provider = self.settings.provider.clone().or_else(default_provider);
        settings.lock_timeout = LOCK_WAIT;
        settings.ca_file = self.settings.ca_file.clone();
        // One working copy per repository path: its `.terraform/` is kept between revisions.
        let key = format!("w{}", &sha256_hex(format!("{}\n{}", crate::git::redact(&detection.repo), detection.path).as_bytes())[..16]);
        let tree = detection.snapshot.files.clone();
        let path = detection.path.clone();
        let wc = tokio::task::spawn_blocking(move || prepare(&settings, &key, &tree, &path)).await.map_err(|e| RolloutError::CommandFailed {
            command: "prepare".into(),
            summary: "the working copy task failed".into(),
            detail: e.to_string(),
        })??;
        wc.init().await?;
        Ok(wc)
    }
}

impl RolloutRunner for TerraformRunner {
    fn plan<'a>(&'a self, detection: &'a Detection) -> BoxFuture<'a, Result<(Vec<u8>, PlanModel), RolloutError>> {
        Box::pin(async move {
            let saved = self.working_copy(detection).await?.plan().await?;
            Ok((saved.bytes, saved.plan))
        })
    }

    fn apply<'a>(&'a self, detection: &'a Detection, plan: &'a [u8], pid: PidSink<'a>) -> BoxFuture<'a, Result<(), RolloutError>> {
        Box::pin(async move { self.working_copy(detection).await?.apply_saved(plan, pid).await })
    }

    fn refresh<'a>(&'a self, detection: &'a Detection, pid: PidSink<'a>) -> BoxFuture<'a, Result<(), RolloutError>> {
        Box::pin(async move { self.working_copy(detection).await?.refresh_only(pid).await })
    }

    fn import<'a>(&'a self, detection: &'a Detection, address: &'a str, id: &'a str, pid: PidSink<'a>) -> BoxFuture<'a, Result<(), RolloutError>> {
        Box::pin(async move { self.working_copy(detection).await?.import(address, id, pid).await })
    }

    fn stop_leftover<'a>(&'a self, pid: u32) -> BoxFuture<'a, bool> {
        Box::pin(async move { matches!(stop_recorded(pid, Duration::from_secs(10)).await, Ok(StopOutcome::Stopped { .. })) })
    }
}

/// Plans revisions for reviews with the real terraform, in a working copy of their own (one
/// per `key`, e.g. per pull request, so that its `.terraform/` is kept between pushes). It
/// never takes the state lock and never applies.
pub struct TerraformReviewer {
    /// Where terraform, the provider and the cache are; the API key is the one reviews plan with.
    pub settings: RunnerSettings,
    /// Names the working copy (letters, digits, `.`, `_`, `-`).
    pub key: String,
}

impl crate::review::ReviewPlanner for TerraformReviewer {
    fn plan<'a>(&'a self, snapshot: &'a crate::git::Snapshot, path: &'a str, source: &'a StateSource) -> BoxFuture<'a, Result<PlanModel, RolloutError>> {
        Box::pin(async move {
            let backend = match source {
                StateSource::Platform { workspace } => Backend::Platform { workspace: workspace.clone() },
                StateSource::File(path) => Backend::LocalFile(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            };
            let mut settings = TerraformSettings::new(self.settings.cache_dir.clone(), self.settings.endpoint.clone(), self.settings.api_key.clone(), backend);
            settings.binary = self.settings.terraform.clone();
            settings.provider = self.settings.provider.clone().or_else(default_provider);
            settings.ca_file = self.settings.ca_file.clone();
            let (key, tree, path) = (self.key.clone(), snapshot.files.clone(), path.to_string());
            let wc = tokio::task::spawn_blocking(move || prepare(&settings, &key, &tree, &path)).await.map_err(|e| RolloutError::CommandFailed {
                command: "prepare".into(),
                summary: "the working copy task failed".into(),
                detail: e.to_string(),
            })??;
            wc.init().await?;
            Ok(wc.plan_unlocked().await?.plan)
        })
    }
}

/// The working-copy key of reviews of pull request `number` of a repository path.
pub fn review_key(repo: &str, path: &str, number: Option<u64>) -> String {
    let n = number.map(|n| n.to_string()).unwrap_or_else(|| "cli".into());
    format!("pr{n}-{}", &sha256_hex(format!("{}\n{path}", crate::git::redact(repo)).as_bytes())[..12])
}
