//! Where policies run: a pool of admission worker processes, each bounded in memory and given
//! a time budget per policy, so one policy author cannot stall or kill the platform.
//!
//! Protocol: the server writes one [`WorkerRequest`] JSON line per policy on the worker's
//! stdin and reads one [`Judgement`] JSON line back. The worker keeps compiled modules keyed
//! by policy id and version. A worker that misses the budget, dies (an allocation beyond its
//! address-space bound aborts it) or answers garbage is killed and replaced.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::admission::{self, Admission, Budget, Judgement, PolicyRow, Verdicts};

/// Worker processes (and so concurrent evaluations) per platform.
pub const POOL_SIZE: usize = 2;

/// One evaluation request: a policy and the admission input `{kind, action, object}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// The policy; its `rule` is compiled only when id and version are not cached.
    pub policy: PolicyRow,
    /// `{kind, action, object}`.
    pub input: Value,
}

/// The body of `novacron-platform admission-worker`: bounds this process's address space,
/// then answers requests on stdin until it closes.
pub fn run(memory_mb: u64) -> anyhow::Result<()> {
    let bytes = memory_mb.saturating_mul(1024 * 1024);
    rustix::process::setrlimit(rustix::process::Resource::As, rustix::process::Rlimit { current: Some(bytes), maximum: Some(bytes) })
        .map_err(|e| anyhow::anyhow!("cannot limit the admission worker to {memory_mb} MiB: {e}"))?;
    answer(std::io::stdin().lock(), std::io::stdout().lock())
}

/// Answers each request line of `input` with one judgement line on `output`.
fn answer(input: impl BufRead, mut output: impl Write) -> anyhow::Result<()> {
    let admission = Admission::default();
    for line in input.lines() {
        let line = line?;
        let judgement = match serde_json::from_str::<WorkerRequest>(&line) {
            Ok(request) => admission.judge(&request.policy, &request.input),
            Err(e) => Judgement::Failed(format!("the admission worker cannot read the request: {e}")),
        };
        serde_json::to_writer(&mut output, &judgement)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// A running worker: its stdin and the lines a reader thread forwards from its stdout.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
}

impl Worker {
    fn spawn(binary: &Path, memory_mb: u64) -> std::io::Result<Worker> {
        let mut child = Command::new(binary)
            .arg("admission-worker")
            .arg("--memory-mb")
            .arg(memory_mb.to_string())
            // Policies see nothing of the platform's environment (API keys may be in it).
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, replies) = mpsc::channel();
        std::thread::Builder::new().name("admission-worker-reader".into()).spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if send.send(line).is_err() {
                    break;
                }
            }
        })?;
        Ok(Worker { child, stdin, replies })
    }

    /// Sends one request and waits for the reply at most `budget`.
    fn judge(&mut self, request: &str, budget: &Budget) -> Reply {
        if self.stdin.write_all(request.as_bytes()).and_then(|()| self.stdin.flush()).is_err() {
            return Reply::Gone;
        }
        match self.replies.recv_timeout(budget.time) {
            Ok(line) => match serde_json::from_str(&line) {
                Ok(judgement) => Reply::Answered(judgement),
                Err(e) => Reply::Garbage(format!("the admission worker answered garbage: {e}")),
            },
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Reply::OverBudget,
        }
    }
}

