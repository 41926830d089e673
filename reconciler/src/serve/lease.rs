//! Which repositories this replica reconciles: one lease per repository in the state database,
//! renewed by a heartbeat, spread evenly over the replicas alive, taken over when a replica stops
//! renewing; and the wake-ups that bring a trigger from any replica to the holder.
//!
//! A lease is acted on only while it is valid *locally*: until the moment the last successful
//! renewal was sent plus the TTL minus the renewal margin. A replica cut off from the database
//! therefore stops writing before any other replica can take its repositories over, and every
//! write a reconcile makes carries the lease's fencing token ([`crate::state::Fence`]), refused
//! by the database once the lease moved on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::Service;
use crate::state::{self, Fence, LeaseClock, StateDb};

/// The `[leases]` settings.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
    /// How long before the TTL runs out a replica stops acting on a lease it could not renew.
    pub margin: Duration,
}

impl LeaseSettings {
    /// How often leases are renewed (and spread): a third of the TTL.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

struct Held {
    token: u64,
    clock: LeaseClock,
}

/// How the last renewal went, for `/readyz` and `/api/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaseHealth {
    /// Milliseconds since the last successful renewal (`None` before the first).
    pub renewed_ms_ago: Option<u64>,
    /// The last renewal's error, while renewals fail.
    pub error: Option<String>,
    /// Leases held.
    pub held: usize,
    /// Replicas alive at the last renewal.
    pub replicas_alive: usize,
}

/// This replica's leases.
pub struct Leases {
    /// This replica's id.
    pub replica: String,
    /// Where this replica's HTTP server listens (announced with the heartbeat).
    pub address: String,
    /// TTL and margin.
    pub settings: LeaseSettings,
    /// The keeper's own handle on the state (on PostgreSQL its own connections: a renewal never
    /// queues behind the reconciles' queries).
    pub db: StateDb,
    held: Mutex<HashMap<String, Held>>,
    /// Who held each repository at the last renewal round (what other pages show).
    holders: Mutex<HashMap<String, (String, u64)>>,
    acting: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    last_renewal: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    alive: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").field("replica", &self.replica).field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Leases {
    /// The leases of replica `replica` over repositories `names` (none held yet).
    pub fn new(replica: String, address: String, settings: LeaseSettings, names: &[String], db: StateDb) -> Leases {
        Leases {
            replica,
            address,
            settings,
            db,
            held: Mutex::default(),
            holders: Mutex::default(),
            acting: names.iter().map(|n| (n.clone(), Arc::default())).collect(),
            last_renewal: Mutex::default(),
            last_error: Mutex::default(),
            alive: std::sync::atomic::AtomicUsize::new(1),
        }
    }

    /// The fence of `repo`'s lease while this replica holds it and it is valid locally.
    pub fn fence(&self, repo: &str) -> Option<Fence> {
        let held = lock(&self.held);
        let h = held.get(repo).filter(|h| h.clock.valid())?;
        Some(Fence { repo: repo.to_string(), owner: self.replica.clone(), token: h.token, clock: Some(h.clock.clone()) })
    }

    /// True while this replica holds `repo`'s lease (valid locally).
    pub fn holds(&self, repo: &str) -> bool {
        lock(&self.held).get(repo).is_some_and(|h| h.clock.valid())
    }

    /// The lock a reconcile of `repo` holds while it runs (a lease is given up only between runs).
    pub fn acting(&self, repo: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.acting.get(repo).cloned().unwrap_or_default()
    }

    /// The replica that held `repo` at the last renewal round (this one's id when it holds it).
    pub fn holder(&self, repo: &str) -> Option<String> {
        if self.holds(repo) {
            return Some(self.replica.clone());
        }
        lock(&self.holders).get(repo).map(|(owner, _)| owner.clone())
    }

    /// The fencing token of `repo`'s lease (how many times it changed hands).
    pub fn token(&self, repo: &str) -> Option<u64> {
        if let Some(h) = lock(&self.held).get(repo).filter(|h| h.clock.valid()) {
            return Some(h.token);
        }
        lock(&self.holders).get(repo).map(|(_, token)| *token)
    }

    /// True while this replica has `repo`'s lease, valid or waiting for a renewal.
    pub fn has(&self, repo: &str) -> bool {
        lock(&self.held).contains_key(repo)
    }

