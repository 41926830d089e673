//! Progress of slow steps (a large fetch, reading the platform, comparing), reported to a sink the caller chooses: the CLI draws a status line on a terminal, `serve` logs through tracing, tests and libraries stay silent.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

/// Where progress goes. Every method has a silent default.
pub trait Progress: Send + Sync {
    /// A slow step starts (`reading live objects and Terraform state`).
    fn step(&self, _step: &str) {}

    /// The step started last is over.
    fn step_done(&self) {}

    /// A fetch of `repo` (credentials redacted) has `received` of `total` objects, `bytes` so far.
    fn fetch(&self, _repo: &str, _received: usize, _total: usize, _bytes: usize) {}

    /// The fetch is over.
    fn fetch_done(&self) {}
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Progress logged through `tracing` (`serve`): each step and each finished large fetch at debug level.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traced;

/// Fetches smaller than this many objects are not worth reporting.
pub const LARGE_FETCH: usize = 1000;

impl Progress for Traced {
    fn step(&self, step: &str) {
        tracing::debug!(step, "progress");
    }

    fn fetch(&self, repo: &str, received: usize, total: usize, bytes: usize) {
        if total >= LARGE_FETCH && received == total {
            tracing::debug!(repo, objects = total, bytes, "fetched");
        }
    }
}

/// The CLI's rendering, exactly as `novacron-reconcile` always drew it: on a terminal, one status
/// line on stderr, rewritten in place (ANSI erase-line) and cleared when the step is over; when
/// stderr is piped, nothing. Library code never constructs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl Progress for Terminal {
    fn step(&self, step: &str) {
        if std::io::stderr().is_terminal() {
            eprint!("\rnovacron-reconcile: {step}...\x1b[K");
        }
    }

    fn step_done(&self) {
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[K");
        }
    }

    fn fetch(&self, repo: &str, received: usize, total: usize, bytes: usize) {
        if total < LARGE_FETCH || !std::io::stderr().is_terminal() {
            return;
        }
        let mut err = std::io::stderr();
        let _ = write!(err, "\rfetching {repo}: {received}/{total} objects, {:.1} MiB", bytes as f64 / 1_048_576.0);
        let _ = err.flush();
    }

    fn fetch_done(&self) {
        if std::io::stderr().is_terminal() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// A shared progress sink, cheap to clone into options; silent by default.
#[derive(Clone)]
pub struct SharedProgress(Arc<dyn Progress>);

impl SharedProgress {
    /// Shares `sink`.
    pub fn new(sink: impl Progress + 'static) -> SharedProgress {
        SharedProgress(Arc::new(sink))
    }
}

impl Default for SharedProgress {
    fn default() -> SharedProgress {
        SharedProgress::new(Silent)
    }
}

impl fmt::Debug for SharedProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedProgress")
    }
}

impl Progress for SharedProgress {
    fn step(&self, step: &str) {
        self.0.step(step);
    }

    fn step_done(&self) {
        self.0.step_done();
    }

    fn fetch(&self, repo: &str, received: usize, total: usize, bytes: usize) {
        self.0.fetch(repo, received, total, bytes);
    }

    fn fetch_done(&self) {
        self.0.fetch_done();
    }
}
