//! `MockForge`: GitHub's REST API for pulls, statuses, comments and permissions on 127.0.0.1:0, recording every request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use novacron_reconcile::remediation::GitHubForge;
use serde_json::{Value, json};

/// The repository `MockForge::forge` works on; the test helpers read and write its comments.
pub const REPO: &str = "acme/infra";
/// The token `MockForge::forge` sends; every other token is refused (401).
pub const TOKEN: &str = "forge-t0ken";
/// The login `TOKEN` belongs to: the author of what the reconciler posts.
pub const BOT_LOGIN: &str = "novacron-bot";
/// GitHub's limit on a comment body, in characters.
const MAX_COMMENT_CHARS: usize = 65536;
/// GitHub's limit on a commit status description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 140;

/// One request the forge received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: String,
    pub body: Value,
}

impl Recorded {
    fn new(method: &str, path: String, query: HashMap<String, String>, headers: &HeaderMap, body: Value) -> Recorded {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Recorded { method: method.into(), path, query, authorization, body }
    }
}

/// A conversation comment on a pull request.
struct Comment {
    id: u64,
    repo: String,
    number: u64,
    login: String,
    bot: bool,
    body: String,
    created: u64,
    updated: u64,
}

#[derive(Default)]
struct ForgeState {
    url: String,
    requests: Vec<Recorded>,
    /// number, head, title, body
    pulls: Vec<(u64, String, String, String)>,
    /// sha, state, context, description: in the order they were set
    statuses: Vec<(String, String, String, String)>,
    comments: Vec<Comment>,
    /// The last comment id given out (ids are global and only grow, as on GitHub).
    last_id: u64,
    /// Seconds of the mock's clock, one per change, for `created_at`/`updated_at`.
    clock: u64,
    /// login -> role
    permissions: HashMap<String, &'static str>,
    /// Every request fails with this (pull listings only for statuses below 500).
    fail: Option<u16>,
    /// The next requests fail with these, one each.
    fail_next: VecDeque<u16>,
}

impl ForgeState {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn comment_json(&self, c: &Comment) -> Value {
        json!({
            "id": c.id,
            "html_url": format!("http://forge/{}/pull/{}#issuecomment-{}", c.repo, c.number, c.id),
            "issue_url": format!("{}/repos/{}/issues/{}", self.url, c.repo, c.number),
            "body": c.body,
            "user": {"login": c.login, "type": if c.bot { "Bot" } else { "User" }},
            "created_at": timestamp(c.created),
            "updated_at": timestamp(c.updated),
        })
    }
}

/// `2024-05-01T00:00:00Z` plus `seconds` (the mock needs order, not the real time).
fn timestamp(seconds: u64) -> String {
    format!("2024-05-{:02}T{:02}:{:02}:{:02}Z", 1 + seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60)
}

type Shared = Arc<Mutex<ForgeState>>;

/// A GitHub-shaped REST API on 127.0.0.1:0 that records what it receives.
pub struct MockForge {
    pub url: String,
    state: Shared,
}

