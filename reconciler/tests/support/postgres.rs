//! A real PostgreSQL for the integration tests: Debian's server started in a temporary directory on `127.0.0.1:<free port>`, as `nobody` under root.
//!
//! `initdb` refuses to run as root, so when the tests run as root (CI) every server command goes
//! through `runuser -u nobody` (or `setpriv`) and the temporary directory belongs to `nobody`.
//! The only skip is `NOVACRON_POSTGRES=0`, and it is printed; a missing PostgreSQL fails the test.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// What a person without PostgreSQL is told to do.
pub const INSTALL_HINT: &str = "run .ci/run, or install Debian's server: apt-get install postgresql";
/// Where Debian's packages put each major version's server programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// Start attempts, each on a fresh port, when another process took the port in between.
const START_ATTEMPTS: usize = 5;
/// Lines of the server log quoted when the server does not start or stop.
const LOG_LINES: usize = 30;

/// A PostgreSQL server of its own for one test; stopped (`-m immediate`) and deleted on drop.
pub struct PgServer {
    bin: PathBuf,
    runner: Runner,
    port: u16,
    // Last: the directory is removed after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl PgServer {
    /// The entry point of tests: a started server, or None after printing the skip when
    /// `NOVACRON_POSTGRES=0`. Without PostgreSQL installed it panics saying how to install it.
    pub fn start_or_skip(test: &str) -> Option<PgServer> {
        if std::env::var_os("NOVACRON_POSTGRES").is_some_and(|v| v == "0") {
            eprintln!("skipped {test}: NOVACRON_POSTGRES=0 (PostgreSQL tests switched off)");
            return None;
        }
        Some(PgServer::start())
    }

    /// Creates a cluster in a fresh temporary directory and starts it on a free port.
    pub fn start() -> PgServer {
        let bin = server_bin()
            .or_else(install_when_root)
            .unwrap_or_else(|| panic!("PostgreSQL is not installed: no initdb and pg_ctl on PATH nor under {DEBIAN_ROOT}/*/bin/; {INSTALL_HINT}"));
        let runner = Runner::for_current_user();
        let dir = runner.temp_dir();
        let server = PgServer { bin, runner, port: 0, dir };
        let data = server.data_dir();
        let initdb = server.run(
            "initdb",
            [OsStr::new("-D"), data.as_os_str()].into_iter().chain(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"].map(OsStr::new)),
        );
        assert!(initdb.status.success(), "initdb -D {} failed ({}):\n{}", data.display(), initdb.status, output_text(&initdb));
        server.start_on_free_port()
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`: the superuser, trusted without a password.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server (which may not exist yet).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The TCP port the server listens on (the same after [`PgServer::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file (appended to by every start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Creates the empty database `name` (an SQL identifier: letters, digits, `_`) and returns its
    /// URL. Safe to call from inside a tokio runtime.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with(|c: char| c.is_ascii_digit()),
            "create_database({name:?}): not a plain SQL identifier"
        );
        let url = self.url();
        let created = off_runtime(|| -> Result<(), ::postgres::Error> {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls)?;
            client.batch_execute(&format!("CREATE DATABASE {name}"))
        });
        if let Err(e) = created {
            panic!("CREATE DATABASE {name} on {url}: {e}\n{}", self.log_tail());
        }
        self.database_url(name)
    }

    /// Stops the server (`pg_ctl stop -m fast`), waiting until it is gone; panics if it will not stop.
    pub fn stop(&self) {
        let out = self.pg_ctl_stop("fast");
        assert!(out.status.success(), "pg_ctl stop -m fast failed ({}):\n{}\n{}", out.status, output_text(&out), self.log_tail());
    }

    /// Starts the stopped server again on the same port and data directory (the "PostgreSQL
    /// restarts" fault); panics with the log if it does not come up.
    pub fn start_again(&self) {
        if let Err(failure) = self.pg_ctl_start() {
            panic!("PostgreSQL did not start again on port {}: {}", self.port, failure.text);
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `pg_ctl start` on fresh ports until one is not taken by someone else in between.
    fn start_on_free_port(mut self) -> PgServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            self.port = free_port();
            match self.pg_ctl_start() {
                Ok(()) => return self,
                Err(failure) if failure.port_taken => failures.push(format!("port {}: taken", self.port)),
                Err(failure) => panic!("PostgreSQL did not start on port {}: {}", self.port, failure.text),
            }
        }
        panic!("PostgreSQL did not start in {START_ATTEMPTS} attempts ({}):\n{}", failures.join(", "), self.log_tail());
    }

    fn pg_ctl_start(&self) -> Result<(), StartFailure> {
        let log = self.log_path();
        let before = std::fs::read_to_string(&log).map(|l| l.len()).unwrap_or(0);
        // pg_ctl hands -o to /bin/sh, so the socket directory is quoted.
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k '{}' -c fsync=off -c max_connections=200", self.port, self.dir.path().display());
        let data = self.data_dir();
        let args: [&OsStr; 8] =
            ["-D".as_ref(), data.as_os_str(), "-l".as_ref(), log.as_os_str(), "-w".as_ref(), "-o".as_ref(), options.as_ref(), "start".as_ref()];
        let out = self.run("pg_ctl", args);
        if out.status.success() {
            return Ok(());
        }
        let this_start = std::fs::read_to_string(&log).ok().and_then(|l| l.get(before..).map(str::to_string)).unwrap_or_default();
        Err(StartFailure {
            port_taken: this_start.contains("Address already in use"),
            text: format!("pg_ctl start failed ({}):\n{}\n{}", out.status, output_text(&out), self.log_tail()),
        })
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        let data = self.data_dir();
        self.run("pg_ctl", [OsStr::new("-D"), data.as_os_str()].into_iter().chain(["-m", mode, "-w", "stop"].map(OsStr::new)))
    }

