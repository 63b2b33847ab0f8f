//! Strict RTP source learning: which packets are the caller's media, and
//! where the caller's media is sent.
//!
//! A call's media port accepts datagrams from anyone. Taking the first
//! packet from anyone as the caller (plain symmetric RTP) lets a stranger
//! who sprays the port range take the call's media: hear it, and inject
//! audio or digits ("RTP Bleed", Asterisk CVE-2017-14099). A
//! [`SourceLearning`] judges every received packet instead:
//!
//! 1. A packet from the signalled address (the one the SDP names) is always
//!    accepted, and that address becomes the media source at once, even
//!    over a source learned earlier.
//! 2. A packet from the current media source is accepted.
//! 3. Any other sender is refused while the current source is active, that
//!    is while the current source's last packet is younger than the quiet
//!    period ([`DEFAULT_QUIET_PERIOD`]). Otherwise, in strict mode, a sender
//!    whose IP is neither the IP the SIP request came from nor the signalled
//!    address's IP is refused. Otherwise the sender is on probation: it
//!    becomes the media source only after a run of consecutive packets
//!    ([`DEFAULT_PROBATION`]) of one SSRC from one address, each sequence
//!    number one more than the last (65535 is followed by 0). A packet from
//!    another address or SSRC, or out of sequence, starts a new run with
//!    itself. Packets on probation are refused, including those that count;
//!    the packet that completes the run is accepted and switches the media
//!    source.
//!
//! This learns a caller behind NAT (the SDP names a private address, the
//! packets come from the NAT's public address, which is also where the SIP
//! request came from), while a stranger never takes over a caller who keeps
//! talking, and in strict mode a stranger on another IP never takes over.
//!
//! The learner is sans-IO: it is fed the sender's address, the packet's SSRC
//! and sequence number, and the time of arrival.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Packets in a row a new sender needs before it becomes the media source.
pub const DEFAULT_PROBATION: u32 = 4;

/// How long the current media source must be silent before another sender
/// may be learned.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(2);

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The packet is the caller's media: mix it, look in it for digits.
    Accept {
        /// The media destination ([`SourceLearning::destination`]) changed
        /// with this packet; media for the caller now goes to the sender.
        switched: bool,
    },
    /// The packet is not the caller's media: drop it.
    Foreign(ForeignReason),
}

impl Verdict {
    /// Whether the packet is the caller's media.
    pub fn is_accepted(self) -> bool {
        matches!(self, Verdict::Accept { .. })
    }
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForeignReason {
    /// Strict mode, and the sender's IP is neither the signalling IP nor
    /// the signalled address's IP.
    WrongIp,
    /// The sender is a new source on probation: it has not yet sent enough
    /// consecutive in-sequence packets to be learned.
    Probation,
    /// The current media source is still sending, so no other sender may
    /// take its place.
    SourceActive,
}

impl ForeignReason {
    /// As metrics and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            ForeignReason::WrongIp => "wrong_ip",
            ForeignReason::Probation => "probation",
            ForeignReason::SourceActive => "source_active",
        }
    }
}

/// How many packets were refused, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForeignCounters {
    /// Refused with [`ForeignReason::WrongIp`].
    pub wrong_ip: u64,
    /// Refused with [`ForeignReason::Probation`].
    pub probation: u64,
    /// Refused with [`ForeignReason::SourceActive`].
    pub source_active: u64,
}

impl ForeignCounters {
    /// Packets refused for any reason.
    pub fn total(&self) -> u64 {
        self.wrong_ip + self.probation + self.source_active
    }

    /// Add the counts of `other`.
    pub fn add(&mut self, other: &ForeignCounters) {
        self.wrong_ip += other.wrong_ip;
        self.probation += other.probation;
        self.source_active += other.source_active;
    }

    /// The counts since `earlier`, a copy taken before.
    pub fn since(&self, earlier: &ForeignCounters) -> ForeignCounters {
        ForeignCounters {
            wrong_ip: self.wrong_ip.saturating_sub(earlier.wrong_ip),
            probation: self.probation.saturating_sub(earlier.probation),
            source_active: self.source_active.saturating_sub(earlier.source_active),
        }
    }

    /// Packets refused for `reason`.
    pub fn get(&self, reason: ForeignReason) -> u64 {
        match reason {
            ForeignReason::WrongIp => self.wrong_ip,
            ForeignReason::Probation => self.probation,
            ForeignReason::SourceActive => self.source_active,
        }
    }

    fn count(&mut self, reason: ForeignReason) {
        let counter = match reason {
            ForeignReason::WrongIp => &mut self.wrong_ip,
            ForeignReason::Probation => &mut self.probation,
            ForeignReason::SourceActive => &mut self.source_active,
        };
        *counter = counter.saturating_add(1);
    }
}

/// The current media source.
#[derive(Debug, Clone, Copy)]
struct Source {
    addr: SocketAddr,
    /// When its last packet was accepted.
    last_rx: Instant,
}

/// A sender on probation.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    last_seq: u16,
    /// Consecutive in-sequence packets so far, at least 1.
    run: u32,
}

