//! PIN guessing defence across calls (sans-IO): failures are counted per key
//! (a caller, a room) in a sliding window; past the limit the key is locked
//! out until old failures leave the window. Plus a constant-time PIN compare.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Failure counts per key in a sliding window.
#[derive(Debug)]
pub struct Throttle {
    limit: usize,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

impl Throttle {
    /// Lock a key out once it has `limit` failures within `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Throttle {
            limit: limit.max(1),
            window,
            failures: HashMap::new(),
        }
    }

    /// A new limit and window (a reload); the failures counted so far stay.
    pub fn set_rules(&mut self, limit: usize, window: Duration) {
        self.limit = limit.max(1);
        self.window = window;
    }

    /// Forget failures that have left the window; keys with none left go.
    pub fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.failures.retain(|_, times| {
            while times
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= window)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// Count one failed attempt against every key.
    pub fn record_failure(&mut self, keys: &[&str], now: Instant) {
        self.expire(now);
        for key in keys {
            let times = self.failures.entry((*key).to_owned()).or_default();
            times.push_back(now);
            // Only the newest `limit` matter for the decision.
            while times.len() > self.limit {
                times.pop_front();
            }
        }
    }

    /// The first key that is locked out at `now`, if any.
    pub fn locked<'k>(&mut self, keys: &[&'k str], now: Instant) -> Option<&'k str> {
        self.expire(now);
        keys.iter()
            .copied()
            .find(|k| self.failures.get(*k).is_some_and(|t| t.len() >= self.limit))
    }

    /// Keys currently tracked (for tests and status).
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }
}

/// The two throttles a PIN attempt is counted against: the caller (From
/// user and source address) and the number dialled.
#[derive(Debug)]
pub struct PinGuard {
    callers: Throttle,
    numbers: Throttle,
}

impl PinGuard {
    pub fn new(caller_limit: usize, number_limit: usize, window: Duration) -> Self {
        PinGuard {
            callers: Throttle::new(caller_limit, window),
            numbers: Throttle::new(number_limit, window),
        }
    }

    /// The throttle key that refuses this attempt, if any.
    pub fn locked(&mut self, caller: &str, number: &str, now: Instant) -> Option<String> {
        let caller = self.callers.locked(&[caller], now);
        let number = self.numbers.locked(&[number], now);
        caller.or(number).map(str::to_owned)
    }

    /// New limits (a reload); the failures counted so far stay.
    pub fn set_rules(&mut self, caller_limit: usize, number_limit: usize, window: Duration) {
        self.callers.set_rules(caller_limit, window);
        self.numbers.set_rules(number_limit, window);
    }

    /// Forget what has left the window (run now and then, so keys of
    /// callers who never come back do not stay).
    pub fn expire(&mut self, now: Instant) {
        self.callers.expire(now);
        self.numbers.expire(now);
    }

    /// Caller and number keys with failures still in the window.
    pub fn tracked(&self) -> usize {
        self.callers.tracked() + self.numbers.tracked()
    }

    /// Count a wrong PIN; returns the key now locked, if this was one too many.
    pub fn failed(&mut self, caller: &str, number: &str, now: Instant) -> Option<String> {
        self.callers.record_failure(&[caller], now);
        self.numbers.record_failure(&[number], now);
        self.locked(caller, number, now)
    }
}

/// The throttle keys of a call: `caller:USER@IP` and `number:USER`.
pub fn keys(from_user: &str, source: std::net::IpAddr, dialled: &str) -> (String, String) {
    (
        format!("caller:{from_user}@{source}"),
        format!("number:{dialled}"),
    )
}

/// Compare two secrets (PINs, control tokens) in time that depends only on
/// their lengths, not on where they first differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// A PIN as it may appear in logs: its length only.
pub fn redact(pin: &str) -> String {
    format!("<{} digits>", pin.len())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_the_limit_within_the_window() {
        let t = Instant::now();
        let min = Duration::from_secs(60);
        let mut th = Throttle::new(5, 10 * min);
        let keys = ["caller:alice@192.0.2.7", "room:42"];
        for i in 0..4 {
            th.record_failure(&keys, t + i * min);
            assert_eq!(th.locked(&keys, t + i * min), None);
        }
        th.record_failure(&keys, t + 4 * min);
        assert_eq!(
            th.locked(&keys, t + 4 * min),
            Some("caller:alice@192.0.2.7")
        );
        // Another caller trying the same room is locked out by the room key.
        assert_eq!(
            th.locked(&["caller:bob@192.0.2.8", "room:42"], t + 4 * min),
            Some("room:42")
        );
        // The first failure leaves the window at t + 10 min: unlocked again.
        assert!(th
            .locked(&keys, t + 10 * min - Duration::from_millis(1))
            .is_some());
        assert_eq!(th.locked(&keys, t + 10 * min), None);
    }

    #[test]
    fn old_entries_are_forgotten() {
        let t = Instant::now();
        let mut th = Throttle::new(3, Duration::from_secs(60));
        th.record_failure(&["a"], t);
        th.record_failure(&["b"], t);
        assert_eq!(th.tracked(), 2);
        th.locked(&["c"], t + Duration::from_secs(61));
        assert_eq!(th.tracked(), 0, "memory does not grow with old callers");
    }

    #[test]
    fn the_guard_counts_callers_and_numbers_apart() {
        let t = Instant::now();
        let mut g = PinGuard::new(2, 3, Duration::from_secs(600));
        let (alice, number) = keys("alice", "192.0.2.7".parse().unwrap(), "8000");
        let (bob, _) = keys("bob", "192.0.2.8".parse().unwrap(), "8000");
        assert_eq!(g.failed(&alice, &number, t), None);
        assert_eq!(
            g.failed(&alice, &number, t),
            Some("caller:alice@192.0.2.7".into())
        );
        assert_eq!(g.locked(&bob, &number, t), None, "bob is not alice");
        assert_eq!(g.failed(&bob, &number, t), Some("number:8000".into()));
        assert_eq!(
            g.locked(&bob, "number:9000", t),
            None,
            "another number is open"
        );
        assert_eq!(g.tracked(), 3, "alice, bob and the number");
        g.expire(t + Duration::from_secs(599));
        assert_eq!(g.tracked(), 3, "still in the window");
        g.expire(t + Duration::from_secs(600));
        assert_eq!(g.tracked(), 0, "every key leaves with its window");
    }

    #[test]
    fn pin_compare_and_redaction() {
        assert!(secrets_equal("4321", "4321"));
        assert!(!secrets_equal("4321", "4320"));
        assert!(!secrets_equal("4321", "43210"));
        assert!(!secrets_equal("", "0"));
        assert!(secrets_equal("", ""));
        assert!(!secrets_equal("0123456789abcdeX", "0123456789abcdef"));
        assert!(!secrets_equal("0123456789abcdef0", "0123456789abcdef"));
        assert_eq!(redact("4321"), "<4 digits>");
    }
}