impl MockForge {
    pub async fn start() -> MockForge {
        let state: Shared = Arc::default();
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list_pulls).post(open_pull))
            .route("/repos/{owner}/{repo}/pulls/{number}", patch(update_pull))
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(commit_status))
            .route("/repos/{owner}/{repo}/commits/{sha}/comments", post(commit_comment))
            .route("/repos/{owner}/{repo}/issues/{number}/comments", get(list_comments).post(create_comment))
            .route("/repos/{owner}/{repo}/issues/comments/{id}", patch(update_comment))
            .route("/repos/{owner}/{repo}/collaborators/{username}/permission", get(permission))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        state.lock().expect("lock").url = url.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("forge serves") });
        MockForge { url, state }
    }

    /// A client for `REPO` with `TOKEN` (default retries: 4 attempts from 250 ms).
    pub fn forge(&self) -> GitHubForge {
        GitHubForge::new(&self.url, REPO, TOKEN).expect("forge")
    }

    /// Every request from now on fails with `status` (pull listings only for statuses below 500).
    pub fn fail_with(&self, status: u16) {
        self.state.lock().expect("lock").fail = Some(status);
    }

    /// The next `n` requests, whatever they are, fail with `status` and a body like GitHub's.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.state.lock().expect("lock").fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// Every request received, in order, failed ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// The comments of pull request `number` of `REPO`, oldest first: (id, login, body).
    pub fn comments(&self, number: u64) -> Vec<(u64, String, String)> {
        let s = self.state.lock().expect("lock");
        s.comments.iter().filter(|c| c.repo == REPO && c.number == number).map(|c| (c.id, c.login.clone(), c.body.clone())).collect()
    }

    /// A person's comment on pull request `number` of `REPO`; its id.
    pub fn add_comment(&self, number: u64, login: &str, body: &str) -> u64 {
        let mut s = self.state.lock().expect("lock");
        s.last_id += 1;
        let (id, now) = (s.last_id, s.tick());
        s.comments.push(Comment { id, repo: REPO.into(), number, login: login.into(), bot: false, body: body.into(), created: now, updated: now });
        id
    }

    /// Deletes comment `id` (as its author or a maintainer would in the web page).
    pub fn delete_comment(&self, id: u64) {
        self.state.lock().expect("lock").comments.retain(|c| c.id != id);
    }

    /// Gives `login` a role in `REPO`: admin, maintain, write, triage, read or none. Users
    /// never given one are unknown to the forge (404).
    pub fn set_permission(&self, login: &str, role: &str) {
        let role = ["admin", "maintain", "write", "triage", "read", "none"].into_iter().find(|r| *r == role).unwrap_or_else(|| panic!("no such role {role:?}"));
        self.state.lock().expect("lock").permissions.insert(login.into(), role);
    }

    /// The statuses set on commit `sha`, in order: (state, context, description).
    pub fn statuses(&self, sha: &str) -> Vec<(String, String, String)> {
        let s = self.state.lock().expect("lock");
        s.statuses.iter().filter(|st| st.0 == sha).map(|(_, state, context, description)| (state.clone(), context.clone(), description.clone())).collect()
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}))
}

fn validation_failed(resource: &str, field: &str, message: &str) -> Response {
    let errors = json!([{"resource": resource, "code": "custom", "field": field, "message": message}]);
    answer(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "Validation Failed", "errors": errors, "documentation_url": "https://docs.github.com/rest"}))
}

/// What GitHub sends with `status` (an injected failure).
fn failure(status: u16) -> Response {
    let code = StatusCode::from_u16(status).expect("status");
    match status {
        401 => answer(code, json!({"message": "Bad credentials"})),
        403 => answer(code, json!({"message": "Resource not accessible by integration"})),
        404 => not_found(),
        422 => answer(
            code,
            json!({"message": "Validation Failed", "errors": [{"resource": "Request", "code": "custom", "message": "refused by MockForge::fail_next"}]}),
        ),
        429 => {
            let mut response = answer(code, json!({"message": "API rate limit exceeded"}));
            response.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            response
        }
        503 => answer(code, json!({"message": "Service Unavailable"})),
        _ if status >= 500 => answer(code, json!({"message": "Server Error"})),
        _ => answer(code, json!({"message": "Error"})),
    }
}

/// Records the request, then plays any injected failure and checks the token: the caller's
/// login, or the status to fail with (`failure` gives its body). `pull_listing` is exempt from a persistent 5xx, so a
/// test can make the pull request creation fail after its lookup.
fn admit(state: &Shared, request: Recorded, pull_listing: bool) -> Result<String, u16> {
    let token = request.authorization.strip_prefix("token ").or_else(|| request.authorization.strip_prefix("Bearer ")).unwrap_or_default().to_string();
    let mut s = state.lock().expect("lock");
    s.requests.push(request);
    if let Some(status) = s.fail_next.pop_front().or(s.fail.filter(|st| !pull_listing || *st < 500)) {
        return Err(status);
    }
    if token != TOKEN {
        return Err(401);
    }
    Ok(BOT_LOGIN.to_string())
}

