//! Pull requests inside `serve`: the `pull_request` webhook plans the head and posts (then
//! updates) one review comment and a `novacron/plan` status; the `issue_comment` webhook
//! carries `/novacron approve <id>` from people with write access.
//!
//! Reviews of one pull request run one at a time and coalesce: a push that arrives while the
//! previous head is being planned replaces any review still waiting, so only the newest head is
//! planned next. A few reviews run at once across pull requests ([`REVIEWS_AT_ONCE`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::Service;
use super::repo::RepoHandle;
use super::webhook::PayloadRepository;
use crate::command::DriftOptions;
use crate::live::ClientApi;
use crate::remediation::{CommitStatus, Forge, ForgeError};
use crate::review::render::comment_marker;
use crate::review::{ReviewOptions, STATUS_CONTEXT, Scrubber, render_markdown, run_review};
use crate::state::{AuditAction, AuditEntry, audit_append, forget_review_comment, pending_approvals, pending_plans, record_review, review_comment};
use crate::sync::{TerraformReviewer, review_key};

/// How many pull requests are planned at the same time (each runs terraform and its provider).
pub const REVIEWS_AT_ONCE: usize = 2;
/// Attempts to post a comment (each after re-reading the pull request's comments, so that a
/// comment that did land is never posted twice).
const POST_ATTEMPTS: u32 = 3;

/// The parts of a `pull_request` payload a review needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PullRequestPayload {
    /// `opened`, `synchronize`, `reopened`, `closed`, ...
    #[serde(default)]
    pub action: String,
    /// The pull request number.
    #[serde(default)]
    pub number: u64,
    /// The pull request.
    #[serde(default)]
    pub pull_request: PullRequestBody,
    /// The base repository.
    #[serde(default)]
    pub repository: PayloadRepository,
}

/// `pull_request` in the payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PullRequestBody {
    /// The head.
    #[serde(default)]
    pub head: PullRequestRef,
    /// The base.
    #[serde(default)]
    pub base: PullRequestRef,
}

/// `head` or `base` of a pull request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PullRequestRef {
    /// The branch name.
    #[serde(default, rename = "ref")]
    pub reference: String,
    /// The commit.
    #[serde(default)]
    pub sha: String,
    /// Its repository (`null` when a fork was deleted).
    #[serde(default)]
    pub repo: Option<PayloadRepository>,
}

impl PullRequestPayload {
    /// True when the head lives in another repository than the base (a fork, or a deleted one).
    pub fn from_fork(&self) -> bool {
        let base = self.pull_request.base.repo.as_ref().and_then(|r| r.full_name.as_deref()).or(self.repository.full_name.as_deref());
        let head = self.pull_request.head.repo.as_ref().and_then(|r| r.full_name.as_deref());
        match (head, base) {
            (Some(h), Some(b)) => !h.eq_ignore_ascii_case(b),
            (None, _) => true,
            (Some(_), None) => false,
        }
    }

    /// True when the pull request targets the branch `reference` follows (`None`: the default branch).
    pub fn targets(&self, reference: Option<&str>) -> bool {
        let base = self.pull_request.base.reference.as_str();
        match reference {
            None => self.repository.default_branch.as_deref().is_none_or(|b| b == base),
            Some(r) => r == base || r == format!("refs/heads/{base}"),
        }
    }
}

/// The parts of an `issue_comment` payload an approval needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IssueCommentPayload {
    /// `created`, `edited`, `deleted`.
    #[serde(default)]
    pub action: String,
    /// The issue (a pull request has `pull_request`).
    #[serde(default)]
    pub issue: CommentedIssue,
    /// The comment.
    #[serde(default)]
    pub comment: CommentBody,
}

/// `issue` in an `issue_comment` payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommentedIssue {
    /// Its number.
    #[serde(default)]
    pub number: u64,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// `comment` in an `issue_comment` payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommentBody {
    /// The text.
    #[serde(default)]
    pub body: String,
    /// Its author.
    #[serde(default)]
    pub user: CommentUser,
}

