//! A headless Chromium driven over the DevTools protocol on a pipe (no websocket, no unsafe), found or installed on first use.
//!
//! `--remote-debugging-pipe` makes Chrome read commands from fd 3 and write replies to fd 4,
//! each a JSON text ended by a NUL byte. std cannot place a child's fds 3 and 4 without
//! `unsafe`, so a shell maps them onto the child's stdin and stdout before exec'ing Chrome.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

/// What a person without Chromium is told to do.
pub const INSTALL_HINT: &str = "install chromium (Debian: apt-get install chromium)";
/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a navigation may take to fire its load event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Page::wait_for`] re-evaluates its condition.
const POLL: Duration = Duration::from_millis(50);
/// Events kept per session; older ones are dropped (Runtime.enable alone sends a steady trickle).
const EVENTS_KEPT: usize = 2000;
/// Serialises installs across test processes.
const INSTALL_LOCK: &str = "/tmp/novacron-chromium.lock";
/// Runs `$0 "$@"` with its stdin as fd 3 and its stdout as fd 4.
const PIPE_SHIM: &str = r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#;
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
    "--window-size=1280,900",
];

/// Why a protocol call failed.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    /// Chrome answered the command with an error.
    #[error("{method}: {message}")]
    Command { method: String, message: String },
    /// The page's JavaScript threw (or its promise rejected).
    #[error("javascript threw: {0}")]
    Exception(String),
    /// Chrome's reply lacked what the command promises.
    #[error("{method}: unexpected reply: {detail}")]
    BadReply { method: String, detail: String },
    /// Nothing came within the time allowed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    /// Chrome exited or closed its end of the pipe.
    #[error("chromium is gone ({context}); the end of its stderr:\n{stderr}")]
    Closed { context: String, stderr: String },
    /// Writing a file (a screenshot).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Why no Chromium was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// `NOVACRON_CHROMIUM` names something that is not a file.
    Named(PathBuf),
    /// Neither `chromium` nor `chromium-browser` is on PATH.
    NotOnPath,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Named(path) => write!(f, "NOVACRON_CHROMIUM={} is not a file", path.display()),
            Missing::NotOnPath => write!(f, "neither chromium nor chromium-browser is on PATH: {INSTALL_HINT}"),
        }
    }
}

/// Chromium as `named` (the value of `NOVACRON_CHROMIUM`) says, else the first `chromium` or
/// `chromium-browser` in `path` (the value of `PATH`).
pub fn locate_chromium(named: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, Missing> {
    if let Some(named) = named {
        let named = PathBuf::from(named);
        return if named.is_file() { Ok(named) } else { Err(Missing::Named(named)) };
    }
    let dirs: Vec<PathBuf> = path.map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    ["chromium", "chromium-browser"].iter().flat_map(|name| dirs.iter().map(move |d| d.join(name))).find(|c| c.is_file()).ok_or(Missing::NotOnPath)
}

/// The Chromium binary; installed with apt when missing and this process runs as root. Panics
/// (failing the test) when it cannot be had: never a skip.
pub fn chromium() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let locate = || locate_chromium(std::env::var_os("NOVACRON_CHROMIUM"), std::env::var_os("PATH"));
            match locate() {
                Ok(path) => path,
                Err(Missing::NotOnPath) if rustix::process::getuid().is_root() => {
                    install_chromium();
                    locate().unwrap_or_else(|e| panic!("apt installed chromium, yet: {e}"))
                }
                Err(Missing::NotOnPath) => panic!("{}; not root, so the tests cannot install it themselves", Missing::NotOnPath),
                Err(e) => panic!("{e}"),
            }
        })
        .clone()
}

/// `apt-get install chromium` under a lock (another test process may be installing it), with
/// `apt-get update` only when the first attempt fails.
fn install_chromium() {
    let script = "command -v chromium >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }";
    eprintln!("chromium is missing: installing it with apt-get (once per machine)");
    let out = Command::new("flock")
        .args([INSTALL_LOCK, "sh", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run flock (util-linux) to install chromium: {e}; {INSTALL_HINT}"));
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        panic!("apt-get install chromium failed ({}); {INSTALL_HINT}. apt's last lines:\n{}", out.status, tail(&text, 20));
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where screenshots go: `<cargo target dir>/screenshots` (kept by CI as artifacts).
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the reconciler sits in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), |t| workspace.join(t));
    target.join("screenshots")
}

/// Replies waited for, and events queued by session ("" for the browser itself).
#[derive(Default)]
struct Routing {
    pending: HashMap<u64, oneshot::Sender<Result<Value, String>>>,
    events: HashMap<String, VecDeque<Value>>,
    closed: bool,
}

/// The pipe to one Chrome: commands out, replies and events in.
struct Connection {
    commands: Mutex<ChildStdin>,
    next_id: AtomicU64,
    routing: Mutex<Routing>,
    /// Bumped on every event and on close, so waiters re-check their queue.
    arrivals: watch::Sender<u64>,
    stderr_log: PathBuf,
}

impl Connection {
    fn routing(&self) -> std::sync::MutexGuard<'_, Routing> {
        self.routing.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn closed(&self, context: &str) -> CdpError {
        let stderr = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        CdpError::Closed { context: context.to_string(), stderr: tail(&stderr, 30) }
    }

    /// Sends `method` (in `session`, or to the browser) and waits for its reply.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut routing = self.routing();
            if routing.closed {
                return Err(self.closed(&format!("before {method}")));
            }
            routing.pending.insert(id, tx);
        }
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("a JSON value serialises");
        bytes.push(0);
        // Commands are small and Chrome reads its pipe all the time: a blocking write is fine.
        let written = self.commands.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write_all(&bytes);
        if written.is_err() {
            return Err(self.closed(&format!("writing {method}")));
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Err(_) => {
                self.routing().pending.remove(&id);
                Err(CdpError::Timeout { what: format!("the reply to {method}"), after: COMMAND_TIMEOUT })
            }
            Ok(Err(_)) => Err(self.closed(&format!("waiting for the reply to {method}"))),
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(message))) => Err(CdpError::Command { method: method.to_string(), message }),
        }
    }

    /// Removes and returns the queued events of `session` named `method`.
    fn take_events(&self, session: &str, method: &str) -> Vec<Value> {
        let mut routing = self.routing();
        let Some(queue) = routing.events.get_mut(session) else { return Vec::new() };
        let (taken, kept) = std::mem::take(queue).into_iter().partition(|e| e["method"] == method);
        *queue = kept;
        taken.into_iter().map(|mut e| e["params"].take()).collect()
    }

    /// Waits for the next event `method` of `session`; returns its params.
    async fn wait_event(&self, session: &str, method: &str, timeout: Duration) -> Result<Value, CdpError> {
        let mut arrivals = self.arrivals.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            arrivals.borrow_and_update();
            {
                let mut routing = self.routing();
                if let Some(queue) = routing.events.get_mut(session)
                    && let Some(at) = queue.iter().position(|e| e["method"] == method)
                {
                    return Ok(queue.remove(at).map(|mut e| e["params"].take()).unwrap_or(Value::Null));
                }
                if routing.closed {
                    drop(routing);
                    return Err(self.closed(&format!("waiting for {method}")));
                }
            }
            if tokio::time::timeout_at(deadline, arrivals.changed()).await.is_err() {
                return Err(CdpError::Timeout { what: method.to_string(), after: timeout });
            }
        }
    }

    /// Hands one message from Chrome to whoever waits for it.
    fn route(&self, mut message: Value) {
        let mut routing = self.routing();
        if let Some(id) = message["id"].as_u64() {
            if let Some(waiter) = routing.pending.remove(&id) {
                let reply = match message.get("error") {
                    Some(error) => Err(error["message"].as_str().map_or_else(|| error.to_string(), str::to_string)),
                    None => Ok(message["result"].take()),
                };
                let _ = waiter.send(reply);
            }
            return;
        }
        let session = message["sessionId"].as_str().unwrap_or_default().to_string();
        let queue = routing.events.entry(session).or_default();
        if queue.len() == EVENTS_KEPT {
            queue.pop_front();
        }
        queue.push_back(message);
        drop(routing);
        self.arrivals.send_modify(|n| *n += 1);
    }

    /// Chrome's end of the pipe closed: every waiter gets an error.
    fn close(&self) {
        let mut routing = self.routing();
        routing.closed = true;
        routing.pending.clear();
        drop(routing);
        self.arrivals.send_modify(|n| *n += 1);
    }
}

/// Reads NUL-ended messages from Chrome until its pipe closes.
fn read_messages(replies: ChildStdout, connection: Arc<Connection>) {
    let mut reader = BufReader::new(replies);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(0, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        if let Ok(message) = serde_json::from_slice::<Value>(&buf) {
            connection.route(message);
        }
    }
    connection.close();
}

/// A running headless Chromium with its own profile; killed (its whole process group) on drop.
pub struct Browser {
    connection: Arc<Connection>,
    child: Child,
    // Dropped after the child is dead, so Chrome no longer writes into it.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (installing it first when missing and allowed) and checks it answers.
    /// Panics with the end of Chrome's stderr when it does not.
    pub async fn launch() -> Browser {
        let binary = chromium();
        let profile = tempfile::Builder::new().prefix("novacron-chromium-").tempdir().expect("a temporary directory for the profile");
        let stderr_log = profile.path().join("chromium.stderr");
        let stderr = std::fs::File::create(&stderr_log).expect("create the stderr log");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(PIPE_SHIM)
            .arg(&binary)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg("about:blank");
        // Its own process group, so that drop kills the renderers with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} through sh: {e}", binary.display()));
        let commands = child.stdin.take().expect("stdin is piped");
        let replies = child.stdout.take().expect("stdout is piped");
        let connection = Arc::new(Connection {
            commands: Mutex::new(commands),
            next_id: AtomicU64::new(1),
            routing: Mutex::new(Routing::default()),
            arrivals: watch::channel(0).0,
            stderr_log,
        });
        let reader = Arc::clone(&connection);
        std::thread::spawn(move || read_messages(replies, reader));
        let browser = Browser { connection, child, _profile: profile };
        if let Err(e) = browser.connection.call(None, "Browser.getVersion", json!({})).await {
            panic!("{} does not answer on its DevTools pipe: {e}", binary.display());
        }
        browser
    }

    /// A new tab on about:blank, attached (flat session) with the Page and Runtime domains on.
    pub async fn new_page(&self) -> Result<Page, CdpError> {
        let created = self.connection.call(None, "Target.createTarget", json!({"url": "about:blank"})).await?;
        let target = created["targetId"].as_str().ok_or_else(|| bad_reply("Target.createTarget", &created))?.to_string();
        let attached = self.connection.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await?;
        let session = attached["sessionId"].as_str().ok_or_else(|| bad_reply("Target.attachToTarget", &attached))?.to_string();
        let page = Page { connection: Arc::clone(&self.connection), session };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process_group(rustix::process::Pid::from_child(&self.child), rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bad_reply(method: &str, reply: &Value) -> CdpError {
    CdpError::BadReply { method: method.to_string(), detail: reply.to_string() }
}

/// A JavaScript string literal of `text`.
fn js_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// One tab.
pub struct Page {
    connection: Arc<Connection>,
    session: String,
}

impl Page {
    /// Any protocol command in this tab's session.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.connection.call(Some(&self.session), method, params).await
    }

    /// Loads `url` and waits for its load event.
    pub async fn goto(&self, url: &str) -> Result<(), CdpError> {
        self.connection.take_events(&self.session, "Page.loadEventFired");
        let navigated = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(error) = navigated["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(CdpError::Command { method: "Page.navigate".into(), message: format!("{url}: {error}") });
        }
        self.connection.wait_event(&self.session, "Page.loadEventFired", LOAD_TIMEOUT).await.map(drop)
    }

    /// Evaluates `js` (awaiting a promise) and returns its value; `undefined` is null.
    pub async fn eval(&self, js: &str) -> Result<Value, CdpError> {
        let mut reply = self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true, "awaitPromise": true})).await?;
        if let Some(details) = reply.get("exceptionDetails") {
            let text = details["exception"]["description"].as_str().or(details["text"].as_str()).unwrap_or("an exception");
            return Err(CdpError::Exception(text.to_string()));
        }
        Ok(reply["result"]["value"].take())
    }

    /// Polls `condition` every 50 ms until it is `true`. A condition that throws (the element
    /// is not there yet) counts as false; the last value or error is in the timeout's message.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> Result<(), CdpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match self.eval(condition).await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(other) => other.to_string(),
                Err(e @ CdpError::Closed { .. }) => return Err(e),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(CdpError::Timeout { what: format!("`{condition}` (last: {last})"), after: timeout });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sets the value of the input `selector` matches, as typing would (an `input` event).
    pub async fn fill(&self, selector: &str, value: &str) -> Result<(), CdpError> {
        let js = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) throw new Error('nothing matches ' + {s}); e.value = {v}; e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()",
            s = js_string(selector),
            v = js_string(value)
        );
        self.eval(&js).await.map(drop)
    }

    /// Clicks the element `selector` matches.
    pub async fn click(&self, selector: &str) -> Result<(), CdpError> {
        let js = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) throw new Error('nothing matches ' + {s}); e.click(); }})()",
            s = js_string(selector)
        );
        self.eval(&js).await.map(drop)
    }

    /// Clicks `selector` (a submit button, a link) and waits for the page it leads to.
    pub async fn click_and_wait(&self, selector: &str) -> Result<(), CdpError> {
        self.connection.take_events(&self.session, "Page.loadEventFired");
        self.click(selector).await?;
        self.connection.wait_event(&self.session, "Page.loadEventFired", LOAD_TIMEOUT).await.map(drop)
    }

    /// A PNG of the viewport, written to `path` (parent directories made).
    pub async fn screenshot(&self, path: &Path) -> Result<(), CdpError> {
        self.capture(path, json!({"format": "png"})).await
    }

    /// A PNG of the whole page, beyond the viewport (at most `max_height` CSS pixels tall).
    pub async fn screenshot_full(&self, path: &Path, max_height: f64) -> Result<(), CdpError> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &metrics["cssContentSize"];
        let (width, height) = (size["width"].as_f64().unwrap_or(1280.0), size["height"].as_f64().unwrap_or(900.0).min(max_height));
        let clip = json!({"x": 0, "y": 0, "width": width, "height": height, "scale": 1});
        self.capture(path, json!({"format": "png", "captureBeyondViewport": true, "clip": clip})).await
    }

    async fn capture(&self, path: &Path, params: Value) -> Result<(), CdpError> {
        let shot = self.call("Page.captureScreenshot", params).await?;
        let data = shot["data"].as_str().ok_or_else(|| bad_reply("Page.captureScreenshot", &json!("no data")))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| CdpError::BadReply { method: "Page.captureScreenshot".into(), detail: e.to_string() })?;
        let io = |source| CdpError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, png).map_err(io)
    }

    /// Emulates a `width` × `height` CSS-pixel viewport (a phone: 390 × 844).
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<(), CdpError> {
        self.call("Emulation.setDeviceMetricsOverride", json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false})).await.map(drop)
    }

    /// `name=value; ...` of the cookies the current page's URL gets, HttpOnly ones included
    /// (`document.cookie` cannot see those).
    pub async fn cookie_header(&self) -> Result<String, CdpError> {
        let reply = self.call("Network.getCookies", json!({})).await?;
        let cookies = reply["cookies"].as_array().ok_or_else(|| bad_reply("Network.getCookies", &reply))?;
        Ok(cookies
            .iter()
            .map(|c| format!("{}={}", c["name"].as_str().unwrap_or_default(), c["value"].as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("; "))
    }

    /// The messages of the JavaScript dialogs (`alert`, `confirm`) opened since the last call.
    pub fn dialogs_opened(&self) -> Vec<String> {
        self.connection
            .take_events(&self.session, "Page.javascriptDialogOpening")
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
