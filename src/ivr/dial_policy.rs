//! The toll-fraud guard for outbound calls (sans-IO): which destinations
//! may be dialled, how many calls at once, how many dials a minute.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A destination as dialled: what the rules check, and the URI to INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The number (`+15551234`) or, for a `sip:` URI, its user part.
    pub user: String,
    pub uri: String,
}

/// Why a destination could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("`{0}` is neither a number nor a sip: URI")]
    Malformed(String),
    #[error("a number needs a trunk (trunk.proxy)")]
    NoTrunk,
}

/// `+1 555-1234` → `sip:+15551234@<proxy>`; `sip:bob@host` as it is.
pub fn destination(to: &str, proxy: Option<&str>) -> Result<Destination, DestinationError> {
    let to = to.trim();
    let malformed = || DestinationError::Malformed(to.to_owned());
    let lower = to.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        let rest = to.split_once(':').map_or("", |(_, r)| r);
        let (user, host) = rest.split_once('@').unwrap_or(("", rest));
        let host_ok = !host.is_empty()
            && !host
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"');
        if !host_ok || user.chars().any(char::is_whitespace) {
            return Err(malformed());
        }
        return Ok(Destination {
            user: user.to_owned(),
            uri: to.to_owned(),
        });
    }
    let number: String = to
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = number.strip_prefix('+').unwrap_or(&number);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 32 {
        return Err(malformed());
    }
    let proxy = proxy.ok_or(DestinationError::NoTrunk)?;
    Ok(Destination {
        uri: format!("sip:{number}@{proxy}"),
        user: number,
    })
}

/// Which rule refused a dial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{0}` matches no trunk.allow rule")]
    NotAllowed(String),
    #[error("{0} outbound calls are in progress already")]
    TooManyCalls(usize),
    #[error("{0} dials in the last minute already")]
    TooFast(usize),
}

impl Refusal {
    /// The configuration key of the rule.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::NotAllowed(_) => "trunk.allow",
            Refusal::TooManyCalls(_) => "trunk.max_outbound",
            Refusal::TooFast(_) => "trunk.dials_per_minute",
        }
    }
}

/// Whether `user` matches one `trunk.allow` rule: `*`, a pattern with `X`
/// for any digit (matched whole), or a prefix.
fn matches(rule: &str, user: &str) -> bool {
    if rule == "*" {
        return true;
    }
    if rule.contains('X') {
        return rule.len() == user.len()
            && rule
                .chars()
                .zip(user.chars())
                .all(|(r, u)| r == u || (r == 'X' && u.is_ascii_digit()));
    }
    user.starts_with(rule)
}

/// The dial rules and their running counts.
#[derive(Debug)]
pub struct DialPolicy {
    allow: Vec<String>,
    max_outbound: usize,
    per_minute: usize,
    in_progress: usize,
    recent: VecDeque<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl DialPolicy {
    pub fn new(allow: Vec<String>, max_outbound: usize, per_minute: usize) -> Self {
        DialPolicy {
            allow,
            max_outbound,
            per_minute,
            in_progress: 0,
            recent: VecDeque::new(),
        }
    }

    /// Check a dial at `now`; when it passes it counts as started.
    pub fn admit(&mut self, dest: &Destination, now: Instant) -> Result<(), Refusal> {
        if !self.allow.iter().any(|r| matches(r, &dest.user)) {
            return Err(Refusal::NotAllowed(dest.user.clone()));
        }
        if self.in_progress >= self.max_outbound {
            return Err(Refusal::TooManyCalls(self.in_progress));
        }
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= MINUTE)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.per_minute {
            return Err(Refusal::TooFast(self.recent.len()));
        }
        self.recent.push_back(now);
        self.in_progress += 1;
        Ok(())
    }

    /// New rules (a reload); the calls and dials counted so far stay counted.
    pub fn set_rules(&mut self, allow: Vec<String>, max_outbound: usize, per_minute: usize) {
        self.allow = allow;
        self.max_outbound = max_outbound;
        self.per_minute = per_minute;
    }

    /// An admitted call ended.
    pub fn finished(&mut self) {
        self.in_progress = self.in_progress.saturating_sub(1);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    fn dest(to: &str) -> Destination {
        destination(to, Some("trunk.example:5060")).expect("destination")
    }

    #[test]
    fn numbers_go_through_the_trunk_and_uris_as_they_are() {
        assert_eq!(
            dest("+1 555-1234"),
            Destination {
                user: "+15551234".into(),
                uri: "sip:+15551234@trunk.example:5060".into()
            }
        );
        assert_eq!(dest("sip:bob@127.0.0.1:5080").user, "bob");
        assert_eq!(dest("sip:bob@127.0.0.1:5080").uri, "sip:bob@127.0.0.1:5080");
        for bad in [
            "",
            "+",
            "12a4",
            "sip:",
            "sip:bob@",
            "sip:a b@h",
            "sip:x@<h>",
        ] {
            assert!(
                matches!(
                    destination(bad, Some("t")),
                    Err(DestinationError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(destination("5551234", None), Err(DestinationError::NoTrunk));
    }

    #[test]
    fn rules_are_prefixes_patterns_or_anything() {
        assert!(matches("+1555", "+15551234"));
        assert!(!matches("+1555", "+4455512"));
        assert!(matches("+1555XXXX", "+15551234"));
        assert!(!matches("+1555XXXX", "+155512345"));
        assert!(!matches("+1555XXXX", "+1555123a"));
        assert!(matches("*", "bob"));
        let mut p = DialPolicy::new(vec![], 5, 5);
        assert_eq!(
            p.admit(&dest("+15551234"), Instant::now()),
            Err(Refusal::NotAllowed("+15551234".into())),
            "an empty allow list allows nothing"
        );
    }

    #[test]
    fn concurrent_calls_and_dials_per_minute_are_capped() {
        let t0 = Instant::now();
        let d = dest("+15551234");
        let mut p = DialPolicy::new(vec!["+1".into()], 2, 3);
        assert!(p.admit(&d, t0).is_ok());
        assert!(p.admit(&d, t0).is_ok());
        let e = p.admit(&d, t0).unwrap_err();
        assert_eq!(
            (e.rule(), e),
            ("trunk.max_outbound", Refusal::TooManyCalls(2))
        );
        p.finished();
        assert!(p.admit(&d, t0 + Duration::from_secs(1)).is_ok());
        p.finished();
        let e = p.admit(&d, t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.rule(), "trunk.dials_per_minute");
        assert!(
            p.admit(&d, t0 + Duration::from_secs(60)).is_ok(),
            "the first dials left the window"
        );
    }
}