/// A comment's author.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommentUser {
    /// The login.
    #[serde(default)]
    pub login: String,
}

/// The id in a `/novacron approve <id>` comment (its first line), if it is one.
pub fn approve_command(body: &str) -> Option<&str> {
    let line = body.lines().next()?.trim();
    let rest = line.strip_prefix("/novacron")?.trim_start();
    let id = rest.strip_prefix("approve")?.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then_some(id)
}

/// One review to make.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReviewJob {
    /// The pull request number.
    pub number: u64,
    /// The head commit.
    pub head_sha: String,
    /// The base branch.
    pub base: String,
    /// The head lives in a fork.
    pub fork: bool,
    /// The fork's `owner/name`, for messages.
    pub head_repo: Option<String>,
}

/// Reviews waiting per pull request: a key present means one runs; its value is the newest
/// head waiting behind it.
pub struct ReviewQueue {
    waiting: Mutex<HashMap<(String, u64), Option<ReviewJob>>>,
    limit: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for ReviewQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewQueue").finish_non_exhaustive()
    }
}

impl Default for ReviewQueue {
    fn default() -> ReviewQueue {
        ReviewQueue::new()
    }
}

impl ReviewQueue {
    /// An empty queue running at most [`REVIEWS_AT_ONCE`] reviews at a time.
    pub fn new() -> ReviewQueue {
        ReviewQueue { waiting: Mutex::default(), limit: Arc::new(tokio::sync::Semaphore::new(REVIEWS_AT_ONCE)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Option<ReviewJob>>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Queues a review of `job` for `repo`; starts a worker when none runs for that pull request.
pub fn enqueue(svc: &Arc<Service>, repo: &Arc<RepoHandle>, job: ReviewJob) {
    let key = (repo.name().to_string(), job.number);
    {
        let mut waiting = svc.reviews.lock();
        if let Some(slot) = waiting.get_mut(&key) {
            *slot = Some(job);
            return;
        }
        waiting.insert(key.clone(), None);
    }
    let (svc, repo) = (svc.clone(), repo.clone());
    tokio::spawn(async move {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            let permit = svc.reviews.limit.clone().acquire_owned().await;
            review_pull_request(&svc, &repo, &job).await;
            drop(permit);
            let mut waiting = svc.reviews.lock();
            match waiting.get_mut(&key).and_then(Option::take) {
                Some(newer) => next = Some(newer),
                None => {
                    waiting.remove(&key);
                }
            }
        }
    });
}

/// Every secret the service knows, for scrubbing what it posts.
pub fn scrubber(svc: &Service) -> Scrubber {
    let mut s = Scrubber::new([svc.runner_settings.api_key.as_str()]);
    if let Some(t) = &svc.admin_token {
        s.add(t);
    }
    for r in &svc.repos {
        for secret in [r.forge_token.as_deref(), r.review_key.as_deref()].into_iter().flatten() {
            s.add(secret);
        }
        if let Some(secret) = r.secret.as_deref().and_then(|b| std::str::from_utf8(b).ok()) {
            s.add(secret);
        }
    }
    s
}

fn status_line(state: &'static str, description: &str, scrub: &Scrubber) -> CommitStatus {
    CommitStatus { state, context: STATUS_CONTEXT.to_string(), description: scrub.scrub(description).chars().take(140).collect() }
}

/// Plans `job` and posts its comment and status; failures are logged and recorded, never fatal.
async fn review_pull_request(svc: &Arc<Service>, repo: &Arc<RepoHandle>, job: &ReviewJob) {
    let Some(forge) = repo.forge.as_ref() else { return };
    let scrub = scrubber(svc);
    let name = repo.name();
    let started = std::time::Instant::now();
    let short = &job.head_sha[..job.head_sha.len().min(12)];
    if job.fork && !repo.config.review_forks {
        let body = format!(
            "{}\n### novacron plan: not planned\n\nThis pull request comes from a fork ({}). Plans of forks are off for this repository, because a fork's HCL runs inside Terraform on the reconciler's machine and could read its files. A maintainer can turn on `review_forks = true` for `{}`, or plan it with `novacron-reconcile plan --ref refs/pull/{}/head`.\n",
            comment_marker(name),
            crate::review::render::escape(job.head_repo.as_deref().unwrap_or("a deleted repository")),
            crate::review::render::escape(name),
            job.number
        );
        let comment = post_comment(svc, repo, forge, job.number, &scrub.scrub(&body)).await;
        let status = status_line("failure", "not planned: pull requests from forks are not planned for this repository", &scrub);
        set_status(forge, &job.head_sha, &status).await;
        finish(svc, repo, job, comment, "not_planned", "fork", started);
        return;
    }
    set_status(forge, &job.head_sha, &status_line("pending", &format!("planning {short}"), &scrub)).await;
    let reference = if job.fork { format!("refs/pull/{}/head", job.number) } else { job.head_sha.clone() };
    let c = &repo.config;
    let head = DriftOptions {
        repo: c.url.clone(),
        reference: Some(reference),
        path: c.path.clone(),
        vars: c.vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ignore: c.ignore.clone(),
        cache_dir: svc.cache_dir.clone(),
        tfstate: c.tfstate.clone(),
        workspace: c.workspace.clone(),
        http_address: None,
        progress: crate::progress::SharedProgress::new(crate::progress::Traced),
        clock: svc.clock.clone(),
    };
    let options = ReviewOptions { head, base: Some(job.base.clone()), pull_request: Some(job.number) };
    let key = repo.review_key.clone().unwrap_or_else(|| svc.runner_settings.api_key.clone());
    let api = match ClientApi::with_ca_file(&svc.runner_settings.endpoint, &key, svc.runner_settings.ca_file.as_deref()) {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(repo = %name, pull_request = job.number, error = %e, "cannot build the platform client for a review");
            return;
        }
    };
    let mut settings = svc.runner_settings.clone();
    settings.api_key = key;
    settings.cache_dir = settings.cache_dir.join(name);
    let planner = TerraformReviewer { settings, key: review_key(&c.url, &c.path, Some(job.number)) };
    let result = {
        let lock = svc.clone_lock(&c.url);
        let _guard = lock.lock().await;
        run_review(&options, &api, &planner).await
    };
    let (body, status) = match result {
        Ok(review) => {
            if review.revision != job.head_sha {
                tracing::info!(repo = %name, pull_request = job.number, planned = %review.revision, head = %job.head_sha, "the fetched head differs from the webhook's: a newer push will be reviewed too");
            }
            (render_markdown(&review, name), status_line(review.status.state, &review.status.description, &scrub))
        }
        Err(e) => {
            let message =
                format!("{}\n### ❌ novacron plan: not planned\n\n**Error:** {}\n", comment_marker(name), crate::review::render::escape(&e.to_string()));
            (message, status_line("failure", &format!("not planned: {e}"), &scrub))
        }
    };
    let body = scrub.scrub(&body);
    let comment = post_comment(svc, repo, forge, job.number, &body).await;
    set_status(forge, &job.head_sha, &status).await;
    finish(svc, repo, job, comment, status.state, &status.description, started);
}

fn finish(svc: &Service, repo: &RepoHandle, job: &ReviewJob, comment: Option<u64>, state: &str, description: &str, started: std::time::Instant) {
    let key = repo.state_key();
    let path = repo.config.path.as_str();
    if let Err(e) = record_review(&svc.db, &key, path, job.number, comment, &job.head_sha, state) {
        tracing::error!(repo = %repo.name(), error = %e, "cannot record a review");
    }
    let entry = AuditEntry {
        actor: super::scheduler::ACTOR.to_string(),
        action: AuditAction::Review,
        repo: key,
        subject: if path.is_empty() { ".".into() } else { path.to_string() },
        detail: json!({"pull_request": job.number, "head": job.head_sha, "state": state, "description": description, "comment_id": comment}),
    };
    if let Err(e) = audit_append(&svc.db, entry) {
        tracing::error!(repo = %repo.name(), error = %e, "cannot audit a review");
    }
    svc.metrics.record_review(state);
    tracing::info!(repo = %repo.name(), pull_request = job.number, head = %job.head_sha, state, ms = started.elapsed().as_millis() as u64, comment = ?comment, "pull request reviewed");
}

async fn set_status(forge: &dyn Forge, sha: &str, status: &CommitStatus) {
    if let Err(e) = forge.set_commit_status(sha, status).await {
        tracing::warn!(sha, context = %status.context, error = %e, "cannot set the commit status");
    }
}

/// Creates the review comment, or updates the one posted before (remembered in the state, else
/// found by its hidden marker). Returns its id.
async fn post_comment(svc: &Service, repo: &RepoHandle, forge: &dyn Forge, number: u64, body: &str) -> Option<u64> {
    let (key, path) = (repo.state_key(), repo.config.path.as_str());
    let marker = comment_marker(repo.name());
    match upsert(svc, &key, path, forge, number, &marker, body).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(repo = %repo.name(), pull_request = number, error = %e, "cannot post the review comment");
            None
        }
    }
}