async fn list_pulls(
    State(state): State<Shared>,
    UrlPath((o, r)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let head = q.get("head").cloned().unwrap_or_default();
    if let Err(status) = admit(&state, Recorded::new("GET", format!("/repos/{o}/{r}/pulls"), q, &headers, Value::Null), true) {
        return failure(status);
    }
    let s = state.lock().expect("lock");
    let open: Vec<Value> = s
        .pulls
        .iter()
        .filter(|(_, h, _, _)| format!("{o}:{h}") == head)
        .map(|(n, h, title, body)| json!({"number": n, "html_url": format!("http://forge/{o}/{r}/pull/{n}"), "head": {"ref": h}, "title": title, "body": body}))
        .collect();
    answer(StatusCode::OK, Value::Array(open))
}

async fn open_pull(State(state): State<Shared>, UrlPath((o, r)): UrlPath<(String, String)>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(status) = admit(&state, Recorded::new("POST", format!("/repos/{o}/{r}/pulls"), HashMap::new(), &headers, body.clone()), false) {
        return failure(status);
    }
    let mut s = state.lock().expect("lock");
    let number = 40 + s.pulls.len() as u64 + 1;
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    s.pulls.push((number, text("head"), text("title"), text("body")));
    answer(StatusCode::CREATED, json!({"number": number, "html_url": format!("http://forge/{o}/{r}/pull/{number}")}))
}

async fn update_pull(State(state): State<Shared>, UrlPath((o, r, n)): UrlPath<(String, String, u64)>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(status) = admit(&state, Recorded::new("PATCH", format!("/repos/{o}/{r}/pulls/{n}"), HashMap::new(), &headers, body.clone()), false) {
        return failure(status);
    }
    let mut s = state.lock().expect("lock");
    for pull in s.pulls.iter_mut().filter(|p| p.0 == n) {
        pull.2 = body["title"].as_str().unwrap_or_default().to_string();
        pull.3 = body["body"].as_str().unwrap_or_default().to_string();
    }
    answer(StatusCode::OK, json!({"number": n, "html_url": format!("http://forge/{o}/{r}/pull/{n}")}))
}

async fn commit_status(
    State(state): State<Shared>,
    UrlPath((o, r, sha)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(status) = admit(&state, Recorded::new("POST", format!("/repos/{o}/{r}/statuses/{sha}"), HashMap::new(), &headers, body.clone()), false) {
        return failure(status);
    }
    let state_word = body["state"].as_str().unwrap_or_default();
    if !["success", "pending", "failure", "error"].contains(&state_word) {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Validation Failed", "errors": [{"resource": "Status", "field": "state", "code": "invalid"}]}),
        );
    }
    let description = body["description"].as_str().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return validation_failed("Status", "description", "description is too long (maximum is 140 characters)");
    }
    let context = body["context"].as_str().unwrap_or("default");
    let mut s = state.lock().expect("lock");
    s.statuses.push((sha.clone(), state_word.into(), context.into(), description.into()));
    let id = s.statuses.len();
    answer(StatusCode::CREATED, json!({"id": id, "state": state_word, "context": context, "description": description}))
}

