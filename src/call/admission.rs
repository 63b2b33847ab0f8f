//! Admission: how many calls may run at once, in all and per source, and
//! who may call at all. Checked at the SIP edge before a call takes an RTP
//! port or a task; a call holds its [`CallPermit`] until it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::ivr::directory::Cidr;

/// The configured limits.
#[derive(Debug, Clone, Default)]
pub struct AdmissionRules {
    /// All calls at once, inbound and outbound; 0: no limit.
    pub max_calls: usize,
    /// Inbound calls at once from one source IP; 0: no limit.
    pub max_per_source: usize,
    /// Sources that may send requests; empty: anyone.
    pub allow: Vec<Cidr>,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the source is not in sip.allow")]
    NotAllowed,
    #[error("calls.max_calls reached")]
    Full,
    #[error("calls.max_per_source reached for this source")]
    SourceFull,
    #[error("draining: no new calls")]
    Draining,
}

impl Refusal {
    /// As metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::Full => "full",
            Refusal::SourceFull => "source_full",
            Refusal::Draining => "draining",
        }
    }

    /// The SIP status that answers the INVITE.
    pub fn sip_status(self) -> u16 {
        match self {
            Refusal::NotAllowed => 403,
            Refusal::Full | Refusal::SourceFull | Refusal::Draining => 503,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Inbound calls refused, per reason.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; 4]);

impl Refusals {
    fn slot(r: Refusal) -> usize {
        match r {
            Refusal::NotAllowed => 0,
            Refusal::Full => 1,
            Refusal::SourceFull => 2,
            Refusal::Draining => 3,
        }
    }

    fn count(&self, r: Refusal) -> Refusal {
        self.0[Self::slot(r)].fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Inbound calls refused for `r` since the start.
    pub fn get(&self, r: Refusal) -> u64 {
        self.0[Self::slot(r)].load(Ordering::Relaxed)
    }
}

/// The live count of calls, shared by the SIP edge and outbound dialling.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    rules: Arc<RwLock<Arc<AdmissionRules>>>,
    counts: Arc<Mutex<Counts>>,
    refused: Arc<Refusals>,
    draining: Arc<AtomicBool>,
}

/// One admitted call; dropping it frees the slot.
#[derive(Debug)]
pub struct CallPermit {
    counts: Arc<Mutex<Counts>>,
    source: Option<IpAddr>,
}

impl Admission {
    pub fn new(rules: AdmissionRules) -> Admission {
        Admission {
            rules: Arc::new(RwLock::new(Arc::new(rules))),
            counts: Arc::default(),
            refused: Arc::default(),
            draining: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A poisoned lock only means a task panicked mid-update; the counts are usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rules(&self) -> Arc<AdmissionRules> {
        // A poisoned lock only means a task panicked mid-swap; the rules stand.
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// New rules (a reload): calls admitted under the old ones stay.
    pub fn set_rules(&self, rules: AdmissionRules) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }

    /// Refuse every new call from now on (`drain`); true the first time.
    pub fn start_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::SeqCst)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether `ip` may send us requests at all.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let rules = self.rules();
        rules.allow.is_empty() || rules.allow.iter().any(|c| c.contains(ip))
    }

    /// Admit an inbound call from `source`.
    pub fn admit_inbound(&self, source: IpAddr) -> Result<CallPermit, Refusal> {
        self.try_inbound(source).map_err(|r| self.refused.count(r))
    }

    fn try_inbound(&self, source: IpAddr) -> Result<CallPermit, Refusal> {
        if !self.allows(source) {
            return Err(Refusal::NotAllowed);
        }
        if self.draining() {
            return Err(Refusal::Draining);
        }
        let rules = self.rules();
        let mut counts = self.lock();
        if rules.max_calls > 0 && counts.total >= rules.max_calls {
            return Err(Refusal::Full);
        }
        let from_source = counts.by_source.get(&source).copied().unwrap_or(0);
        if rules.max_per_source > 0 && from_source >= rules.max_per_source {
            return Err(Refusal::SourceFull);
        }
        counts.total += 1;
        counts.by_source.insert(source, from_source + 1);
        Ok(CallPermit {
            counts: self.counts.clone(),
            source: Some(source),
        })
    }

    /// Admit an outbound call (counted in `max_calls` only).
    pub fn admit_outbound(&self) -> Result<CallPermit, Refusal> {
        if self.draining() {
            return Err(Refusal::Draining);
        }
        let max_calls = self.rules().max_calls;
        let mut counts = self.lock();
        if max_calls > 0 && counts.total >= max_calls {
            return Err(Refusal::Full);
        }
        counts.total += 1;
        Ok(CallPermit {
            counts: self.counts.clone(),
            source: None,
        })
    }

    /// Inbound calls refused so far.
    pub fn refusals(&self) -> &Refusals {
        &self.refused
    }

    /// Calls admitted and not yet ended.
    pub fn calls(&self) -> usize {
        self.lock().total
    }

    /// Sources with calls in progress (an entry per source, gone with its last call).
    pub fn sources(&self) -> usize {
        self.lock().by_source.len()
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.source {
            if let Some(n) = counts.by_source.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.by_source.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn max_calls_counts_every_call_and_frees_on_drop() {
        let a = Admission::new(AdmissionRules {
            max_calls: 2,
            ..Default::default()
        });
        let first = a.admit_inbound(ip("10.0.0.1")).unwrap();
        let _second = a.admit_outbound().unwrap();
        assert_eq!(a.admit_inbound(ip("10.0.0.2")).unwrap_err(), Refusal::Full);
        assert_eq!(a.admit_outbound().unwrap_err(), Refusal::Full);
        drop(first);
        assert_eq!(a.calls(), 1);
        assert_eq!(a.sources(), 0, "the source's entry goes with its last call");
        a.admit_inbound(ip("10.0.0.2")).unwrap();
    }

    #[test]
    fn per_source_cap_leaves_other_sources_alone() {
        let a = Admission::new(AdmissionRules {
            max_per_source: 1,
            ..Default::default()
        });
        let _one = a.admit_inbound(ip("192.0.2.1")).unwrap();
        assert_eq!(
            a.admit_inbound(ip("192.0.2.1")).unwrap_err(),
            Refusal::SourceFull
        );
        let _other = a.admit_inbound(ip("192.0.2.2")).unwrap();
        assert_eq!(Refusal::SourceFull.sip_status(), 503);
    }

    #[test]
    fn allow_list_refuses_others_with_403() {
        let a = Admission::new(AdmissionRules {
            allow: vec![Cidr::parse("198.51.100.0/24").unwrap()],
            ..Default::default()
        });
        assert!(a.allows(ip("198.51.100.9")));
        let refused = a.admit_inbound(ip("203.0.113.1")).unwrap_err();
        assert_eq!(refused, Refusal::NotAllowed);
        assert_eq!(refused.sip_status(), 403);
        assert_eq!(a.calls(), 0);
    }

    #[test]
    fn no_rules_admit_everyone() {
        let a = Admission::default();
        let permits: Vec<_> = (0..100)
            .map(|i| a.admit_inbound(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(a.calls(), 100);
        drop(permits);
        assert_eq!((a.calls(), a.sources()), (0, 0));
    }
}