async fn upsert(svc: &Service, key: &str, path: &str, forge: &dyn Forge, number: u64, marker: &str, body: &str) -> Result<u64, ForgeError> {
    let known = review_comment(&svc.db, key, path, number).ok().flatten();
    if let Some(id) = known {
        match forge.update_comment(id, body).await {
            Ok(c) => return Ok(c.id),
            Err(ForgeError::Status { status: 404 | 410, .. }) => {
                let _ = forget_review_comment(&svc.db, key, path, number);
            }
            Err(e) => return Err(e),
        }
    }
    let mut last = None;
    for attempt in 0..POST_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        // A comment an earlier attempt (or an earlier process) posted is updated, not repeated.
        let existing = forge.list_pr_comments(number).await?.into_iter().find(|c| c.body.starts_with(marker));
        if let Some(c) = existing {
            match forge.update_comment(c.id, body).await {
                Ok(c) => return Ok(c.id),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            }
        }
        match forge.create_pr_comment(number, body).await {
            Ok(c) => return Ok(c.id),
            Err(e) => {
                tracing::warn!(pull_request = number, attempt = attempt + 1, error = %e, "posting the review comment failed; checking whether it landed before trying again");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ForgeError::Transport { method: "POST", path: format!("issues/{number}/comments"), detail: "no attempt made".into() }))
}