    /// Runs the server program `program` (as `nobody` under root) in the temporary directory.
    fn run<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = self.bin.join(program);
        let mut command = self.runner.command(&path);
        command.args(args).current_dir(self.dir.path()).env("LC_ALL", "C").env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
        command.output().unwrap_or_else(|e| panic!("{} cannot be run: {e}", path.display()))
    }

    /// The last lines of the server log, headed by its path.
    fn log_tail(&self) -> String {
        let log = self.log_path();
        match std::fs::read_to_string(&log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
                format!("last lines of {}:\n{tail}", log.display())
            }
            Err(e) => format!("no server log at {}: {e}", log.display()),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Whether or not it is running: a `pg_ctl start` that failed or timed out may have left a server behind.
        let _ = self.pg_ctl_stop("immediate");
    }
}

/// Why `pg_ctl start` failed: the text for the panic, and whether a retry on another port may help.
struct StartFailure {
    port_taken: bool,
    text: String,
}

/// Who runs the server programs: this process's user, or `nobody` when that is root.
enum Runner {
    Current,
    /// `runuser` (or `setpriv`) and the arguments before the program; the uid and gid to own the directory.
    Nobody {
        prefix: Vec<OsString>,
        uid: u32,
        gid: u32,
    },
}

impl Runner {
    fn for_current_user() -> Runner {
        if !rustix::process::geteuid().is_root() {
            return Runner::Current;
        }
        let (uid, gid) = nobody_ids().unwrap_or_else(|| panic!("running as root, PostgreSQL needs the user nobody, which /etc/passwd lacks"));
        let prefix: Vec<OsString> = if let Some(runuser) = find_program("runuser") {
            vec![runuser.into(), "-u".into(), "nobody".into(), "--".into()]
        } else if let Some(setpriv) = find_program("setpriv") {
            vec![setpriv.into(), format!("--reuid={uid}").into(), format!("--regid={gid}").into(), "--clear-groups".into(), "--".into()]
        } else {
            panic!("running as root, PostgreSQL must run as nobody, but neither runuser nor setpriv is installed: apt-get install util-linux")
        };
        Runner::Nobody { prefix, uid, gid }
    }

    /// A fresh directory the server's user owns, under a parent that user can traverse.
    fn temp_dir(&self) -> tempfile::TempDir {
        let mut builder = tempfile::Builder::new();
        builder.prefix("novacron-pg-");
        match self {
            Runner::Current => builder.tempdir().expect("a temporary directory for PostgreSQL"),
            Runner::Nobody { uid, gid, .. } => {
                // /tmp, not $TMPDIR: nobody must be able to reach the directory.
                let dir = builder.tempdir_in("/tmp").expect("a temporary directory for PostgreSQL under /tmp");
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod 0755 the PostgreSQL directory");
                std::os::unix::fs::chown(dir.path(), Some(*uid), Some(*gid)).expect("chown the PostgreSQL directory to nobody");
                dir
            }
        }
    }

    fn command(&self, program: &Path) -> Command {
        match self {
            Runner::Current => Command::new(program),
            Runner::Nobody { prefix, .. } => {
                let mut command = Command::new(&prefix[0]);
                command.args(&prefix[1..]).arg(program);
                command
            }
        }
    }
}

/// The directory holding both `initdb` and `pg_ctl`: the first on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian does not put them on PATH).
fn server_bin() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).find(|dir| has_both(dir))) {
        return Some(dir);
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
        .ok()?
        .map_while(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.split('.').map(|part| part.parse().ok()).collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `name` on PATH or in the sbin directories (which a non-login root's PATH may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from)).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The uid and gid of `nobody` from /etc/passwd.
fn nobody_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "nobody" {
            return None;
        }
        let (uid, gid) = (fields.nth(1)?, fields.next()?);
        Some((uid.parse().ok()?, gid.parse().ok()?))
    })
}

/// A port nothing listens on right now (the listener is closed again before PostgreSQL binds it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("the listener's address").port()
}

/// Runs `f` on a thread of its own: the postgres crate's sync client starts a runtime of its
/// own, which panics on a thread that already runs tokio (any `#[tokio::test]`).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Connects to `url` with the sync client, retrying for up to `patience` (a server just
/// restarted may still refuse). Call it off a tokio runtime thread (see [`off_runtime`]).
pub fn connect(url: &str, patience: Duration) -> Result<::postgres::Client, ::postgres::Error> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match ::postgres::Client::connect(url, ::postgres::NoTls) {
            Ok(client) => return Ok(client),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// As root, installs Debian's `postgresql` with apt-get under a lock (other test processes may be
/// doing the same), `apt-get update` only when the first attempt fails, and finds it again; not
/// root: nothing (the caller says how to install it).
fn install_when_root() -> Option<PathBuf> {
    if !rustix::process::getuid().is_root() {
        return None;
    }
    let script = "ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends postgresql || { apt-get -o DPkg::Lock::Timeout=300 update && apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends postgresql; }";
    eprintln!("PostgreSQL is missing: installing Debian's postgresql with apt-get (once per machine)");
    let out = Command::new("flock").args(["/tmp/novacron-apt-install.lock", "sh", "-c", script]).output().ok()?;
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let last: Vec<&str> = text.lines().collect();
        eprintln!("apt-get install postgresql failed ({}):\n{}", out.status, last[last.len().saturating_sub(20)..].join("\n"));
        return None;
    }
    server_bin()
}
