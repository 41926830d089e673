//! Pull requests through a GitHub-compatible REST API (GitHub, GitHub Enterprise, Gitea): find, open or update.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::{Value, json};

/// The environment variable holding the forge token.
pub const FORGE_TOKEN_ENV: &str = "NOVACRON_FORGE_TOKEN";

/// The pull request to open or update.
#[derive(Debug, Clone)]
pub struct PullRequestSpec {
    /// The head branch, e.g. `novacron/drift/1a2b3c4d5e6f`.
    pub head: String,
    /// The base branch, e.g. `main`.
    pub base: String,
    /// Its title.
    pub title: String,
    /// Its body (markdown).
    pub body: String,
}

/// An open pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Its web address, when the forge gave one.
    pub url: Option<String>,
    /// True when this run opened it.
    pub created: bool,
    /// True when this run opened it or changed its title or body (false: it was already so).
    pub changed: bool,
}

/// Why the forge did not do it. The token never appears.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The forge answered with an error status.
    #[error("forge {method} {path}: HTTP {status}: {message}")]
    Status {
        /// GET, POST or PATCH.
        method: &'static str,
        /// The API path.
        path: String,
        /// The status.
        status: u16,
        /// The forge's `message`, or the start of its answer.
        message: String,
    },
    /// The forge could not be reached or answered something unreadable.
    #[error("forge {method} {path}: {detail}")]
    Transport {
        /// GET, POST or PATCH.
        method: &'static str,
        /// The API path.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// Opens or updates the pull request of a branch. Object-safe, so a service can hold any forge.
pub trait Forge: Send + Sync {
    /// The open pull request from `spec.head` gets `spec`'s title and body (left alone when it
    /// has them already); without one, one is opened.
    fn ensure_pull_request<'a>(&'a self, spec: &'a PullRequestSpec) -> Pin<Box<dyn Future<Output = Result<PullRequest, ForgeError>> + Send + 'a>>;

    /// Sets the commit status `context` of commit `sha` (`state`: `success`, `pending`,
    /// `failure`, `error`), with a one-line description.
    fn set_commit_status<'a>(&'a self, sha: &'a str, status: &'a CommitStatus) -> Pin<Box<dyn Future<Output = Result<(), ForgeError>> + Send + 'a>>;

    /// Adds a comment to commit `sha`.
    fn comment_on_commit<'a>(&'a self, sha: &'a str, body: &'a str) -> Pin<Box<dyn Future<Output = Result<(), ForgeError>> + Send + 'a>>;
}

/// A commit status as the forge shows it beside the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitStatus {
    /// `success`, `pending`, `failure` or `error`.
    pub state: &'static str,
    /// E.g. `novacron/rollout`.
    pub context: String,
    /// One line (forges cut it at 140 characters).
    pub description: String,
}

/// A GitHub-compatible REST API: `https://api.github.com`, `https://ghe.example.com/api/v3`, or
/// a Gitea `https://gitea.example.com/api/v1`.
pub struct GitHubForge {
    base_url: String,
    owner: String,
    repo: String,
    token: String,
    http: reqwest::Client,
}

/// Shows where, never the token.
impl std::fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubForge").field("base_url", &self.base_url).field("repo", &format!("{}/{}", self.owner, self.repo)).finish_non_exhaustive()
    }
}

