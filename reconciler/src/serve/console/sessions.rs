//! Browser sessions of the console: random ids kept in memory until they expire, each with its CSRF token and a one-shot flash message; the pre-session CSRF token of the sign-in form.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::serve::webhook::constant_time_eq;

/// The cookie holding the session id.
pub const SESSION_COOKIE: &str = "novacron_session";
/// The cookie holding the sign-in form's CSRF token (double submit, before any session exists).
pub const SIGNIN_CSRF_COOKIE: &str = "novacron_csrf";

/// 32 random bytes (256 bits) from the operating system, as lowercase hex.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// True when a submitted CSRF token equals the expected one (constant time; empty never matches).
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    !expected.is_empty() && constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// A signed-in person as the pages see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The name given at sign-in: the actor of their approvals.
    pub name: String,
    /// The token every POST form of this session carries.
    pub csrf: String,
}

struct Session {
    who: SignedIn,
    expires: Instant,
    flash: Option<String>,
}

/// The sessions of one `serve` process (a restart signs everyone out).
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Session ids are bearer secrets: only how many there are is shown.
        f.debug_struct("Sessions").field("ttl", &self.ttl).field("open", &self.lock().len()).finish()
    }
}

impl Sessions {
    /// No sessions; each one created lasts `ttl`.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions { ttl, map: Mutex::new(HashMap::new()) }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `name` at `now`; returns its id. Expired sessions are dropped here.
    pub fn create(&self, name: &str, now: Instant) -> Result<String, getrandom::Error> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        map.insert(id.clone(), Session { who: SignedIn { name: name.to_string(), csrf }, expires: now + self.ttl, flash: None });
        Ok(id)
    }

    /// The person of session `id` at `now`, unless it expired (then it is removed) or never existed.
    pub fn get(&self, id: &str, now: Instant) -> Option<SignedIn> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.who.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves `message` for the next page session `id` sees.
    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    /// Takes the flash message of session `id`, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_hex_and_differ() {
        let a = random_token().expect("random");
        let b = random_token().expect("random");
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn sessions_expire_after_their_ttl() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let id = sessions.create("Ada", t0).expect("create");
        let who = sessions.get(&id, t0 + Duration::from_secs(59)).expect("still valid");
        assert_eq!(who.name, "Ada");
        assert_eq!(who.csrf.len(), 64);
        assert_ne!(who.csrf, id, "the CSRF token is not the session id");
        assert_eq!(sessions.get(&id, t0 + Duration::from_secs(60)), None, "expired at its ttl");
        assert_eq!(sessions.get(&id, t0), None, "an expired session is gone for good");
        assert_eq!(sessions.get("made-up", t0), None);
    }

    #[test]
    fn flash_messages_are_shown_once_and_signout_ends_the_session() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let now = Instant::now();
        let id = sessions.create("Ada", now).expect("create");
        sessions.set_flash(&id, "approved".into());
        assert_eq!(sessions.take_flash(&id).as_deref(), Some("approved"));
        assert_eq!(sessions.take_flash(&id), None);
        sessions.remove(&id);
        assert_eq!(sessions.get(&id, now), None);
        assert!(!format!("{sessions:?}").contains(&id), "ids never print");
    }

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, "a=1; novacron_session=abc ; novacron_csrf=".parse().expect("header"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, SIGNIN_CSRF_COOKIE), None, "an empty value is no cookie");
        assert_eq!(cookie(&h, "b"), None);
        assert!(csrf_matches("t0k", "t0k"));
        assert!(!csrf_matches("t0k", "t0K"));
        assert!(!csrf_matches("", ""), "no expected token, no match");
    }
}
