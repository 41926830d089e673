//! A GitHub-compatible REST API (GitHub, GitHub Enterprise, Gitea): pull requests, commit statuses, comments, permissions.
//!
//! Retries: every request goes through [`GitHubForge`]'s `call`, which repeats an attempt that
//! failed for a reason that may pass: no answer (connection refused, reset, timeout), a 5xx, a
//! 429, or a 403 that is a rate limit (`x-ratelimit-remaining: 0` or a `retry-after` header).
//! Any other status is the forge's answer and is returned at once (a 404 stays a 404 so callers
//! can act on it). Waits double from the first backoff (250 ms unless [`GitHubForge::with_retry`]
//! says otherwise) up to 8 s; a `retry-after` of up to 30 s is waited out as given, a longer one
//! ends the retries (waiting less would only be refused again). Requests that create something
//! (opening a pull request, adding a comment) are sent once: after a failure the forge may still
//! have acted, and a caller that re-lists before trying again never duplicates. Reads, edits
//! (PATCH) and commit statuses (the latest per context wins) are safe to repeat.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

/// The environment variable holding the forge token.
pub const FORGE_TOKEN_ENV: &str = "NOVACRON_FORGE_TOKEN";

/// What every [`Forge`] method returns: a boxed future, so the trait stays object-safe.
pub type ForgeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ForgeError>> + Send + 'a>>;

/// Attempts per request unless [`GitHubForge::with_retry`] says otherwise.
const DEFAULT_ATTEMPTS: u32 = 4;
/// The wait after the first failed attempt unless [`GitHubForge::with_retry`] says otherwise.
const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two attempts that the doubling reaches.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `retry-after` waited out; beyond it the request fails.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// GitHub's largest page.
const COMMENTS_PER_PAGE: usize = 100;
/// 5,000 comments: more is a pull request no review comment is worth reading through.
const MAX_COMMENT_PAGES: u32 = 50;
/// The longest error message kept from an answer (a proxy's HTML page is not worth more).
const MAX_MESSAGE_CHARS: usize = 1000;

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

/// A comment in a pull request's conversation (GitHub calls them issue comments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueComment {
    /// The comment id, the one [`Forge::update_comment`] takes.
    pub id: u64,
    /// Its text (markdown).
    pub body: String,
    /// The author's login, when the forge named one (deleted accounts have none).
    pub user: Option<String>,
    /// Its web address (`html_url`).
    pub url: Option<String>,
}

/// What a user may do in the repository, in GitHub's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Everything, settings included.
    Admin,
    /// Write, and manage the repository without its sensitive settings.
    Maintain,
    /// Push, merge, edit others' comments.
    Write,
    /// Read, and manage issues and pull requests without writing code.
    Triage,
    /// Read and comment.
    Read,
    /// Not a collaborator (or no such user).
    None,
}

impl Permission {
    /// True for the roles that may push to the repository (admin, maintain, write): the ones
    /// whose word a change may wait for.
    pub fn can_write(self) -> bool {
        matches!(self, Permission::Admin | Permission::Maintain | Permission::Write)
    }

    /// GitHub's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::Maintain => "maintain",
            Permission::Write => "write",
            Permission::Triage => "triage",
            Permission::Read => "read",
            Permission::None => "none",
        }
    }

    fn from_word(word: &str) -> Option<Permission> {
        Some(match word {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" => Permission::Write,
            "triage" => Permission::Triage,
            "read" => Permission::Read,
            "none" => Permission::None,
            _ => return None,
        })
    }

    /// From a `collaborators/{user}/permission` answer: `role_name` when it is a built-in role
    /// (an organisation's custom role is not), else the legacy `permission` (admin, write, read, none).
    fn from_answer(answer: &Value) -> Option<Permission> {
        let word = |key: &str| answer.get(key).and_then(Value::as_str).and_then(Permission::from_word);
        word("role_name").or_else(|| word("permission"))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
        /// The forge's `message` and its `errors` detail, or the start of its answer.
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

impl ForgeError {
    /// The HTTP status the forge answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Status { status, .. } => Some(*status),
            ForgeError::Transport { .. } => None,
        }
    }
}