/// Handles `/novacron approve <id>` on a pull request of `repo` by `login`.
pub async fn approve_from_comment(svc: Arc<Service>, repo: Arc<RepoHandle>, number: u64, login: String, id: String) {
    let Some(forge) = repo.forge.as_ref() else { return };
    let scrub = scrubber(&svc);
    let full = repo.config.forge_repo.clone().unwrap_or_default();
    let reply = match forge.collaborator_permission(&login).await {
        Err(e) => {
            tracing::warn!(repo = %repo.name(), login = %login, error = %e, "cannot read the commenter's permission");
            format!("@{login}: `{id}` was not approved: the forge did not say what permission you have on {full} ({e}). Try again in a minute.")
        }
        Ok(permission) if !permission.can_write() => {
            let entry = AuditEntry {
                actor: login.clone(),
                action: AuditAction::Review,
                repo: repo.state_key(),
                subject: repo.config.path.clone(),
                detail: json!({"pull_request": number, "refused_approval": id, "permission": permission.to_string()}),
            };
            let _ = audit_append(&svc.db, entry);
            format!("@{login}: `{id}` was not approved: approving needs write or admin permission on {full}, and you have {permission}.")
        }
        Ok(_) => approve_id(&svc, &repo, &login, &id, number),
    };
    let reply = scrub.scrub(&reply);
    for attempt in 0..POST_ATTEMPTS {
        match forge.create_pr_comment(number, &reply).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(pull_request = number, attempt = attempt + 1, error = %e, "cannot reply to an approval comment");
                let landed = forge.list_pr_comments(number).await.is_ok_and(|all| all.iter().any(|c| c.body == reply));
                if landed {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
        }
    }
}

