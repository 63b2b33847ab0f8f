//! RTCP for one RTP leg (RFC 3550 §6), sans-IO: reception statistics of
//! the stream we receive, sender or receiver reports with an SDES CNAME at
//! a randomized interval, a BYE at the end, and what the far end's reports
//! tell of our stream — its loss and jitter, and the round-trip time.
//!
//! The owner feeds accepted RTP packets ([`RtcpSession::on_rtp`]), RTCP
//! datagrams ([`RtcpSession::on_rtcp`]) and the time, and sends what
//! [`RtcpSession::handle_timeout`] writes. Packets are written and read by
//! hand (see [`Parts`] and `report`); a compound packet is taken only when
//! all of it is well formed and it starts with SR or RR (RFC 3550 §6.1,
//! A.2). The tests check both directions against the `rtcp` crate. Each leg is an
//! RTP session of its own between confgate and the phone (the conference is
//! a mixer, RFC 7667 §3.6), so its reports name only those two sources.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::packet::SeqTracker;
use crate::media::quality::Conditions;

/// RFC 3550 §6.2: the minimum report interval, and half of it before the first.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 3550 §6.3.1: compensation for the randomization's bias, e − 3/2.
const COMPENSATION: f64 = 1.218_28;
/// The span our own loss figure is measured over: long enough that a few
/// hundred packets steady it, short enough to follow a line that changes.
const LOSS_WINDOW: Duration = Duration::from_secs(10);
/// Snapshots kept for the loss window, at most.
const HISTORY: usize = 8;
/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why an RTCP datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("not a valid RTCP compound packet")]
    Malformed,
    #[error("a compound packet must start with SR or RR")]
    NotCompound,
    #[error("reports from SSRC {0:#010x}, not the media source's")]
    Foreign(u32),
}

/// What we have sent so far, from the stream's sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub packets: u32,
    pub octets: u32,
    /// The RTP timestamp of the next packet (≈ now).
    pub rtp_timestamp: u32,
}

/// What the far end's last report said about our stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteView {
    /// Share of our packets it lost in its last interval, 0.0–1.0.
    pub fraction_lost: f64,
    /// Our packets it lost in all.
    pub cumulative_lost: i32,
    /// Interarrival jitter of our stream as it measures it, ms.
    pub jitter_ms: f64,
}

/// Per-leg figures, for listings, the hang-up log and the quality score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Share of the far end's packets we lost over about the last 10 s.
    pub lost: f64,
    /// Interarrival jitter of the far end's stream, ms.
    pub jitter_ms: f64,
    /// The far end's view of our stream, once it has reported.
    pub remote: Option<RemoteView>,
    /// Round-trip time from its reports' LSR/DLSR, once known.
    pub rtt: Option<Duration>,
}