    /// The repositories held now.
    pub fn held(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.held).iter().filter(|(_, h)| h.clock.valid()).map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    /// How the renewals go.
    pub fn health(&self) -> LeaseHealth {
        LeaseHealth {
            renewed_ms_ago: lock(&self.last_renewal).map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
            error: lock(&self.last_error).clone(),
            held: self.held().len(),
            replicas_alive: self.alive.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// True when the last renewal succeeded recently enough that held leases are valid.
    pub fn healthy(&self) -> bool {
        lock(&self.last_error).is_none() && lock(&self.last_renewal).is_some_and(|at| at.elapsed() < self.settings.ttl - self.settings.margin)
    }

    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.settings.ttl.saturating_sub(self.settings.margin)
    }
}

/// Renews this replica's heartbeat and leases, then spreads the repositories: takes free ones
/// up to its fair share (the repositories over the replicas alive, rounded up) and gives up the
/// idle ones above it. A repository it takes is reconciled at once. Runs every
/// [`LeaseSettings::renew_every`] until `stop`; on stop, releases everything so another replica
/// takes over at once.
///
/// It runs on a thread of its own (every step is a blocking database call anyway): reconciles
/// busy on the async workers must never delay a renewal past the margin.
///
/// `stopping` turns true when the service stops taking work (no lease is taken from then on);
/// `stop` when every reconcile has finished (the leases are released then, not before).
pub fn spawn_keeper(service: Arc<Service>, stopping: watch::Receiver<bool>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || keeper(&service, &stopping, &stop))
}

fn keeper(service: &Arc<Service>, stopping: &watch::Receiver<bool>, stop: &watch::Receiver<bool>) {
    let mut first = true;
    'rounds: loop {
        // On PostgreSQL the first round only announces this replica (see `start`).
        let announce_only = first && service.db.is_postgres();
        let take = !announce_only && !*stopping.borrow();
        first = false;
        // The next round starts one interval after this one started, however long it took.
        let next = Instant::now() + service.leases.settings.renew_every();
        renew_and_balance(service, take, true);
        if *stopping.borrow() {
            // Stopping: the repositories not reconciling right now go to the other replicas at once.
            give_up(service, usize::MAX);
        }
        let was_stopping = *stopping.borrow();
        while Instant::now() < next {
            if *stop.borrow() {
                break 'rounds;
            }
            if *stopping.borrow() && !was_stopping {
                break;
            }
            std::thread::sleep(Duration::from_millis(50).min(next.saturating_duration_since(Instant::now())));
        }
        if *stop.borrow() {
            break;
        }
    }
    let leases = &service.leases;
    lock(&leases.held).clear();
    match state::retire_replica(&leases.db, &leases.replica) {
        Ok(n) => tracing::info!(replica = %leases.replica, released = n, "leases released for the other replicas"),
        Err(e) => tracing::warn!(replica = %leases.replica, error = %e, "cannot release the leases; other replicas take them over after the TTL"),
    }
}

/// One round of renewal and spreading (without taking leases when `take_leases` is false; a
/// lease taken triggers its repository when `trigger`).
pub fn renew_and_balance(service: &Arc<Service>, take_leases: bool, trigger: bool) {
    let leases = &service.leases;
    let db = &leases.db;
    let sent = Instant::now();
    let acting_on: Vec<(String, u64)> = lock(&leases.held).iter().map(|(r, h)| (r.clone(), h.token)).collect();
    let renewed = match state::heartbeat(db, &leases.replica, &leases.address, leases.settings.ttl_ms(), &acting_on) {
        Ok(renewed) => renewed,
        Err(e) => {
            let first = lock(&leases.last_error).replace(e.to_string()).is_none();
            if first {
                tracing::error!(replica = %leases.replica, error = %e, "cannot renew the leases; acting on them stops when they can no longer be trusted");
            }
            return;
        }
    };
    if lock(&leases.last_error).take().is_some() {
        tracing::info!(replica = %leases.replica, "lease renewals work again");
    }
    *lock(&leases.last_renewal) = Some(sent);
    let until = leases.valid_until(sent);
    {
        let mut held = lock(&leases.held);
        let renewed: HashMap<&str, u64> = renewed.iter().map(|(r, t)| (r.as_str(), *t)).collect();
        held.retain(|repo, h| {
            let kept = renewed.get(repo.as_str()) == Some(&h.token);
            if kept {
                h.clock.extend(until);
            } else {
                h.clock.revoke();
                tracing::warn!(repo = %repo, token = h.token, "lease lost to another replica");
            }
            kept
        });
    }
    let alive = match state::replicas(db) {
        Ok(all) => all.iter().filter(|r| r.alive).count().max(1),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count the replicas");
            return;
        }
    };
    leases.alive.store(alive, std::sync::atomic::Ordering::Relaxed);
    match state::leases(db) {
        Ok(rows) => *lock(&leases.holders) = rows.into_iter().filter(|l| l.live).map(|l| (l.repo, (l.owner, l.token))).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the leases");
            return;
        }
    }
    let total = service.repos.len();
    let fair = total.div_ceil(alive);
    let mine = leases.held().len();
    if mine > fair && alive > 1 {
        give_up(service, mine - fair);
    } else if mine < fair && take_leases {
        take(service, fair - mine, trigger);
    }
}

