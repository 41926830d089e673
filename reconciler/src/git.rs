//! The desired-state repository: clone or fetch into a cache (git2), resolve `--ref`, snapshot the configuration and the files it reads.

use std::path::{Path, PathBuf};

use git2::{
    AutotagOption, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository, TreeWalkMode, TreeWalkResult,
};

use crate::progress::{Progress, SharedProgress};
use crate::source::MemoryTree;

/// Files read from a revision whatever their size: configuration, variable files and the ignore file.
const WANTED_SUFFIXES: [&str; 4] = [".tf", ".tf.json", ".tfvars", ".tfvars.json"];
/// Other files (what `file()` and `templatefile()` read: cloud-init, templates, policies) are
/// read up to this size; larger ones and binary ones are left out.
const MAX_OTHER_FILE: usize = 1 << 20;
/// The ignore file at the repository root.
pub const IGNORE_FILE: &str = ".novacronignore";

/// Which repository and revision to read, and where to keep the clone.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    /// A local path, `file://`, `https://` or `ssh://` URL (or `user@host:path`).
    pub repo: String,
    /// A branch, tag or commit SHA; the remote's default branch when absent.
    pub reference: Option<String>,
    /// Directory holding one bare clone per repository.
    pub cache_dir: PathBuf,
    /// Where the progress of a large fetch goes.
    pub progress: SharedProgress,
}

/// The files of one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The commit SHA.
    pub revision: String,
    /// `*.tf`, `*.tf.json`, `*.tfvars` and `.novacronignore` files of the commit, and its other
    /// UTF-8 files up to 1 MiB (for `file()` and `templatefile()`).
    pub files: MemoryTree,
    /// Whether the cache was created by this run (`false`: an existing clone was fetched into).
    pub cloned: bool,
}

/// Why the repository could not be read. Credentials never appear in these messages.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// There is no repository at that location.
    #[error("repository {repo}: not found ({detail}); check --repo")]
    NotFound {
        /// The repository as given.
        repo: String,
        /// What git said.
        detail: String,
    },
    /// The remote refused the credentials.
    #[error("repository {repo}: authentication failed ({detail}); for https set NOVACRON_GIT_USERNAME and NOVACRON_GIT_TOKEN, for ssh add a key to ssh-agent")]
    Auth {
        /// The repository as given.
        repo: String,
        /// What git said.
        detail: String,
    },
    /// `--ref` names nothing in the repository.
    #[error("repository {repo}: ref {reference:?} not found; give a branch, tag or commit SHA that exists")]
    RefNotFound {
        /// The repository as given.
        repo: String,
        /// The ref as given.
        reference: String,
    },
    /// The fetch failed for another reason (network, protocol).
    #[error("repository {repo}: fetch failed: {detail}")]
    Fetch {
        /// The repository as given.
        repo: String,
        /// What git said.
        detail: String,
    },
    /// The cache directory cannot be used.
    #[error("cache {}: {detail}; pass another --cache-dir", path.display())]
    Cache {
        /// The clone's directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl GitError {
    /// True for failures that may pass on a retry (network trouble), as gitoxide's `is_spurious`.
    pub fn is_spurious(&self) -> bool {
        matches!(self, GitError::Fetch { .. })
    }
}

/// `repo` as it may be shown: the user part of a URL (`https://user:token@host/...`), where
/// tokens live, is replaced by `***`.
pub fn redact(repo: &str) -> String {
    let Some((scheme, rest)) = repo.split_once("://") else { return repo.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => repo.to_string(),
    }
}

/// The URL git2 is given for `repo`: local paths become absolute.
fn remote_url(repo: &str) -> Result<String, GitError> {
    let is_url = repo.contains("://") || (repo.contains('@') && repo.contains(':'));
    if is_url {
        return Ok(repo.to_string());
    }
    let path = Path::new(repo);
    let absolute = path.canonicalize().map_err(|e| GitError::NotFound { repo: repo.to_string(), detail: e.to_string() })?;
    Ok(absolute.to_string_lossy().into_owned())
}