/// Opens or updates pull requests, sets commit statuses, comments, looks up permissions.
/// Object-safe, so a service can hold any forge.
pub trait Forge: Send + Sync {
    /// The open pull request from `spec.head` gets `spec`'s title and body (left alone when it
    /// has them already); without one, one is opened.
    fn ensure_pull_request<'a>(&'a self, spec: &'a PullRequestSpec) -> ForgeFuture<'a, PullRequest>;

    /// Sets the commit status `context` of commit `sha` (`state`: `success`, `pending`,
    /// `failure`, `error`), with a one-line description.
    fn set_commit_status<'a>(&'a self, sha: &'a str, status: &'a CommitStatus) -> ForgeFuture<'a, ()>;

    /// Adds a comment to commit `sha`. Sent once (see the module doc on retries).
    fn comment_on_commit<'a>(&'a self, sha: &'a str, body: &'a str) -> ForgeFuture<'a, ()>;

    /// Every comment in the conversation of pull request `number`, oldest first.
    fn list_pr_comments(&self, number: u64) -> ForgeFuture<'_, Vec<IssueComment>>;

    /// Adds a comment to the conversation of pull request `number`. Sent once: after a failure,
    /// list the comments before trying again.
    fn create_pr_comment<'a>(&'a self, number: u64, body: &'a str) -> ForgeFuture<'a, IssueComment>;

    /// Replaces the text of comment `comment_id`. A comment that is gone is
    /// `ForgeError::Status { status: 404, .. }`.
    fn update_comment<'a>(&'a self, comment_id: u64, body: &'a str) -> ForgeFuture<'a, IssueComment>;

    /// What `login` may do in the repository; someone the forge does not know is `Permission::None`.
    fn collaborator_permission<'a>(&'a self, login: &'a str) -> ForgeFuture<'a, Permission>;
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
    retry: RetryPolicy,
}

/// Shows where, never the token.
impl fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubForge").field("base_url", &self.base_url).field("repo", &format!("{}/{}", self.owner, self.repo)).finish_non_exhaustive()
    }
}

/// Whether a request may be sent again after a failure the forge may nonetheless have acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Reads, edits, statuses: a repeat changes nothing more.
    Safe,
    /// Creations: a repeat could make a second one.
    Never,
}

/// An answer with a success status.
struct Answer {
    body: Value,
    headers: HeaderMap,
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
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(GitHubForge {
            base_url: base_url.trim_end_matches('/').to_string(),
            owner: owner.into(),
            repo: repo.into(),
            token: token.into(),
            http,
            retry: RetryPolicy { attempts: DEFAULT_ATTEMPTS, first_backoff: DEFAULT_FIRST_BACKOFF },
        })
    }

    /// Retries with `attempts` in total (at least one) and `first_backoff` before the second,
    /// doubling after (tests make it short).
    pub fn with_retry(self, attempts: u32, first_backoff: Duration) -> Self {
        GitHubForge { retry: RetryPolicy { attempts: attempts.max(1), first_backoff }, ..self }
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.repo)
    }

    async fn call(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>, replay: Replay) -> Result<Value, ForgeError> {
        self.exchange(method, path, query, body, replay).await.map(|answer| answer.body)
    }

    /// Sends the request, repeating it as the module doc says.
    async fn exchange(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>, replay: Replay) -> Result<Answer, ForgeError> {
        let policy = match replay {
            Replay::Safe => self.retry,
            Replay::Never => RetryPolicy { attempts: 1, ..self.retry },
        };
        let mut attempt = 1;
        loop {
            let (error, failure) = match self.attempt(method.clone(), path, query, body).await {
                Ok(answer) => return Ok(answer),
                Err(failed) => failed,
            };
            let wait = policy.wait_after(attempt, failure);
            if failure.is_transient() {
                let (method, attempts) = (verb(&method), policy.attempts);
                match wait {
                    Some(wait) => tracing::warn!(method, path, %error, attempt, attempts, wait_ms = wait.as_millis() as u64, "forge request failed; retrying"),
                    None if replay == Replay::Never => {
                        tracing::warn!(method, path, %error, attempt, attempts, "forge request failed; not repeated, it may have been carried out")
                    }
                    None => tracing::warn!(method, path, %error, attempt, attempts, "forge request failed; giving up"),
                }
            }
            match wait {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(error),
            }
        }
    }

    /// One attempt; a failure comes with what the retry rule needs to know about it.
    async fn attempt(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Result<Answer, (ForgeError, Failure)> {
        let verb = verb(&method);
        let transport = |e: reqwest::Error| {
            let detail = e.without_url().to_string().replace(&self.token, "***");
            (ForgeError::Transport { method: verb, path: path.to_string(), detail }, Failure::Transport)
        };
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .query(query)
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "application/vnd.github+json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.map_err(transport)?;
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let text = answer.text().await.map_err(transport)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let message = error_message(&body, &text).replace(&self.token, "***");
            let error = ForgeError::Status { method: verb, path: path.to_string(), status, message };
            return Err((error, Failure::of(status, &headers)));
        }
        Ok(Answer { body, headers })
    }
}