/// Approves plan or drift `id` of `repo` for `login`; the reply to post.
fn approve_id(svc: &Arc<Service>, repo: &Arc<RepoHandle>, login: &str, id: &str, number: u64) -> String {
    let key = repo.state_key();
    let result = if id.starts_with("plan-") {
        match pending_plans(&svc.db, Some(&key)) {
            Ok(plans) if plans.iter().any(|p| p.id == id && p.path == crate::source::join_path("", &repo.config.path).unwrap_or_default()) => {
                crate::state::approve_plan(&svc.db, id, login).map(|p| p.map(|p| format!("plan `{}` ({}, {})", p.id, p.summary, p.severity)))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        }
    } else {
        match pending_approvals(&svc.db, Some(&key)) {
            Ok(drifts) if drifts.iter().any(|d| d.id == id) => match crate::state::approve(&svc.db, id, login) {
                Ok(d) => Ok(Some(format!("the revert of drift `{}` on `{}` ({})", d.id, d.address, d.severity))),
                Err(crate::state::ApprovalError::UnknownId { .. }) => Ok(None),
                Err(crate::state::ApprovalError::State(e)) => Err(e),
            },
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(Some(what)) => {
            tracing::info!(repo = %repo.name(), pull_request = number, approval = %id, login, "approved from a pull request comment; the next sync, which starts now, carries it out");
            super::scheduler::refresh_approvals(svc, repo);
            super::lease::wake(svc, repo, "approval");
            format!("@{login} approved {what}. The reconciler carries it out now; the audit log records the approval with your login.")
        }
        Ok(None) => format!(
            "@{login}: nothing was approved: no pending plan or drift of `{}` has id `{id}`. `novacron-reconcile approvals list` shows them.",
            repo.name()
        ),
        Err(e) => {
            tracing::error!(repo = %repo.name(), approval = %id, error = %e, "approval from a comment failed");
            format!("@{login}: `{id}` was not approved: the reconciler's state database failed; try again.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approve_commands_are_read_from_the_first_line_only() {
        assert_eq!(approve_command("/novacron approve plan-1a2b3c4d5e6f"), Some("plan-1a2b3c4d5e6f"));
        assert_eq!(approve_command("  /novacron   approve d-42  \nthanks"), Some("d-42"));
        assert_eq!(approve_command("please /novacron approve x"), None);
        assert_eq!(approve_command("/novacron approve"), None);
        assert_eq!(approve_command("/novacron approve a b"), None);
        assert_eq!(approve_command("lgtm\n/novacron approve x"), None);
    }

    #[test]
    fn forks_and_targets() {
        let p: PullRequestPayload = serde_json::from_value(json!({
            "action": "opened", "number": 5,
            "pull_request": {"head": {"ref": "feature", "sha": "abc", "repo": {"full_name": "alice/infra"}},
                             "base": {"ref": "main", "sha": "def", "repo": {"full_name": "acme/infra"}}},
            "repository": {"full_name": "acme/infra", "default_branch": "main"}
        }))
        .unwrap();
        assert!(p.from_fork());
        assert!(p.targets(None) && p.targets(Some("main")) && p.targets(Some("refs/heads/main")) && !p.targets(Some("release")));
        let mut same = p.clone();
        same.pull_request.head.repo = Some(PayloadRepository { full_name: Some("Acme/Infra".into()), ..PayloadRepository::default() });
        assert!(!same.from_fork());
        same.pull_request.head.repo = None;
        assert!(same.from_fork(), "a deleted fork is still not ours");
    }
}
