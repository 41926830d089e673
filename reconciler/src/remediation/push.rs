//! The remediation commit on top of the compared revision, pushed (forced) to `novacron/drift/<id>` with git2.

use std::cell::RefCell;
use std::collections::BTreeMap;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, PushOptions, RemoteCallbacks, Signature};

use crate::git::{RepoSpec, cached_clone, offer_credentials, redact};

/// What to commit and where to push it.
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// The repository (its cached clone holds the base commit).
    pub spec: &'a RepoSpec,
    /// The commit the drift was compared against.
    pub base: &'a str,
    /// New texts of changed files, by repository path.
    pub files: &'a BTreeMap<String, String>,
    /// The branch, e.g. `novacron/drift/1a2b3c4d5e6f`.
    pub branch: &'a str,
    /// The commit message.
    pub message: &'a str,
}

/// Why the branch could not be made or pushed. Credentials never appear.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The commit could not be made in the cached clone.
    #[error("repository {repo}: cannot make the remediation commit: {detail}")]
    Commit {
        /// The repository (redacted).
        repo: String,
        /// What git said.
        detail: String,
    },
    /// The remote refused the push or could not be reached.
    #[error("repository {repo}: push of {branch} refused: {detail}")]
    Refused {
        /// The repository (redacted).
        repo: String,
        /// The branch.
        branch: String,
        /// What the remote or git said.
        detail: String,
    },
}

/// The commit, and whether the remote branch had to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The commit SHA.
    pub commit: String,
    /// False when the remote branch already held this commit (as last fetched).
    pub updated: bool,
}

/// Makes the commit (base + changed files) and force-pushes it to `branch` on `origin`.
/// The local branch exists only for the push and is removed afterwards, pushed or not, so
/// nothing half-made stays behind.
pub fn commit_and_push(request: &PushRequest<'_>) -> Result<Pushed, PushError> {
    let shown = redact(&request.spec.repo);
    let commit_err = |detail: String| PushError::Commit { repo: shown.clone(), detail };
    let repo = cached_clone(request.spec).map_err(|e| commit_err(e.to_string()))?;
    let base = repo.find_commit(Oid::from_str(request.base).map_err(|e| commit_err(e.message().into()))?).map_err(|e| commit_err(e.message().into()))?;
    let base_tree = base.tree().map_err(|e| commit_err(e.message().into()))?;
    let mut update = TreeUpdateBuilder::new();
    for (path, text) in request.files {
        let blob = repo.blob(text.as_bytes()).map_err(|e| commit_err(e.message().into()))?;
        update.upsert(path.as_str(), blob, FileMode::Blob);
    }
    let tree_id = update.create_updated(&repo, &base_tree).map_err(|e| commit_err(e.message().into()))?;
    let tree = repo.find_tree(tree_id).map_err(|e| commit_err(e.message().into()))?;
    // Dated like the base commit, so the same drift on the same base is the same commit: a
    // repeated sync pushes nothing new instead of a fresh commit on every poll.
    let when = git2::Time::new(base.time().seconds(), 0);
    let who = Signature::new("novacron-reconcile", "novacron-reconcile@localhost", &when).map_err(|e| commit_err(e.message().into()))?;
    let commit = repo.commit(None, &who, &who, request.message, &tree, &[&base]).map_err(|e| commit_err(e.message().into()))?;
    // The snapshot's fetch brought the remote's branches in: nothing to push when it is there.
    let remote_tip = repo.find_reference(&format!("refs/remotes/origin/{}", request.branch)).ok().and_then(|r| r.target());
    if remote_tip == Some(commit) {
        return Ok(Pushed { commit: commit.to_string(), updated: false });
    }
    let local = format!("refs/heads/{}", request.branch);
    let pushed = (|| {
        repo.reference(&local, commit, true, "novacron-reconcile remediation").map_err(|e| commit_err(e.message().into()))?;
        push(&repo, &shown, &local, request.branch)
    })();
    if let Ok(mut r) = repo.find_reference(&local) {
        let _ = r.delete();
    }
    pushed.map(|()| Pushed { commit: commit.to_string(), updated: true })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn push(repo: &git2::Repository, shown: &str, local: &str, branch: &str) -> Result<(), PushError> {
    let refused = |detail: String| PushError::Refused { repo: shown.to_string(), branch: branch.to_string(), detail };
    let mut remote = repo.find_remote("origin").map_err(|e| refused(e.message().into()))?;
    let rejection: RefCell<Option<String>> = RefCell::new(None);
    {
        let mut callbacks = RemoteCallbacks::new();
        offer_credentials(&mut callbacks);
        callbacks.push_update_reference(|_, status| {
            if let Some(message) = status {
                *rejection.borrow_mut() = Some(message.to_string());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let refspec = format!("+{local}:refs/heads/{branch}");
        remote.push(&[refspec.as_str()], Some(&mut options)).map_err(|e| refused(one_line(e.message())))?;
    }
    match rejection.into_inner() {
        Some(message) => Err(refused(message)),
        None => Ok(()),
    }
}
