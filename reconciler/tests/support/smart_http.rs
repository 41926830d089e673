//! A smart-HTTP git server for tests: `git http-backend` (Debian's git) behind a small CGI bridge in axum.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};

/// Where Debian's git keeps the CGI program.
pub const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";

/// Serves the repositories under `root` at `http://127.0.0.1:<port>/git/<name>`.
pub struct GitHttpServer {
    /// `http://127.0.0.1:<port>/git`.
    pub base: String,
    allow_push: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Bridge {
    root: PathBuf,
    allow_push: Arc<AtomicBool>,
}

impl GitHttpServer {
    pub async fn start(root: PathBuf) -> GitHttpServer {
        let allow_push = Arc::new(AtomicBool::new(false));
        let app = axum::Router::new().fallback(cgi).with_state(Bridge { root, allow_push: allow_push.clone() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/git", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("git server serves") });
        GitHttpServer { base, allow_push }
    }

    /// http-backend enables receive-pack only for an authenticated user (REMOTE_USER); without
    /// one it refuses pushes with 403.
    pub fn allow_push(&self, yes: bool) {
        self.allow_push.store(yes, Ordering::SeqCst);
    }
}

async fn cgi(State(bridge): State<Bridge>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let path_info = uri.path().strip_prefix("/git").unwrap_or(uri.path()).to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (content_type, encoding) = (header("content-type"), header("content-encoding"));
    let user = bridge.allow_push.load(Ordering::SeqCst).then(|| "pusher".to_string());
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(HTTP_BACKEND);
        command
            .env_clear()
            .env("GIT_PROJECT_ROOT", &bridge.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &path_info)
            .env("REQUEST_METHOD", method.as_str())
            .env("QUERY_STRING", &query)
            .env("CONTENT_TYPE", &content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", &encoding)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(user) = user {
            command.env("REMOTE_USER", user);
        }
        let mut child = command.spawn().expect("git http-backend starts");
        child.stdin.take().expect("stdin").write_all(&body).expect("request body");
        child.wait_with_output().expect("git http-backend runs")
    })
    .await
    .expect("bridge task");
    cgi_response(&output.stdout)
}

/// Splits a CGI answer into `Status:`, headers and body.
fn cgi_response(raw: &[u8]) -> Response<Body> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4)).or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else { return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from("bad CGI answer")).expect("response") };
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&raw[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response.body(Body::from(raw[end + gap..].to_vec())).expect("response")
}
