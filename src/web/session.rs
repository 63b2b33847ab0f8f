//! Login sessions: random ids kept in memory with an expiry, and the
//! throttle on failed logins per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::ivr::throttle::Throttle;

/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; the oldest goes when a new one would pass it.
const MAX_SESSIONS: usize = 1024;
/// Failed logins per source address per minute.
const FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The cookie that carries a session id.
pub const COOKIE: &str = "confgate_session";

/// The sessions of logged-in hosts.
pub struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
    failures: Mutex<Throttle>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            live: Mutex::new(HashMap::new()),
            failures: Mutex::new(Throttle::new(FAILURES, FAILURE_WINDOW)),
        }
    }
}

impl Sessions {
    /// A new session (256 random bits, hex), valid for [`SESSION_LIFETIME`].
    pub fn open(&self, now: Instant) -> String {
        let bytes: [u8; 32] = rand::rng().random();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, expires| *expires > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), now + SESSION_LIFETIME);
        id
    }

    /// Whether `id` is a live session.
    pub fn valid(&self, id: &str, now: Instant) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(id) {
            Some(expires) if *expires > now => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    pub fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Whether `source` has failed too often to try again now.
    pub fn locked_out(&self, source: IpAddr, now: Instant) -> bool {
        let key = source.to_string();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.expire(now);
        failures.locked(&[key.as_str()], now).is_some()
    }

    pub fn failed(&self, source: IpAddr, now: Instant) {
        let key = source.to_string();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.record_failure(&[key.as_str()], now);
    }
}

/// The session id in a `Cookie` header's value, if any.
pub fn from_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // any start time will do
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.open(t0);
        assert_eq!(id.len(), 64);
        assert!(s.valid(&id, t0));
        assert!(!s.valid("nope", t0));
        assert!(!s.valid(&id, t0 + SESSION_LIFETIME));
        let id = s.open(t0);
        s.close(&id);
        assert!(!s.valid(&id, t0));
    }

    #[test]
    fn failures_lock_out_a_source() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..FAILURES {
            assert!(!s.locked_out(ip, t0));
            s.failed(ip, t0);
        }
        assert!(s.locked_out(ip, t0));
        assert!(!s.locked_out("192.0.2.2".parse().unwrap(), t0));
        assert!(!s.locked_out(ip, t0 + FAILURE_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn cookie_header() {
        assert_eq!(from_cookie("a=b; confgate_session=abc"), Some("abc"));
        assert_eq!(from_cookie("confgate_session="), None);
        assert_eq!(from_cookie("x"), None);
    }
}
