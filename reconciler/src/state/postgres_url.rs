//! A PostgreSQL location: parsing a `postgres://` URL, finding its password the way libpq does
//! (the URL, `PGPASSWORD`, then the passfile `PGPASSFILE` or `~/.pgpass`), and printing it
//! without the password.

use std::path::{Path, PathBuf};

use postgres::config::Host;

/// True for a `postgres://` or `postgresql://` URL.
pub fn is_postgres(s: &str) -> bool {
    let lower = s.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The connection settings of `url`, its password completed from the environment or the
/// passfile when the URL has none.
pub fn parse(url: &str) -> Result<postgres::Config, String> {
    let mut config: postgres::Config = url.parse().map_err(|e| {
        // The driver's message never quotes the URL, so the password cannot leak through it.
        format!("--state: not a usable PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE, with the password in PGPASSWORD or a passfile")
    })?;
    if config.get_user().is_none() {
        // libpq's default: PGUSER, else the login name.
        let user = std::env::var("PGUSER").ok().or_else(|| std::env::var("USER").ok()).filter(|u| !u.is_empty()).unwrap_or_else(|| "postgres".to_string());
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Some(password) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
            config.password(password);
        } else if let Some(password) = passfile().and_then(|file| passfile_password(&file, &config)) {
            config.password(password);
        }
    }
    Ok(config)
}

/// `PGPASSFILE`, else `~/.pgpass`.
fn passfile() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("PGPASSFILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass"))
}

/// The password the passfile holds for `config`'s first host, port, database and user (lines
/// `host:port:database:user:password`, `*` matching anything, `\:` and `\\` escaped). Like
/// libpq, a file others can read is ignored, with a warning.
fn passfile_password(file: &Path, config: &postgres::Config) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(passfile = %file.display(), "the PostgreSQL passfile is readable by group or others; ignored (chmod 0600 it)");
            return None;
        }
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or("postgres").to_string();
    let database = config.get_dbname().map_or_else(|| user.clone(), str::to_string);
    let wanted = [host.as_str(), port.as_str(), database.as_str(), user.as_str()];
    text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = split_passfile_line(line);
        if fields.len() != 5 {
            return None;
        }
        let matches = fields.iter().zip(wanted).all(|(field, want)| field == "*" || field == want);
        matches.then(|| fields[4].clone())
    })
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

/// `postgres://user@host:port/database`, never with the password.
pub fn redacted(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().map(|p| format!(":{p}")).unwrap_or_default();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().map(|d| format!("/{d}")).unwrap_or_default();
    format!("postgres://{user}{host}{port}{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_printed() {
        let config = parse("postgres://app:s3cret-pw@db.internal:6432/novacron").expect("url");
        assert_eq!(redacted(&config), "postgres://app@db.internal:6432/novacron");
        assert_eq!(config.get_password(), Some(&b"s3cret-pw"[..]));
        let err = parse("postgres://app:s3cret-pw@db:notaport/x").expect_err("bad port");
        assert!(!err.contains("s3cret-pw") && err.contains("postgres://USER@HOST"), "{err}");
        assert!(is_postgres("postgresql://x/y") && is_postgres("POSTGRES://x") && !is_postgres("state.db"));
    }

    #[test]
    fn the_passfile_supplies_a_missing_password_like_libpq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "# comment\nother:5432:*:*:wrong\ndb.internal:6432:novacron:app:pa\\:ss\n*:*:*:*:fallback\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config: postgres::Config = "postgres://app@db.internal:6432/novacron".parse().expect("url");
        assert_eq!(passfile_password(&file, &config).as_deref(), Some("pa:ss"));
        let config: postgres::Config = "postgres://bob@elsewhere/x".parse().expect("url");
        assert_eq!(passfile_password(&file, &config).as_deref(), Some("fallback"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(passfile_password(&file, &config), None, "a passfile others can read is ignored");
    }
}