async fn commit_comment(
    State(state): State<Shared>,
    UrlPath((o, r, sha)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(status) = admit(&state, Recorded::new("POST", format!("/repos/{o}/{r}/commits/{sha}/comments"), HashMap::new(), &headers, body.clone()), false) {
        return failure(status);
    }
    answer(StatusCode::CREATED, json!({"id": 7, "body": body["body"]}))
}

async fn list_comments(
    State(state): State<Shared>,
    UrlPath((o, r, n)): UrlPath<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{o}/{r}/issues/{n}/comments");
    let number = |k: &str, default: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).filter(|v| *v > 0).unwrap_or(default);
    let (per_page, page) = (number("per_page", 30).min(100), number("page", 1));
    if let Err(status) = admit(&state, Recorded::new("GET", path.clone(), q, &headers, Value::Null), false) {
        return failure(status);
    }
    let s = state.lock().expect("lock");
    let repo = format!("{o}/{r}");
    let all: Vec<&Comment> = s.comments.iter().filter(|c| c.repo == repo && c.number == n).collect();
    let shown: Vec<Value> = all.iter().skip((page - 1) * per_page).take(per_page).map(|c| s.comment_json(c)).collect();
    let last = all.len().div_ceil(per_page).max(1);
    let link_to = |p: usize, rel: &str| format!("<{}{path}?per_page={per_page}&page={p}>; rel=\"{rel}\"", s.url);
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
        links.push(link_to(1, "first"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    let mut response = answer(StatusCode::OK, Value::Array(shown));
    if !links.is_empty() {
        response.headers_mut().insert("link", links.join(", ").parse().expect("link header"));
    }
    response
}

async fn create_comment(
    State(state): State<Shared>,
    UrlPath((o, r, n)): UrlPath<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let login = match admit(&state, Recorded::new("POST", format!("/repos/{o}/{r}/issues/{n}/comments"), HashMap::new(), &headers, body.clone()), false) {
        Ok(login) => login,
        Err(status) => return failure(status),
    };
    let Some(text) = body["body"].as_str() else {
        return answer(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "Invalid request.", "errors": ["\"body\" wasn't supplied."]}));
    };
    if text.chars().count() > MAX_COMMENT_CHARS {
        return validation_failed("IssueComment", "body", "body is too long (maximum is 65536 characters)");
    }
    let mut s = state.lock().expect("lock");
    s.last_id += 1;
    let (id, now) = (s.last_id, s.tick());
    let comment = Comment { id, repo: format!("{o}/{r}"), number: n, login, bot: true, body: text.into(), created: now, updated: now };
    let shown = s.comment_json(&comment);
    s.comments.push(comment);
    answer(StatusCode::CREATED, shown)
}

async fn update_comment(
    State(state): State<Shared>,
    UrlPath((o, r, id)): UrlPath<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let login = match admit(&state, Recorded::new("PATCH", format!("/repos/{o}/{r}/issues/comments/{id}"), HashMap::new(), &headers, body.clone()), false) {
        Ok(login) => login,
        Err(status) => return failure(status),
    };
    let Some(text) = body["body"].as_str() else {
        return answer(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "Invalid request.", "errors": ["\"body\" wasn't supplied."]}));
    };
    if text.chars().count() > MAX_COMMENT_CHARS {
        return validation_failed("IssueComment", "body", "body is too long (maximum is 65536 characters)");
    }
    let mut s = state.lock().expect("lock");
    let repo = format!("{o}/{r}");
    let now = s.tick();
    let Some(comment) = s.comments.iter_mut().find(|c| c.id == id && c.repo == repo) else {
        return not_found();
    };
    if comment.login != login {
        return answer(StatusCode::FORBIDDEN, json!({"message": "Resource not accessible by integration"}));
    }
    comment.body = text.into();
    comment.updated = now;
    let s = &*s;
    let shown = s.comments.iter().find(|c| c.id == id).map(|c| s.comment_json(c)).expect("just updated");
    answer(StatusCode::OK, shown)
}

async fn permission(State(state): State<Shared>, UrlPath((o, r, username)): UrlPath<(String, String, String)>, headers: HeaderMap) -> Response {
    if let Err(status) =
        admit(&state, Recorded::new("GET", format!("/repos/{o}/{r}/collaborators/{username}/permission"), HashMap::new(), &headers, Value::Null), false)
    {
        return failure(status);
    }
    let s = state.lock().expect("lock");
    let Some(role) = s.permissions.get(&username).copied().filter(|_| format!("{o}/{r}") == REPO) else {
        return not_found();
    };
    // The legacy word folds maintain into write and triage into read.
    let legacy = match role {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    };
    answer(StatusCode::OK, json!({"permission": legacy, "role_name": role, "user": {"login": username, "type": "User"}}))
}