/// Clones `spec.repo` into the cache (or fetches what changed into an existing clone),
/// resolves the ref and reads the commit's configuration files.
pub fn fetch_snapshot(spec: &RepoSpec) -> Result<Snapshot, GitError> {
    let shown = redact(&spec.repo);
    let url = remote_url(&spec.repo).map_err(|e| match e {
        GitError::NotFound { detail, .. } => GitError::NotFound { repo: shown.clone(), detail },
        other => other,
    })?;
    let dir = clone_dir(spec, &url);
    let cache_err = |e: &dyn std::fmt::Display| GitError::Cache { path: dir.clone(), detail: e.to_string() };
    std::fs::create_dir_all(&spec.cache_dir).map_err(|e| cache_err(&e))?;
    let (repo, cloned) = match Repository::open_bare(&dir) {
        Ok(r) => (r, false),
        Err(_) => (Repository::init_bare(&dir).map_err(|e| cache_err(&e.message()))?, true),
    };
    if repo.find_remote("origin").is_err() {
        repo.remote("origin", &url).map_err(|e| cache_err(&e.message()))?;
    } else {
        repo.remote_set_url("origin", &url).map_err(|e| cache_err(&e.message()))?;
    }
    // A pull request's head (`refs/pull/<n>/head`, where GitHub keeps it, forks included) is not
    // under refs/heads: it is fetched by name into a ref of its own.
    let pull = spec
        .reference
        .as_deref()
        .filter(|r| is_pull_ref(r))
        .map(|r| (format!("+{r}:{PULL_REFS}{}", &r["refs/".len()..]), format!("{PULL_REFS}{}", &r["refs/".len()..])));
    let default_branch = fetch(&repo, &shown, pull.as_ref().map(|(spec, _)| spec.as_str()), &spec.progress)?;
    if let Some(branch) = default_branch.as_deref().and_then(|b| b.strip_prefix("refs/heads/")) {
        // Remembered for remediation pull requests, which target the default branch.
        let _ = repo.reference_symbolic(DEFAULT_BRANCH_REF, &format!("refs/remotes/origin/{branch}"), true, "remote default branch");
    }
    let commit = match &pull {
        Some((_, local)) => repo
            .find_reference(local)
            .and_then(|r| r.peel_to_commit())
            .map(|c| c.id())
            .map_err(|_| GitError::RefNotFound { repo: shown.clone(), reference: spec.reference.clone().unwrap_or_default() })?,
        None => resolve(&repo, &shown, spec.reference.as_deref(), default_branch.as_deref())?,
    };
    let files = read_files(&repo, commit).map_err(|e| cache_err(&e.message()))?;
    Ok(Snapshot { revision: commit.to_string(), files, cloned })
}

/// In a cached clone: a symbolic ref to the remote's default branch, as last fetched.
pub const DEFAULT_BRANCH_REF: &str = "refs/remotes/origin/HEAD";

/// The remote's default branch (`main`), as the last fetch into the cached clone saw it.
pub fn default_branch(spec: &RepoSpec) -> Option<String> {
    let repo = cached_clone(spec).ok()?;
    let target = repo.find_reference(DEFAULT_BRANCH_REF).ok()?.symbolic_target()?.to_string();
    target.strip_prefix("refs/remotes/origin/").map(str::to_string)
}

/// Whether `name` is a branch of the remote, as the last fetch into the cached clone saw it
/// (a tag or a commit SHA is not).
pub fn is_remote_branch(spec: &RepoSpec, name: &str) -> bool {
    cached_clone(spec).is_ok_and(|repo| repo.find_reference(&format!("refs/remotes/origin/{name}")).is_ok())
}

/// The cached bare clone of `spec.repo`, once [`fetch_snapshot`] made it.
pub fn cached_clone(spec: &RepoSpec) -> Result<Repository, GitError> {
    let url = remote_url(&spec.repo)?;
    let dir = clone_dir(spec, &url);
    Repository::open_bare(&dir).map_err(|e| GitError::Cache { path: dir.clone(), detail: e.message().to_string() })
}