impl Figures {
    /// The worse of the two directions, for the E-model.
    pub fn conditions(&self) -> Conditions {
        let remote = self.remote.unwrap_or_default();
        Conditions {
            loss: self.lost.max(remote.fraction_lost),
            jitter_ms: self.jitter_ms.max(remote.jitter_ms),
            rtt_ms: self.rtt.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// Counters for the hang-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpCounters {
    pub sent: u64,
    pub received: u64,
    /// Datagrams that were not a valid compound packet.
    pub malformed: u64,
    /// Valid reports from a source other than the media source.
    pub foreign: u64,
}

/// The stream we receive (RFC 3550 A.1, A.3, A.8).
#[derive(Debug)]
struct Reception {
    ssrc: u32,
    seq: SeqTracker,
    base: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Last transit time (arrival − RTP timestamp), in timestamp units.
    transit: Option<f64>,
    /// Interarrival jitter, in timestamp units.
    jitter: f64,
    /// Middle 32 bits of the last SR's NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
    /// (when, expected, received) at the reports of about the last
    /// `LOSS_WINDOW`, oldest first, for the loss over that window.
    history: std::collections::VecDeque<(Instant, u64, u64)>,
    /// Share lost over the window, as of the last report.
    window_lost: f64,
}

/// One leg's RTCP.
#[derive(Debug)]
pub struct RtcpSession {
    ssrc: u32,
    cname: Box<[u8]>,
    rate: f64,
    /// An instant and its NTP time: the wall clock read once.
    anchor: (Instant, u64),
    reception: Option<Reception>,
    remote: Option<RemoteView>,
    rtt: Option<Duration>,
    bye_heard: bool,
    next_report: Instant,
    packets_at_last_report: u32,
    rng: u64,
    counters: RtcpCounters,
}

impl RtcpSession {
    /// A session for our stream `ssrc` at `rate` Hz, starting at `now`,
    /// when the wall clock read `wall`. `seed` randomizes the intervals.
    pub fn new(
        ssrc: u32,
        cname: &str,
        rate: u32,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> Self {
        let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut s = RtcpSession {
            ssrc,
            cname: cname.as_bytes().into(),
            rate: f64::from(rate.max(1)),
            anchor: (now, ntp_from_unix(since_unix)),
            reception: None,
            remote: None,
            rtt: None,
            bye_heard: false,
            next_report: now,
            packets_at_last_report: 0,
            rng: seed | 1,
            counters: RtcpCounters::default(),
        };
        s.next_report = now + s.interval(MIN_INTERVAL / 2);
        s
    }

    /// The stream's RTP clock changed (a re-INVITE moved the call to a
    /// codec with another clock): jitter is read in the new one.
    pub fn set_rate(&mut self, rate: u32) {
        self.rate = f64::from(rate.max(1));
    }

    /// An accepted RTP packet of the media source arrived at `now`. Only
    /// `audio` packets count for jitter: a telephone-event's packets all
    /// carry the timestamp of the key press's start (RFC 4733 §2.5.1.2), so
    /// their transit times say nothing of the network.
    pub fn on_rtp(&mut self, ssrc: u32, seq: u16, timestamp: u32, audio: bool, now: Instant) {
        let rate = self.rate;
        let arrival = now.saturating_duration_since(self.anchor.0).as_secs_f64() * rate;
        let r = match &mut self.reception {
            // A new SSRC (the phone restarted its stream): start over.
            Some(r) if r.ssrc == ssrc => r,
            slot => {
                let mut seqs = SeqTracker::new();
                let base = seqs.update(seq);
                *slot = Some(Reception {
                    ssrc,
                    seq: seqs,
                    base,
                    received: 1,
                    expected_prior: 0,
                    received_prior: 0,
                    transit: audio.then(|| arrival - f64::from(timestamp)),
                    jitter: 0.0,
                    last_sr: None,
                    history: {
                        // Reports come at least 2 s apart (RFC 3550 §6.3.1
                        // with our 5 s minimum), so a window holds at most 7
                        // snapshots: room for them now, none grown later.
                        let mut h = std::collections::VecDeque::with_capacity(HISTORY);
                        h.push_back((now, 0, 0));
                        h
                    },
                    window_lost: 0.0,
                });
                return;
            }
        };
        r.seq.update(seq);
        r.received += 1;
        if !audio {
            return;
        }
        // RFC 3550 A.8, with wrapping RTP timestamps unwrapped against the last one.
        let transit = arrival - f64::from(timestamp);
        if let Some(last) = r.transit {
            let mut d = (transit - last).abs();
            // A wrap of the 32-bit timestamp moves transit by 2^32.
            d = d.min((d - 4_294_967_296.0).abs());
            r.jitter += (d - r.jitter) / 16.0;
        }
        r.transit = Some(transit);
    }

    /// An RTCP datagram arrived at `now`.
    pub fn on_rtcp(&mut self, datagram: &[u8], now: Instant) -> Result<(), RtcpError> {
        let result = self.take_rtcp(datagram, now);
        match result {
            Ok(()) => self.counters.received += 1,
            Err(RtcpError::Foreign(_)) => self.counters.foreign += 1,
            Err(_) => self.counters.malformed += 1,
        }
        result
    }

    fn take_rtcp(&mut self, datagram: &[u8], now: Instant) -> Result<(), RtcpError> {
        // All of it well formed first: nothing is taken from a bad packet.
        if Parts(datagram).any(|p| p.is_err()) || datagram.is_empty() {
            return Err(RtcpError::Malformed);
        }
        let sender = match Parts(datagram).next() {
            Some(Ok(Part::Sr { ssrc, .. } | Part::Rr { ssrc, .. })) => ssrc,
            _ => return Err(RtcpError::NotCompound),
        };
        if let Some(r) = &self.reception {
            if r.ssrc != sender {
                return Err(RtcpError::Foreign(sender));
            }
        }
        for part in Parts(datagram).flatten() {
            match part {
                Part::Sr { ssrc, ntp, blocks } => {
                    if let Some(r) = self.reception.as_mut().filter(|r| r.ssrc == ssrc) {
                        r.last_sr = Some(((ntp >> 16) as u32, now));
                    }
                    self.take_blocks(blocks, now);
                }
                Part::Rr { blocks, .. } => self.take_blocks(blocks, now),
                Part::Bye { sources } => {
                    if sources.chunks_exact(4).any(|s| be32(s, 0) == sender) {
                        self.bye_heard = true;
                    }
                }
                Part::Other => {}
            }
        }
        Ok(())
    }

    /// Report blocks about our stream, 24 octets each.
    fn take_blocks(&mut self, blocks: &[u8], now: Instant) {
        let blocks = blocks.chunks_exact(BLOCK).map(ReportBlock::read);
        for b in blocks.filter(|b| b.ssrc == self.ssrc) {
            // total_lost is a 24-bit signed number.
            let lost = ((b.total_lost << 8) as i32) >> 8;
            self.remote = Some(RemoteView {
                fraction_lost: f64::from(b.fraction_lost) / 256.0,
                cumulative_lost: lost,
                jitter_ms: f64::from(b.jitter) * 1000.0 / self.rate,
            });
            if b.last_sender_report != 0 {
                // RFC 3550 §6.4.1: A − LSR − DLSR, in 1/65536 s.
                let a = (self.ntp(now) >> 16) as u32;
                let rtt = a.wrapping_sub(b.last_sender_report).wrapping_sub(b.delay) as i32;
                // Phones round DLSR (baresip to the millisecond), so a short
                // path can come out a little negative: that is 0. Anything
                // further off (a forged or garbled report) is dropped.
                if (-(1 << 16)..60 << 16).contains(&rtt) {
                    let rtt = f64::from(rtt.max(0)) / 65536.0;
                    self.rtt = Some(Duration::from_secs_f64(rtt));
                }
            }
        }
    }

    /// When [`RtcpSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.next_report
    }

    /// When a report is due at `now`: writes it into `out` (cleared first)
    /// and returns true.
    pub fn handle_timeout(&mut self, now: Instant, sent: Sent, out: &mut Vec<u8>) -> bool {
        if now < self.next_report {
            return false;
        }
        self.report(now, sent, false, out);
        self.next_report = now + self.interval(MIN_INTERVAL);
        true
    }

    /// The last report with a BYE, when the call ends.
    pub fn bye(&mut self, now: Instant, sent: Sent, out: &mut Vec<u8>) {
        self.report(now, sent, true, out);
    }

    /// Our compound report into `out`: SR (or RR when we sent nothing since
    /// the last), SDES with our CNAME, and a BYE when `bye`. Written by
    /// hand rather than through the `rtcp` crate, whose packets are boxed
    /// and marshalled into new buffers: this runs on the media tick, which
    /// allocates nothing. `rtcp_tests` parses what it writes with the crate.
    fn report(&mut self, now: Instant, sent: Sent, bye: bool, out: &mut Vec<u8>) {
        let block = self.block(now);
        out.clear();
        let count = u8::from(block.is_some());
        if sent.packets != self.packets_at_last_report {
            header(out, count, PT_SR, 6 + 6 * usize::from(count));
            out.extend_from_slice(&self.ssrc.to_be_bytes());
            out.extend_from_slice(&self.ntp(now).to_be_bytes());
            out.extend_from_slice(&sent.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&sent.packets.to_be_bytes());
            out.extend_from_slice(&sent.octets.to_be_bytes());
        } else {
            header(out, count, PT_RR, 1 + 6 * usize::from(count));
            out.extend_from_slice(&self.ssrc.to_be_bytes());
        }
        if let Some(b) = block {
            out.extend_from_slice(&b.ssrc.to_be_bytes());
            out.push(b.fraction_lost);
            out.extend_from_slice(&b.total_lost.to_be_bytes()[1..]);
            for word in [
                b.last_sequence_number,
                b.jitter,
                b.last_sender_report,
                b.delay,
            ] {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        self.packets_at_last_report = sent.packets;
        // SDES: one chunk, the CNAME item, then at least one zero octet up
        // to the next 32-bit boundary.
        let cname = &self.cname[..self.cname.len().min(255)];
        let chunk = 4 + 2 + cname.len();
        let padded = (chunk + 1).div_ceil(4) * 4;
        header(out, 1, PT_SDES, padded / 4);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(SDES_CNAME);
        out.push(cname.len() as u8);
        out.extend_from_slice(cname);
        out.resize(out.len() + padded - chunk, 0);
        if bye {
            header(out, 1, PT_BYE, 1);
            out.extend_from_slice(&self.ssrc.to_be_bytes());
        }
        self.counters.sent += 1;
    }

    /// The report block about the stream we receive, for this interval.
    fn block(&mut self, now: Instant) -> Option<ReportBlock> {
        let r = self.reception.as_mut()?;
        let max = r.seq.max_extended()?;
        let expected = max + 1 - r.base;
        let lost = expected as i64 - r.received as i64;
        let expected_interval = expected - r.expected_prior;
        let received_interval = r.received - r.received_prior;
        r.expected_prior = expected;
        r.received_prior = r.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        // Keep the newest snapshot at least a window old, and what follows.
        while r.history.len() > 1 && r.history[1].0 + LOSS_WINDOW <= now {
            r.history.pop_front();
        }
        if let Some(&(_, e0, r0)) = r.history.front() {
            let (de, dr) = (expected.saturating_sub(e0), r.received.saturating_sub(r0));
            r.window_lost = if de == 0 {
                0.0
            } else {
                de.saturating_sub(dr) as f64 / de as f64
            };
        }
        r.history.push_back((now, expected, r.received));
        let (lsr, dlsr) = match r.last_sr {
            Some((lsr, at)) => {
                let held = now.saturating_duration_since(at).as_secs_f64();
                (lsr, (held * 65536.0).min(f64::from(u32::MAX)) as u32)
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: r.ssrc,
            fraction_lost: fraction,
            // 24 bits, signed (RFC 3550 §6.4.1), clamped.
            total_lost: (lost.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32) & 0x00ff_ffff,
            // The tracker's numbers start one cycle up; RTCP's at cycle 0.
            last_sequence_number: max.wrapping_sub(1 << 16) as u32,
            jitter: r.jitter.min(f64::from(u32::MAX)) as u32,
            last_sender_report: lsr,
            delay: dlsr,
        })
    }

    /// Our figures now.
    pub fn figures(&self) -> Figures {
        let (lost, jitter_ms) = self.reception.as_ref().map_or((0.0, 0.0), |r| {
            (r.window_lost, r.jitter * 1000.0 / self.rate)
        });
        Figures {
            lost,
            jitter_ms,
            remote: self.remote,
            rtt: self.rtt,
        }
    }

    /// RTP from the media source has arrived.
    pub fn receiving(&self) -> bool {
        self.reception.is_some()
    }

    /// The far end said BYE.
    pub fn bye_heard(&self) -> bool {
        self.bye_heard
    }

    pub fn counters(&self) -> RtcpCounters {
        self.counters
    }

    /// NTP time at `now`.
    fn ntp(&self, now: Instant) -> u64 {
        let (at, ntp) = self.anchor;
        let since = now.saturating_duration_since(at);
        ntp.wrapping_add(ntp_from_duration(since))
    }

    /// RFC 3550 §6.3.1: `base` times a uniform factor in [0.5, 1.5], over
    /// the compensation. Each leg is a two-party session, so the minimum
    /// interval always wins over the bandwidth share.
    fn interval(&mut self, base: Duration) -> Duration {
        // xorshift64: reproducible under a seed, enough to spread reports.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64((0.5 + u) / COMPENSATION)
    }
}

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const PT_BYE: u8 = 203;
const SDES_CNAME: u8 = 1;

/// An RTCP header: version 2, `count`, `pt`, and the length of the
/// packet in 32-bit words after this one.
fn header(out: &mut Vec<u8>, count: u8, pt: u8, words: usize) {
    out.push(0x80 | count);
    out.push(pt);
    out.extend_from_slice(&(words as u16).to_be_bytes());
}

fn ntp_from_unix(d: Duration) -> u64 {
    ((d.as_secs() + NTP_UNIX_OFFSET) << 32) | ntp_fraction(d)
}

fn ntp_from_duration(d: Duration) -> u64 {
    (d.as_secs() << 32) | ntp_fraction(d)
}

fn ntp_fraction(d: Duration) -> u64 {
    (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000
}

/// Octets in a report block.
const BLOCK: usize = 24;

/// A report block (RFC 3550 §6.4.1), as we write and read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReportBlock {
    ssrc: u32,
    fraction_lost: u8,
    /// 24 bits, signed.
    total_lost: u32,
    last_sequence_number: u32,
    jitter: u32,
    last_sender_report: u32,
    delay: u32,
}

impl ReportBlock {
    /// From [`BLOCK`] octets.
    fn read(b: &[u8]) -> ReportBlock {
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b.get(4).copied().unwrap_or(0),
            total_lost: be32(b, 4) & 0x00ff_ffff,
            last_sequence_number: be32(b, 8),
            jitter: be32(b, 12),
            last_sender_report: be32(b, 16),
            delay: be32(b, 20),
        }
    }
}

/// The big-endian word at `at`, or 0 past the end (callers check lengths).
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|w| w.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// One packet of a compound, as much of it as confgate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Sr {
        ssrc: u32,
        ntp: u64,
        blocks: &'a [u8],
    },
    Rr {
        ssrc: u32,
        blocks: &'a [u8],
    },
    Bye {
        sources: &'a [u8],
    },
    /// SDES, APP, feedback, XR, ...: well framed, not read.
    Other,
}

/// The packets of a compound RTCP datagram, each checked as it is split
/// off (RFC 3550 A.2): version 2; a length that stays inside the datagram;
/// padding only on the last packet, and no more than its body; report and
/// source counts that fit their packet. Read by hand: the `rtcp` crate
/// panics on some malformed feedback packets (fuzzing found one), and only
/// SR, RR and BYE are read here anyway. After an error it yields nothing.
struct Parts<'a>(&'a [u8]);