fn verb(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "HTTP",
    }
}

fn unreadable(method: &'static str, path: &str, what: &str) -> ForgeError {
    ForgeError::Transport { method, path: path.to_string(), detail: format!("the answer is not {what}") }
}

/// The forge's `message` followed by each entry of its `errors` array ("field: code: message",
/// or the entry itself when it is a string); the start of the text when it is not JSON.
fn error_message(body: &Value, text: &str) -> String {
    let mut message = body.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| text.chars().take(200).collect());
    let details: Vec<String> = body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| match entry {
            Value::String(s) => Some(s.clone()),
            Value::Object(fields) => {
                let parts: Vec<&str> = ["field", "code", "message"].iter().filter_map(|k| fields.get(*k).and_then(Value::as_str)).collect();
                (!parts.is_empty()).then(|| parts.join(": "))
            }
            _ => None,
        })
        .collect();
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message,
    }
}

/// How a request is repeated: attempts in total, and the wait after the first failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RetryPolicy {
    attempts: u32,
    first_backoff: Duration,
}

/// A failed attempt, as far as trying again is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No readable answer.
    Transport,
    /// An error status.
    Status {
        /// The status.
        status: u16,
        /// `x-ratelimit-remaining: 0`.
        rate_limited: bool,
        /// `retry-after`, in seconds.
        retry_after: Option<Duration>,
    },
}

impl Failure {
    fn of(status: u16, headers: &HeaderMap) -> Failure {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let rate_limited = header("x-ratelimit-remaining") == Some("0");
        let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
        Failure::Status { status, rate_limited, retry_after }
    }

    /// Whether the same request may succeed later.
    fn is_transient(self) -> bool {
        match self {
            Failure::Transport => true,
            Failure::Status { status, rate_limited, retry_after } => {
                status >= 500 || status == 429 || (status == 403 && (rate_limited || retry_after.is_some()))
            }
        }
    }
}

impl RetryPolicy {
    /// The wait before trying again after attempt `attempt` (1-based) failed so; `None`: stop.
    fn wait_after(self, attempt: u32, failure: Failure) -> Option<Duration> {
        if attempt >= self.attempts || !failure.is_transient() {
            return None;
        }
        match failure {
            Failure::Status { retry_after: Some(asked), .. } => (asked <= MAX_RETRY_AFTER).then_some(asked),
            _ => Some(self.first_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF)),
        }
    }
}

/// Whether another page follows: the `Link` header says so when there is one, else a full page
/// suggests it (some GitHub-compatible forges send no `Link`).
fn more_pages(headers: &HeaderMap, len: usize, per_page: usize) -> bool {
    match headers.get("link").and_then(|v| v.to_str().ok()) {
        _ if len == 0 => false,
        Some(link) => link_has_next(link),
        None => len >= per_page,
    }
}