impl GitHubForge {
    /// A forge client for `owner/name` at `base_url` with `token`.
    pub fn new(base_url: &str, owner_repo: &str, token: &str) -> Result<GitHubForge, String> {
        let (owner, repo) = owner_repo
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| format!("--forge-repo {owner_repo:?}: expected owner/name"))?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(format!("--forge-url {base_url:?}: expected an http(s) URL"));
        }
        if token.trim().is_empty() {
            return Err(format!("{FORGE_TOKEN_ENV} is not set: export a token allowed to open pull requests"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("novacron-reconcile/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(GitHubForge { base_url: base_url.trim_end_matches('/').to_string(), owner: owner.into(), repo: repo.into(), token: token.into(), http })
    }

    async fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Result<Value, ForgeError> {
        let verb: &'static str = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            _ => "PATCH",
        };
        let transport = |detail: String| ForgeError::Transport { method: verb, path: path.to_string(), detail };
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .query(query)
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "application/vnd.github+json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.map_err(|e| transport(e.without_url().to_string()))?;
        let status = answer.status().as_u16();
        let text = answer.text().await.map_err(|e| transport(e.without_url().to_string()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let message = value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| text.chars().take(200).collect());
            let message = message.replace(&self.token, "***");
            return Err(ForgeError::Status { method: verb, path: path.to_string(), status, message: message.split_whitespace().collect::<Vec<_>>().join(" ") });
        }
        Ok(value)
    }
}

fn pull_of(value: &Value, created: bool) -> Option<PullRequest> {
    Some(PullRequest { number: value.get("number")?.as_u64()?, url: value.get("html_url").and_then(Value::as_str).map(str::to_string), created, changed: true })
}

/// Whether the open pull request from `spec.head` already has `spec`'s title and body.
fn existing_is(open: &Value, spec: &PullRequestSpec) -> bool {
    open.as_array().and_then(|all| all.iter().find(|p| p.pointer("/head/ref").and_then(Value::as_str).is_none_or(|r| r == spec.head))).is_some_and(|p| {
        p.get("title").and_then(Value::as_str) == Some(spec.title.as_str()) && p.get("body").and_then(Value::as_str) == Some(spec.body.as_str())
    })
}

impl Forge for GitHubForge {
    fn ensure_pull_request<'a>(&'a self, spec: &'a PullRequestSpec) -> Pin<Box<dyn Future<Output = Result<PullRequest, ForgeError>> + Send + 'a>> {
        Box::pin(async move {
            let pulls = format!("/repos/{}/{}/pulls", self.owner, self.repo);
            let head = format!("{}:{}", self.owner, spec.head);
            let open = self.call(reqwest::Method::GET, &pulls, &[("head", head.as_str()), ("state", "open")], None).await?;
            // Gitea ignores `head` on this call; match the branch here as well.
            let existing =
                open.as_array().and_then(|all| all.iter().find(|p| p.pointer("/head/ref").and_then(Value::as_str).is_none_or(|r| r == spec.head)).cloned());
            let unreadable =
                |path: &str| ForgeError::Transport { method: "POST", path: path.to_string(), detail: "the answer has no pull request number".into() };
            match existing.and_then(|p| pull_of(&p, false)) {
                Some(found) if existing_is(&open, spec) => Ok(PullRequest { changed: false, ..found }),
                Some(found) => {
                    let path = format!("{pulls}/{}", found.number);
                    let updated = self.call(reqwest::Method::PATCH, &path, &[], Some(&json!({"title": spec.title, "body": spec.body}))).await?;
                    Ok(pull_of(&updated, false).unwrap_or(found))
                }
                None => {
                    let body = json!({"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body});
                    let created = self.call(reqwest::Method::POST, &pulls, &[], Some(&body)).await?;
                    pull_of(&created, true).ok_or_else(|| unreadable(&pulls))
                }
            }
        })
    }

    fn set_commit_status<'a>(&'a self, sha: &'a str, status: &'a CommitStatus) -> Pin<Box<dyn Future<Output = Result<(), ForgeError>> + Send + 'a>> {
        Box::pin(async move {
            let path = format!("/repos/{}/{}/statuses/{sha}", self.owner, self.repo);
            let description: String = status.description.chars().take(140).collect();
            let body = json!({"state": status.state, "context": status.context, "description": description});
            self.call(reqwest::Method::POST, &path, &[], Some(&body)).await.map(|_| ())
        })
    }

    fn comment_on_commit<'a>(&'a self, sha: &'a str, body: &'a str) -> Pin<Box<dyn Future<Output = Result<(), ForgeError>> + Send + 'a>> {
        Box::pin(async move {
            let path = format!("/repos/{}/{}/commits/{sha}/comments", self.owner, self.repo);
            self.call(reqwest::Method::POST, &path, &[], Some(&json!({"body": body}))).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_and_the_token_is_not_shown() {
        assert!(GitHubForge::new("https://api.github.com", "owner", "t").expect_err("no name").contains("owner/name"));
        assert!(GitHubForge::new("ftp://x", "o/r", "t").expect_err("scheme").contains("http"));
        assert!(GitHubForge::new("https://x", "o/r", " ").expect_err("token").contains(FORGE_TOKEN_ENV));
        let forge = GitHubForge::new("https://api.github.com/", "o/r", "ghp_secret").expect("forge");
        assert!(!format!("{forge:?}").contains("ghp_secret"));
    }
}