fn clone_dir(spec: &RepoSpec, url: &str) -> PathBuf {
    spec.cache_dir.join(&novacron_schemas::sha256_hex(url.as_bytes())[..24])
}

/// Where fetched pull-request heads are kept in a cached clone.
const PULL_REFS: &str = "refs/novacron/";

/// `refs/pull/<number>/head` (or `/merge`).
fn is_pull_ref(r: &str) -> bool {
    let mut parts = r.split('/');
    matches!((parts.next(), parts.next(), parts.next(), parts.next(), parts.next()), (Some("refs"), Some("pull"), Some(n), Some("head" | "merge"), None) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Fetches branches and tags (and `extra`, a refspec); returns the remote's default branch (`refs/heads/main`).
fn fetch(repo: &Repository, shown: &str, extra: Option<&str>, progress: &SharedProgress) -> Result<Option<String>, GitError> {
    let mut remote = repo.find_remote("origin").map_err(|e| GitError::Fetch { repo: shown.into(), detail: e.message().into() })?;
    let mut callbacks = RemoteCallbacks::new();
    offer_credentials(&mut callbacks);
    let sink = progress.clone();
    let repo_shown = shown.to_string();
    callbacks.transfer_progress(move |p| {
        sink.fetch(&repo_shown, p.received_objects(), p.total_objects(), p.received_bytes());
        true
    });
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks);
    options.download_tags(AutotagOption::All);
    options.prune(git2::FetchPrune::On);
    let mut refspecs = vec!["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"];
    refspecs.extend(extra);
    remote.fetch(&refspecs, Some(&mut options), None).map_err(|e| classify(shown, &e))?;
    progress.fetch_done();
    let default = remote.default_branch().ok().and_then(|b| b.as_str().map(str::to_string));
    Ok(default)
}

/// Credentials for a remote: URL credentials, `NOVACRON_GIT_TOKEN`, a credential helper, or ssh-agent.
/// Offers [`credentials`] to a remote operation, giving up after three refusals (libgit2
/// would otherwise ask again forever when a server keeps refusing).
pub(crate) fn offer_credentials(callbacks: &mut RemoteCallbacks<'_>) {
    let mut attempts = 0;
    callbacks.credentials(move |url, username, allowed| {
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::new(ErrorCode::Auth, ErrorClass::Net, "the credentials offered were refused"));
        }
        credentials(url, username, allowed)
    });
}

pub(crate) fn credentials(url: &str, username: Option<&str>, allowed: CredentialType) -> Result<Cred, git2::Error> {
    if allowed.contains(CredentialType::SSH_KEY) {
        return Cred::ssh_key_from_agent(username.unwrap_or("git"));
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        if let Some((user, password)) = url_credentials(url) {
            return Cred::userpass_plaintext(&user, &password);
        }
        if let Ok(token) = std::env::var("NOVACRON_GIT_TOKEN") {
            let user = std::env::var("NOVACRON_GIT_USERNAME").unwrap_or_else(|_| username.unwrap_or("git").to_string());
            return Cred::userpass_plaintext(&user, &token);
        }
        let config = git2::Config::open_default()?;
        return Cred::credential_helper(&config, url, username);
    }
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(username.unwrap_or("git"));
    }
    Cred::default()
}