/// `<https://...&page=2>; rel="next", <...>; rel="last"` has a `next`.
fn link_has_next(link: &str) -> bool {
    link.split(',').any(|target| {
        target.split(';').skip(1).any(|param| {
            let param = param.trim();
            param.strip_prefix("rel=").is_some_and(|rel| rel.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
        })
    })
}

/// `login` as one path segment (a bot's `name[bot]` included).
fn path_segment(login: &str) -> String {
    login
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn comment_of(value: &Value) -> Option<IssueComment> {
    Some(IssueComment {
        id: value.get("id")?.as_u64()?,
        body: value.get("body").and_then(Value::as_str).unwrap_or_default().to_string(),
        user: value.pointer("/user/login").and_then(Value::as_str).map(str::to_string),
        url: value.get("html_url").and_then(Value::as_str).map(str::to_string),
    })
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
    fn ensure_pull_request<'a>(&'a self, spec: &'a PullRequestSpec) -> ForgeFuture<'a, PullRequest> {
        Box::pin(async move {
            let pulls = self.repo_path("pulls");
            let head = format!("{}:{}", self.owner, spec.head);
            let open = self.call(Method::GET, &pulls, &[("head", head.as_str()), ("state", "open")], None, Replay::Safe).await?;
            // Gitea ignores `head` on this call; match the branch here as well.
            let existing =
                open.as_array().and_then(|all| all.iter().find(|p| p.pointer("/head/ref").and_then(Value::as_str).is_none_or(|r| r == spec.head)).cloned());
            match existing.and_then(|p| pull_of(&p, false)) {
                Some(found) if existing_is(&open, spec) => Ok(PullRequest { changed: false, ..found }),
                Some(found) => {
                    let path = format!("{pulls}/{}", found.number);
                    let updated = self.call(Method::PATCH, &path, &[], Some(&json!({"title": spec.title, "body": spec.body})), Replay::Safe).await?;
                    Ok(pull_of(&updated, false).unwrap_or(found))
                }
                None => {
                    let body = json!({"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body});
                    let created = self.call(Method::POST, &pulls, &[], Some(&body), Replay::Never).await?;
                    pull_of(&created, true).ok_or_else(|| unreadable("POST", &pulls, "a pull request with a number"))
                }
            }
        })
    }

    fn set_commit_status<'a>(&'a self, sha: &'a str, status: &'a CommitStatus) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let path = self.repo_path(&format!("statuses/{sha}"));
            let description: String = status.description.chars().take(140).collect();
            let body = json!({"state": status.state, "context": status.context, "description": description});
            self.call(Method::POST, &path, &[], Some(&body), Replay::Safe).await.map(|_| ())
        })
    }

    fn comment_on_commit<'a>(&'a self, sha: &'a str, body: &'a str) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let path = self.repo_path(&format!("commits/{sha}/comments"));
            self.call(Method::POST, &path, &[], Some(&json!({"body": body})), Replay::Never).await.map(|_| ())
        })
    }

    fn list_pr_comments(&self, number: u64) -> ForgeFuture<'_, Vec<IssueComment>> {
        Box::pin(async move {
            let path = self.repo_path(&format!("issues/{number}/comments"));
            let per_page = COMMENTS_PER_PAGE.to_string();
            let mut comments: Vec<IssueComment> = Vec::new();
            for page in 1..=MAX_COMMENT_PAGES {
                let page = page.to_string();
                let answer = self.exchange(Method::GET, &path, &[("per_page", per_page.as_str()), ("page", page.as_str())], None, Replay::Safe).await?;
                let entries = answer.body.as_array().ok_or_else(|| unreadable("GET", &path, "a list of comments"))?;
                for entry in entries {
                    let comment = comment_of(entry).ok_or_else(|| unreadable("GET", &path, "a list of comments with ids"))?;
                    // A comment deleted between two pages shifts the next one back by one.
                    if !comments.iter().any(|c| c.id == comment.id) {
                        comments.push(comment);
                    }
                }
                if !more_pages(&answer.headers, entries.len(), COMMENTS_PER_PAGE) {
                    return Ok(comments);
                }
            }
            tracing::warn!(path, pages = MAX_COMMENT_PAGES, kept = comments.len(), "pull request has more comments than are read; the rest are ignored");
            Ok(comments)
        })
    }

    fn create_pr_comment<'a>(&'a self, number: u64, body: &'a str) -> ForgeFuture<'a, IssueComment> {
        Box::pin(async move {
            let path = self.repo_path(&format!("issues/{number}/comments"));
            let created = self.call(Method::POST, &path, &[], Some(&json!({"body": body})), Replay::Never).await?;
            comment_of(&created).ok_or_else(|| unreadable("POST", &path, "a comment with an id"))
        })
    }

    fn update_comment<'a>(&'a self, comment_id: u64, body: &'a str) -> ForgeFuture<'a, IssueComment> {
        Box::pin(async move {
            let path = self.repo_path(&format!("issues/comments/{comment_id}"));
            let updated = self.call(Method::PATCH, &path, &[], Some(&json!({"body": body})), Replay::Safe).await?;
            comment_of(&updated).ok_or_else(|| unreadable("PATCH", &path, "a comment with an id"))
        })
    }

    fn collaborator_permission<'a>(&'a self, login: &'a str) -> ForgeFuture<'a, Permission> {
        Box::pin(async move {
            if login.trim().is_empty() {
                return Ok(Permission::None);
            }
            let path = self.repo_path(&format!("collaborators/{}/permission", path_segment(login)));
            match self.call(Method::GET, &path, &[], None, Replay::Safe).await {
                Ok(answer) => Permission::from_answer(&answer).ok_or_else(|| unreadable("GET", &path, "a permission (role_name or permission)")),
                // GitHub's answer for a user that does not exist or cannot see the repository.
                Err(ForgeError::Status { status: 404, .. }) => Ok(Permission::None),
                Err(e) => Err(e),
            }
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

    #[test]
    fn permission_prefers_a_builtin_role_name_then_the_legacy_word() {
        let of = |answer: Value| Permission::from_answer(&answer);
        assert_eq!(of(json!({"permission": "write", "role_name": "maintain"})), Some(Permission::Maintain));
        assert_eq!(of(json!({"permission": "read", "role_name": "triage"})), Some(Permission::Triage));
        // An organisation's custom role is not one of the five; its base permission decides.
        assert_eq!(of(json!({"permission": "read", "role_name": "security-auditor"})), Some(Permission::Read));
        assert_eq!(of(json!({"permission": "admin"})), Some(Permission::Admin));
        assert_eq!(of(json!({"permission": "none", "role_name": null})), Some(Permission::None));
        assert_eq!(of(json!({"message": "Not Found"})), None);
        let all = [Permission::Admin, Permission::Maintain, Permission::Write, Permission::Triage, Permission::Read, Permission::None];
        assert_eq!(all.map(Permission::can_write), [true, true, true, false, false, false]);
        assert_eq!(all.map(|p| p.to_string()), ["admin", "maintain", "write", "triage", "read", "none"]);
        assert_eq!(serde_json::to_value(Permission::Maintain).expect("json"), json!("maintain"));
    }

    #[test]
    fn error_message_carries_every_errors_entry() {
        let too_long = json!({"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"}], "documentation_url": "https://docs.github.com/rest"});
        assert_eq!(error_message(&too_long, ""), "Validation Failed (body: custom: body is too long (maximum is 65536 characters))");
        let several = json!({"message": "Validation Failed", "errors": [{"resource": "Status", "field": "state", "code": "invalid"}, "head sha can't be blank", {"resource": "Issue"}, 7]});
        assert_eq!(error_message(&several, ""), "Validation Failed (state: invalid; head sha can't be blank)");
        assert_eq!(error_message(&json!({"message": "Not Found"}), ""), "Not Found");
        assert_eq!(error_message(&Value::Null, "<html>\n  <b>502 Bad Gateway</b>\n</html>"), "<html> <b>502 Bad Gateway</b> </html>");
        let long = "x".repeat(3000);
        assert_eq!(error_message(&json!({"message": long}), "").chars().count(), MAX_MESSAGE_CHARS + 3);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn transient_failures_are_retried_with_doubling_waits_and_others_are_not() {
        let policy = RetryPolicy { attempts: 4, first_backoff: Duration::from_millis(250) };
        let bad_gateway = Failure::of(502, &HeaderMap::new());
        let waits: Vec<_> = (1..=4).map(|n| policy.wait_after(n, bad_gateway)).collect();
        assert_eq!(waits, [Some(Duration::from_millis(250)), Some(Duration::from_millis(500)), Some(Duration::from_secs(1)), None]);
        assert_eq!(policy.wait_after(1, Failure::Transport), Some(Duration::from_millis(250)));
        let long = RetryPolicy { attempts: 20, first_backoff: Duration::from_secs(1) };
        assert_eq!(long.wait_after(19, bad_gateway), Some(MAX_BACKOFF), "capped");
        for status in [400, 401, 404, 409, 422] {
            assert_eq!(policy.wait_after(1, Failure::of(status, &HeaderMap::new())), None, "{status}");
        }
        // A 403 is a refusal unless it is a rate limit.
        assert_eq!(policy.wait_after(1, Failure::of(403, &HeaderMap::new())), None);
        assert_eq!(policy.wait_after(1, Failure::of(403, &headers(&[("x-ratelimit-remaining", "0")]))), Some(Duration::from_millis(250)));
        assert_eq!(policy.wait_after(1, Failure::of(403, &headers(&[("x-ratelimit-remaining", "12")]))), None);
        assert_eq!(policy.wait_after(2, Failure::of(403, &headers(&[("retry-after", "3")]))), Some(Duration::from_secs(3)));
        assert_eq!(policy.wait_after(1, Failure::of(429, &HeaderMap::new())), Some(Duration::from_millis(250)));
        assert_eq!(policy.wait_after(1, Failure::of(429, &headers(&[("retry-after", "30")]))), Some(MAX_RETRY_AFTER));
        assert_eq!(policy.wait_after(1, Failure::of(429, &headers(&[("retry-after", "31")]))), None, "longer than is worth waiting");
        let once = RetryPolicy { attempts: 1, ..policy };
        assert_eq!(once.wait_after(1, bad_gateway), None);
    }

    #[test]
    fn pages_follow_the_link_header_or_else_a_full_page() {
        let next = headers(&[(
            "link",
            r#"<https://api.github.com/repositories/1/issues/7/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/issues/7/comments?per_page=100&page=3>; rel="last""#,
        )]);
        let last = headers(&[("link", r#"<https://x/c?page=1>; rel="prev", <https://x/c?page=1>; rel="first""#)]);
        assert!(more_pages(&next, 100, 100));
        assert!(more_pages(&next, 40, 100), "the header decides");
        assert!(!more_pages(&last, 100, 100));
        assert!(more_pages(&HeaderMap::new(), 100, 100));
        assert!(!more_pages(&HeaderMap::new(), 99, 100));
        assert!(!more_pages(&next, 0, 100), "an empty page ends it");
        assert!(link_has_next("<https://x/c?page=2>;rel=next"));
        assert!(!link_has_next("<https://x/c?rel=\"next\">; rel=\"last\""), "only the parameters count");
    }

    #[test]
    fn logins_and_comments_are_read_as_github_writes_them() {
        assert_eq!(path_segment("octo-cat_1.x"), "octo-cat_1.x");
        assert_eq!(path_segment("renovate[bot]"), "renovate%5Bbot%5D");
        assert_eq!(path_segment("../admin"), "..%2Fadmin");
        let answer = json!({"id": 11, "html_url": "https://github.com/o/r/pull/7#issuecomment-11", "body": "hi", "user": {"login": "alice", "type": "User"}});
        assert_eq!(
            comment_of(&answer),
            Some(IssueComment { id: 11, body: "hi".into(), user: Some("alice".into()), url: Some("https://github.com/o/r/pull/7#issuecomment-11".into()) })
        );
        assert_eq!(comment_of(&json!({"id": 12, "user": null})), Some(IssueComment { id: 12, body: String::new(), user: None, url: None }));
        assert_eq!(comment_of(&json!({"body": "no id"})), None);
    }
}