/// How a worker answered one request; only an `Answered` worker is used again.
enum Reply {
    Answered(Judgement),
    /// Not valid JSON of a judgement.
    Garbage(String),
    /// No answer within the budget, or the worker died evaluating (its memory bound aborts it).
    OverBudget,
    /// The request could not be sent: the worker had exited before (say, killed while idle).
    Gone,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Worker processes kept between evaluations ([`Evaluator`]'s permits bound how many run).
struct Pool {
    binary: PathBuf,
    memory_mb: u64,
    idle: Mutex<Vec<Worker>>,
}

impl Pool {
    /// Judges one policy on a worker; the worker goes back to the pool only if it answered.
    fn judge(&self, policy: &PolicyRow, input: &Value, budget: &Budget) -> Judgement {
        let request = WorkerRequest { policy: policy.clone(), input: input.clone() };
        let mut line = serde_json::to_string(&request).expect("a request is plain JSON");
        line.push('\n');
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // An idle worker that has gone is replaced once; a fresh one that cannot take the
        // request is a failure.
        let mut reused = idle.is_some();
        let mut worker = idle;
        loop {
            let mut current = match worker.take().map(Ok).unwrap_or_else(|| Worker::spawn(&self.binary, self.memory_mb)) {
                Ok(w) => w,
                Err(e) => return Judgement::Failed(format!("cannot start the admission worker {}: {e}", self.binary.display())),
            };
            match current.judge(&line, budget) {
                Reply::Answered(judgement) => {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(current);
                    return judgement;
                }
                Reply::Garbage(e) => return Judgement::Failed(e),
                Reply::Gone if reused => reused = false,
                Reply::Gone => return Judgement::Failed("the admission worker exited before taking the request".into()),
                Reply::OverBudget => {
                    drop(current);
                    // Replace it now, so the next write does not pay the start-up.
                    if let Ok(fresh) = Worker::spawn(&self.binary, self.memory_mb) {
                        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(fresh);
                    }
                    return Judgement::OverBudget;
                }
            }
        }
    }
}

/// Evaluates admission off the request executor, within a [`Budget`] per policy: in worker
/// processes when a worker binary is configured, otherwise in-process on a helper thread,
/// where the budget bounds the wait (the thread finishes in the background) but no memory
/// bound applies.
pub struct Evaluator {
    budget: Budget,
    backend: Backend,
    permits: Arc<Semaphore>,
}

#[derive(Clone)]
enum Backend {
    Workers(Arc<Pool>),
    InProcess(Arc<Admission>),
}

impl Backend {
    fn judge(&self, policy: &PolicyRow, input: &Value, budget: &Budget) -> Judgement {
        match self {
            Backend::Workers(pool) => pool.judge(policy, input, budget),
            Backend::InProcess(admission) => judge_in_process(admission, policy, input, budget),
        }
    }
}

impl Evaluator {
    /// Worker processes of `binary`, or in-process when `None`.
    pub fn new(binary: Option<PathBuf>, budget: Budget) -> Evaluator {
        let permits = Arc::new(Semaphore::new(POOL_SIZE));
        match binary {
            Some(binary) => {
                let pool = Pool { binary, memory_mb: budget.memory_mb.unwrap_or(crate::DEFAULT_ADMISSION_MEMORY_MB), idle: Mutex::new(Vec::new()) };
                Evaluator { budget, backend: Backend::Workers(Arc::new(pool)), permits }
            }
            None => Evaluator { budget: Budget { memory_mb: None, ..budget }, backend: Backend::InProcess(Arc::new(Admission::default())), permits },
        }
    }

    /// The budget each policy gets.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Runs `f` on a blocking thread with one of the [`POOL_SIZE`] evaluation permits.
    async fn off_executor<T: Send + 'static>(&self, f: impl FnOnce(&Backend, &Budget) -> T + Send + 'static) -> Result<T, String> {
        let _permit = self.permits.acquire().await.map_err(|_| "the admission pool is closed".to_string())?;
        let (backend, budget) = (self.backend.clone(), self.budget);
        tokio::task::spawn_blocking(move || f(&backend, &budget)).await.map_err(|e| format!("admission evaluation panicked: {e}"))
    }

    /// Every enabled policy's verdict on `{kind, action, object}`, each policy within the budget.
    pub async fn evaluate(&self, policies: Vec<PolicyRow>, kind: &str, action: &str, object: &Value) -> Verdicts {
        if policies.is_empty() {
            return Verdicts::default();
        }
        let input = novacron_policy::admission_input(kind, action, object);
        self.off_executor(move |backend, budget| admission::verdicts(&policies, budget, |p| backend.judge(p, &input, budget)))
            .await
            .unwrap_or_else(admission::unjudgeable)
    }

    /// Whether a policy's `rule` misses the budget on any of `objects` (kind, object), as a
    /// `create`; used when a policy is written, on a representative object of each kind.
    pub async fn over_budget(&self, rule: &str, objects: Vec<(&'static str, Value)>) -> bool {
        // Compiled modules are cached by id and version: the probe's id names its rule.
        let id = format!("probe-{}", novacron_schemas::sha256_hex(rule.as_bytes()));
        let probe = PolicyRow { id, name: "probe".into(), version: 0, rule: rule.to_string(), mode: admission::Mode::Block, priority: 0 };
        self.off_executor(move |backend, budget| {
            objects
                .iter()
                .any(|(kind, object)| backend.judge(&probe, &novacron_policy::admission_input(kind, "create", object), budget) == Judgement::OverBudget)
        })
        .await
        .unwrap_or(false)
    }
}

fn judge_in_process(admission: &Arc<Admission>, policy: &PolicyRow, input: &Value, budget: &Budget) -> Judgement {
    let (send, receive) = mpsc::channel();
    let (admission, policy, input) = (Arc::clone(admission), policy.clone(), input.clone());
    let spawned = std::thread::Builder::new().name("admission-eval".into()).spawn(move || {
        let _ = send.send(admission.judge(&policy, &input));
    });
    if let Err(e) = spawned {
        return Judgement::Failed(format!("cannot start an evaluation thread: {e}"));
    }
    match receive.recv_timeout(budget.time) {
        Ok(judgement) => judgement,
        Err(RecvTimeoutError::Timeout) => Judgement::OverBudget,
        Err(RecvTimeoutError::Disconnected) => Judgement::Failed("the evaluation panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_worker_answers_one_line_per_request_and_caches_by_version() {
        let policy = PolicyRow {
            id: "pol-1".into(),
            name: "cores".into(),
            version: 1,
            rule: "package t\ndeny contains \"too many\" if input.object.cpu_cores > 8\n".into(),
            mode: admission::Mode::Block,
            priority: 100,
        };
        let big = WorkerRequest { policy: policy.clone(), input: novacron_policy::admission_input("vm", "create", &serde_json::json!({"cpu_cores": 16})) };
        let garbage = "{not json";
        let requests = format!("{}\n{garbage}\n", serde_json::to_string(&big).expect("json"));
        let mut out = Vec::new();
        answer(requests.as_bytes(), &mut out).expect("answers");
        let replies: Vec<Judgement> = String::from_utf8(out).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("a judgement")).collect();
        assert_eq!(replies[0], Judgement::Violations(vec!["too many".into()]));
        assert!(matches!(&replies[1], Judgement::Failed(m) if m.contains("cannot read the request")), "{replies:?}");
    }

    #[tokio::test]
    async fn in_process_evaluation_keeps_the_time_budget() {
        let budget = Budget { time: Duration::from_millis(300), memory_mb: Some(512) };
        let evaluator = Evaluator::new(None, budget);
        assert_eq!(evaluator.budget().memory_mb, None, "no memory bound in-process");
        // About two seconds of work in a debug build, in little memory (the thread runs on).
        let slow = "package slow\ndeny contains \"never\" if {\n  some a in numbers.range(1, 600)\n  some b in numbers.range(1, 600)\n  a * b < 0\n}\n";
        let started = std::time::Instant::now();
        assert!(evaluator.over_budget(slow, vec![("vm", serde_json::json!({}))]).await);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(!evaluator.over_budget("package quick\ndeny contains \"x\" if false\n", vec![("vm", serde_json::json!({}))]).await);
    }
}