impl<'a> Iterator for Parts<'a> {
    type Item = Result<Part<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let split = split_part(self.0);
        self.0 = match split {
            Ok((_, rest)) => rest,
            Err(_) => &[],
        };
        Some(split.map(|(part, _)| part))
    }
}

fn split_part(bytes: &[u8]) -> Result<(Part<'_>, &[u8]), RtcpError> {
    let bad = RtcpError::Malformed;
    let [first, pt, l0, l1] = *bytes.get(..4).ok_or(bad.clone())? else {
        return Err(bad);
    };
    if first >> 6 != 2 {
        return Err(bad);
    }
    let count = usize::from(first & 0x1f);
    let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
    let packet = bytes.get(..len).ok_or(bad.clone())?;
    let rest = bytes.get(len..).unwrap_or(&[]);
    let mut body = packet.get(4..).unwrap_or(&[]);
    if first & 0x20 != 0 {
        let pad = usize::from(packet.last().copied().unwrap_or(0));
        if !rest.is_empty() || pad == 0 || pad > body.len() {
            return Err(bad);
        }
        body = &body[..body.len() - pad];
    }
    let part = match pt {
        PT_SR => Part::Sr {
            ssrc: be32(body, 0),
            ntp: u64::from(be32(body, 4)) << 32 | u64::from(be32(body, 8)),
            blocks: body.get(24..24 + BLOCK * count).ok_or(bad)?,
        },
        PT_RR => Part::Rr {
            ssrc: be32(body, 0),
            blocks: body.get(4..4 + BLOCK * count).ok_or(bad)?,
        },
        PT_BYE => Part::Bye {
            sources: body.get(..4 * count).ok_or(bad)?,
        },
        _ => Part::Other,
    };
    Ok((part, rest))
}

/// Whether a datagram on an RTP port is RTCP (RFC 5761 §4).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8
        && datagram[0] >> 6 == 2
        && super::packet::RTCP_SECOND_BYTE.contains(&datagram[1])
}

#[cfg(test)]
#[path = "rtcp_tests.rs"]
mod tests;
