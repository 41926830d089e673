//! The lock file beside the state database that keeps a second `serve` off the same state.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StateError;

/// An exclusive lock on `<state>.lock`, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock beside `state`, writing this process's id into it; fails at once when held.
    pub fn acquire(state: &Path) -> Result<StateLock, StateError> {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let lock_err = |source| StateError::LockIo { lock: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(lock_err)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim().parse::<u32>().map_or_else(|_| "pid unknown".to_string(), |pid| format!("pid {pid}"));
                return Err(StateError::Locked { state: state.display().to_string(), holder, lock: path.display().to_string() });
            }
            Err(TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(lock_err)?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.db");
        let first = StateLock::acquire(&state).expect("first lock");
        let e = StateLock::acquire(&state).expect_err("second lock").to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("s.db.lock"), "{e}");
        drop(first);
        StateLock::acquire(&state).expect("free again");
    }
}