/// Decides which received packets are the caller's media and where the
/// caller's media goes, for one call leg. The rules are in the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct SourceLearning {
    signalled: Option<SocketAddr>,
    signalling_ip: IpAddr,
    strict: bool,
    probation: u32,
    quiet: Duration,
    source: Option<Source>,
    candidate: Option<Candidate>,
    counters: ForeignCounters,
}

impl SourceLearning {
    /// A learner for a call whose SDP names `signalled` (None: not known
    /// yet, or on hold with `c=0.0.0.0`) and whose SIP request came from
    /// `signalling_ip`.
    ///
    /// `strict`: true lets a sender other than the signalled address be
    /// learned only from the signalling IP or the signalled address's IP;
    /// false lets it be learned from any IP.
    ///
    /// Probation is [`DEFAULT_PROBATION`] packets and the quiet period
    /// [`DEFAULT_QUIET_PERIOD`]; see [`with_probation`](Self::with_probation)
    /// and [`with_quiet_period`](Self::with_quiet_period).
    pub fn new(signalled: Option<SocketAddr>, signalling_ip: IpAddr, strict: bool) -> Self {
        Self {
            signalled,
            signalling_ip,
            strict,
            probation: DEFAULT_PROBATION,
            quiet: DEFAULT_QUIET_PERIOD,
            source: None,
            candidate: None,
            counters: ForeignCounters::default(),
        }
    }

    /// Packets in a row a new sender needs to become the media source (at
    /// least 1; 1 learns a new sender on its first packet once the current
    /// source is quiet).
    pub fn with_probation(mut self, packets: u32) -> Self {
        self.probation = packets.max(1);
        self
    }

    /// How long the current media source must be silent before another
    /// sender may be learned. Zero means the current source never holds
    /// off another sender, which gives up the protection against takeover.
    pub fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Judge a packet from `from` with `ssrc` and sequence number `seq`,
    /// received at `now`.
    pub fn on_packet(&mut self, from: SocketAddr, ssrc: u32, seq: u16, now: Instant) -> Verdict {
        let from_signalled = self.signalled.is_some_and(|s| same_addr(s, from));
        let from_source = self.source.is_some_and(|s| same_addr(s.addr, from));
        if from_signalled || from_source {
            return self.take(from, now);
        }
        if self.source.is_some_and(|s| self.is_active(s, now)) {
            return self.refuse(ForeignReason::SourceActive);
        }
        if self.strict && !self.ip_allowed(from.ip()) {
            return self.refuse(ForeignReason::WrongIp);
        }
        let run = match self.candidate {
            Some(c)
                if same_addr(c.addr, from)
                    && c.ssrc == ssrc
                    && seq == c.last_seq.wrapping_add(1) =>
            {
                c.run.saturating_add(1)
            }
            _ => 1,
        };
        if run >= self.probation {
            return self.take(from, now);
        }
        self.candidate = Some(Candidate {
            addr: from,
            ssrc,
            last_seq: seq,
            run,
        });
        self.refuse(ForeignReason::Probation)
    }

    /// Where to send media for the caller now: the media source once one
    /// has sent, else the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.source.map(|s| s.addr).or(self.signalled)
    }

    /// A new offer/answer named `signalled`. If that is another address,
    /// learning starts over: any sender on probation is dropped, and the
    /// media source is forgotten unless it is the new signalled address.
    /// The same address again (a session refresh) changes nothing, so a
    /// source learned behind NAT is kept.
    pub fn renegotiated(&mut self, signalled: Option<SocketAddr>) {
        let unchanged = match (self.signalled, signalled) {
            (Some(old), Some(new)) => same_addr(old, new),
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return;
        }
        self.signalled = signalled;
        self.candidate = None;
        let keep = self
            .source
            .is_some_and(|s| signalled.is_some_and(|new| same_addr(s.addr, new)));
        if !keep {
            self.source = None;
        }
    }

    /// Packets refused so far, per reason.
    pub fn counters(&self) -> ForeignCounters {
        self.counters
    }

    /// Make `from` the media source as of `now` and accept its packet.
    fn take(&mut self, from: SocketAddr, now: Instant) -> Verdict {
        let before = self.destination();
        self.source = Some(Source {
            addr: from,
            last_rx: now,
        });
        self.candidate = None;
        let switched = !before.is_some_and(|b| same_addr(b, from));
        Verdict::Accept { switched }
    }

    fn refuse(&mut self, reason: ForeignReason) -> Verdict {
        self.counters.count(reason);
        Verdict::Foreign(reason)
    }

    /// The source sent within the quiet period before `now`. A `now` before
    /// its last packet (clock readings out of order) counts as active.
    fn is_active(&self, source: Source, now: Instant) -> bool {
        now.saturating_duration_since(source.last_rx) < self.quiet
    }

    /// Strict mode: the IPs a new sender may come from.
    fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip == self.signalling_ip.to_canonical()
            || self.signalled.is_some_and(|s| s.ip().to_canonical() == ip)
    }
}

/// Same IP and port, taking an IPv4-mapped IPv6 address (as a dual-stack
/// socket reports IPv4 senders) as the IPv4 address it maps.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

#[cfg(test)]
#[path = "learning_tests.rs"]
mod tests;