/// Takes up to `want` free leases (never taken, released or expired), in an order that differs
/// per replica so that replicas starting together do not all race for the same ones.
fn take(service: &Arc<Service>, want: usize, trigger: bool) {
    let leases = &service.leases;
    let live: HashMap<String, bool> = lock(&leases.holders).keys().map(|r| (r.clone(), true)).collect();
    let offset = leases.replica.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
    let n = service.repos.len();
    let mut taken = 0;
    // Time-boxed: a round that takes hundreds of leases must not run into the validity of the
    // ones it took first (they are renewed at the next round); the rest wait for it.
    let started = Instant::now();
    let budget = leases.settings.renew_every() / 2;
    for i in 0..n {
        if taken == want || started.elapsed() > budget {
            break;
        }
        let repo = &service.repos[(offset + i) % n];
        let name = repo.name();
        if live.get(name).copied().unwrap_or(false) || leases.holds(name) {
            continue;
        }
        // Valid from before the request: the database's expiry is at least this late.
        let sent = Instant::now();
        match state::try_acquire(&leases.db, name, &leases.replica, leases.settings.ttl_ms()) {
            Ok(Some(token)) => {
                let clock = LeaseClock::until(leases.valid_until(sent));
                lock(&leases.held).insert(name.to_string(), Held { token, clock });
                taken += 1;
                tracing::info!(repo = %name, token, replica = %leases.replica, "lease taken");
                if trigger {
                    repo.trigger("takeover");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(repo = %name, error = %e, "cannot take a lease");
                return;
            }
        }
    }
}

/// Gives up `count` leases whose repositories are not reconciling right now.
fn give_up(service: &Arc<Service>, count: usize) {
    let leases = &service.leases;
    let mut given = 0;
    for name in leases.held() {
        if given == count {
            break;
        }
        let acting = leases.acting(&name);
        let Ok(_idle) = acting.try_lock() else { continue };
        let Some(h) = lock(&leases.held).remove(&name) else { continue };
        h.clock.revoke();
        match state::release_lease(&leases.db, &name, &leases.replica, h.token) {
            Ok(_) => {
                given += 1;
                tracing::info!(repo = %name, replica = %leases.replica, "lease given up to spread the repositories over the replicas");
            }
            Err(e) => tracing::warn!(repo = %name, error = %e, "cannot release a lease; it expires after the TTL"),
        }
    }
}

/// Asks for a reconcile of `repo` wherever it is held: at once when this replica holds it,
/// otherwise through a wake-up in the state database (which, on PostgreSQL, also notifies the
/// holder). Returns where it went.
pub fn wake(service: &Service, repo: &super::repo::RepoHandle, reason: &'static str) -> &'static str {
    if service.leases.holds(repo.name()) || !service.db.is_postgres() {
        repo.trigger(reason);
        return "here";
    }
    match state::wake(&service.db, repo.name(), reason) {
        Ok(_) => "holder",
        Err(e) => {
            // The database is away: nobody could act on it anyway; trigger locally so that the
            // trigger is not lost should this replica take the lease.
            tracing::warn!(repo = %repo.name(), error = %e, "cannot record the wake-up for the lease holder");
            repo.trigger(reason);
            "here"
        }
    }
}

/// The wake-up reason that carries a pull-request review for the holder.
const REVIEW_REASON: &str = "review ";

/// Reviews a pull request where the repository is held: at once here, otherwise through a
/// wake-up that carries the job (so two replicas never review one repository's pull requests,
/// and its one comment per pull request stays one).
pub fn review(service: &Arc<Service>, repo: &Arc<super::repo::RepoHandle>, job: super::review::ReviewJob) {
    if service.leases.holds(repo.name()) || !service.db.is_postgres() {
        super::review::enqueue(service, repo, job);
        return;
    }
    let reason = format!("{REVIEW_REASON}{}", serde_json::to_string(&job).unwrap_or_default());
    if let Err(e) = state::wake(&service.db, repo.name(), &reason) {
        tracing::warn!(repo = %repo.name(), error = %e, "cannot hand the review to the lease holder; reviewing here");
        super::review::enqueue(service, repo, job);
    }
}

/// How far behind the newest wake-up seen each read looks again (for ones committed late).
const WAKE_LOOKBACK: u64 = 256;

/// How often wake-ups are read even when no notification arrived (a missed `NOTIFY` while the
/// listening connection was being re-made costs at most this).
pub const WAKE_POLL: Duration = Duration::from_secs(2);

/// Triggers the repositories this replica holds for which any replica recorded a wake-up:
/// woken by PostgreSQL's `NOTIFY` (a thread of its own holds the listening connection), and
/// every [`WAKE_POLL`] in any case. Nothing to do on SQLite (one replica).
pub async fn wake_follower(service: Arc<Service>, mut stop: watch::Receiver<bool>) {
    if !service.db.is_postgres() {
        return;
    }
    let notified = Arc::new(tokio::sync::Notify::new());
    let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (db, notified, quit) = (service.db.clone(), notified.clone(), quit.clone());
        std::thread::Builder::new().name("wake-listener".into()).spawn(move || listen(&db, &notified, &quit)).ok()
    };
    // Sequence numbers are handed out when a wake-up is written but become visible when it
    // commits, not necessarily in order: every read looks back a window behind the newest seen
    // and skips what it handled already.
    let mut seq = state::last_wakeup(&service.db).unwrap_or(0);
    // What was there before this replica started is not for it.
    let floor = seq;
    let mut seen: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    loop {
        tokio::select! {
            () = notified.notified() => {}
            () = tokio::time::sleep(WAKE_POLL) => {}
            _ = stop.changed() => break,
        }
        match state::wakeups_after(&service.db, seq.saturating_sub(WAKE_LOOKBACK)) {
            Ok(rows) => {
                let mut woken: Vec<(String, String)> = Vec::new();
                for (s, repo, reason) in rows {
                    if s > floor && !seen.contains(&s) {
                        seq = seq.max(s);
                        seen.push_back(s);
                        woken.push((repo, reason));
                    }
                }
                while seen.len() > 4 * usize::try_from(WAKE_LOOKBACK).unwrap_or(1024) {
                    seen.pop_front();
                }
                for (name, reason) in woken {
                    let Some(repo) = service.repo(&name).filter(|_| service.leases.holds(&name)) else { continue };
                    match reason.strip_prefix(REVIEW_REASON).map(serde_json::from_str::<super::review::ReviewJob>) {
                        Some(Ok(job)) => super::review::enqueue(&service, repo, job),
                        Some(Err(e)) => tracing::warn!(repo = %name, error = %e, "a review handed over by another replica does not parse"),
                        None => {
                            tracing::debug!(repo = %name, reason = %reason, "woken by another replica");
                            repo.trigger("wakeup");
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read wake-ups"),
        }
    }
    quit.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
}

/// The listening thread: (re)connects with backoff and pokes `notified` at every notification.
fn listen(db: &StateDb, notified: &tokio::sync::Notify, quit: &std::sync::atomic::AtomicBool) {
    let mut backoff = Duration::from_millis(250);
    while !quit.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(Ok(mut listener)) = state::WakeListener::connect(db) else {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        };
        backoff = Duration::from_millis(250);
        // Catch up on what was recorded while not listening.
        notified.notify_one();
        while !quit.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.wait(Duration::from_millis(500)) {
                Ok(true) => notified.notify_one(),
                Ok(false) => {}
                Err(_) => break,
            }
        }
    }
}

/// The default replica id: the host name, the process id and a random suffix (a container
/// restarted in the same pod has the same host name and pid, and must not be taken for the
/// process it replaces).
pub fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "replica".to_string());
    let mut suffix = [0u8; 3];
    let _ = getrandom::fill(&mut suffix);
    format!("{host}-{}-{}", std::process::id(), suffix.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