/// `user:password` written into an http(s) URL, percent-decoding left to the server.
fn url_credentials(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn classify(shown: &str, e: &git2::Error) -> GitError {
    let detail = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = detail.to_lowercase();
    if e.code() == ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("401")
        || lower.contains("credential")
        || lower.contains("username/password")
    {
        GitError::Auth { repo: shown.into(), detail }
    } else if e.code() == ErrorCode::NotFound
        || lower.contains("not found")
        || lower.contains("could not find repository")
        || lower.contains("not a git repository")
        || lower.contains("does not exist")
        || lower.contains("failed to resolve path")
    {
        GitError::NotFound { repo: shown.into(), detail }
    } else {
        GitError::Fetch { repo: shown.into(), detail }
    }
}

/// The commit `reference` names: a branch, a tag, or a (possibly abbreviated) commit SHA.
fn resolve(repo: &Repository, shown: &str, reference: Option<&str>, default_branch: Option<&str>) -> Result<Oid, GitError> {
    let not_found = || GitError::RefNotFound { repo: shown.into(), reference: reference.unwrap_or("HEAD").into() };
    let candidates: Vec<String> = match reference {
        None => {
            let branch = default_branch.and_then(|b| b.strip_prefix("refs/heads/")).unwrap_or("main");
            vec![format!("refs/remotes/origin/{branch}"), "refs/remotes/origin/main".into(), "refs/remotes/origin/master".into()]
        }
        Some(r) => {
            let short = r.strip_prefix("refs/heads/").or_else(|| r.strip_prefix("origin/")).unwrap_or(r);
            let tag = r.strip_prefix("refs/tags/").unwrap_or(r);
            vec![format!("refs/remotes/origin/{short}"), format!("refs/tags/{tag}")]
        }
    };
    for name in candidates {
        if let Ok(reference) = repo.find_reference(&name) {
            return reference.peel_to_commit().map(|c| c.id()).map_err(|_| not_found());
        }
    }
    match reference {
        Some(r) if r.len() >= 4 && r.chars().all(|c| c.is_ascii_hexdigit()) => {
            repo.revparse_single(r).and_then(|o| o.peel_to_commit()).map(|c| c.id()).map_err(|_| not_found())
        }
        _ => Err(not_found()),
    }
}

fn read_files(repo: &Repository, commit: Oid) -> Result<MemoryTree, git2::Error> {
    let tree = repo.find_commit(commit)?.tree()?;
    let mut wanted: Vec<(String, Oid, bool)> = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if let (Some(ObjectType::Blob), Some(name)) = (entry.kind(), entry.name()) {
            let config = WANTED_SUFFIXES.iter().any(|s| name.ends_with(s)) || (dir.is_empty() && name == IGNORE_FILE);
            wanted.push((format!("{dir}{name}"), entry.id(), config));
        }
        TreeWalkResult::Ok
    })?;
    let odb = repo.odb()?;
    let mut files = Vec::with_capacity(wanted.len());
    for (path, id, config) in wanted {
        // The header gives the size without inflating a large blob.
        if !config && odb.read_header(id).map_or(true, |(size, _)| size > MAX_OTHER_FILE) {
            continue;
        }
        let blob = repo.find_blob(id)?;
        if let Ok(text) = std::str::from_utf8(blob.content()) {
            files.push((path, text.to_string()));
        }
    }
    Ok(MemoryTree::new(files.iter().map(|(p, t)| (p.as_str(), t.as_str()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_refs_are_recognised_exactly() {
        assert!(is_pull_ref("refs/pull/12/head") && is_pull_ref("refs/pull/1/merge"));
        for other in ["refs/pull//head", "refs/pull/x/head", "refs/pull/1/head/x", "refs/heads/pull", "pull/1/head", "refs/pull/1"] {
            assert!(!is_pull_ref(other), "{other}");
        }
    }

    #[test]
    fn tokens_in_urls_are_never_shown() {
        assert_eq!(redact("https://bot:ghp_secret@example.com/org/repo.git"), "https://***@example.com/org/repo.git");
        assert_eq!(redact("https://ghp_secret@example.com/r.git"), "https://***@example.com/r.git");
        assert_eq!(redact("ssh://git@example.com/r.git"), "ssh://***@example.com/r.git");
        assert_eq!(redact("/srv/repos/infra"), "/srv/repos/infra");
        assert_eq!(redact("https://example.com/a@b"), "https://example.com/a@b");
    }
}
