//! Tests for [`super::SourceLearning`], on a virtual clock: a base
//! `Instant` plus durations, packets 20 ms apart.
#![allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock

use super::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const PTIME: Duration = Duration::from_millis(20);
const N: u32 = DEFAULT_PROBATION;

/// The address the SDP names, on a phone with a public address.
const PHONE: &str = "198.51.100.10:4000";
/// Where that phone's SIP request came from.
const PHONE_SIP_IP: &str = "198.51.100.10";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ACCEPT: Verdict = Verdict::Accept { switched: false };
const SWITCH: Verdict = Verdict::Accept { switched: true };
const PROBATION: Verdict = Verdict::Foreign(ForeignReason::Probation);
const WRONG_IP: Verdict = Verdict::Foreign(ForeignReason::WrongIp);
const ACTIVE: Verdict = Verdict::Foreign(ForeignReason::SourceActive);

/// A virtual clock: every packet advances it by one packet time.
struct Clock {
    now: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            now: Instant::now(),
        }
    }

    fn tick(&mut self) -> Instant {
        self.now += PTIME;
        self.now
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// One sender: an address, an SSRC and the next sequence number.
struct Sender {
    addr: SocketAddr,
    ssrc: u32,
    seq: u16,
}

impl Sender {
    fn new(addr: &str, ssrc: u32, seq: u16) -> Self {
        Self {
            addr: sa(addr),
            ssrc,
            seq,
        }
    }

    /// Send the next in-sequence packet.
    fn send(&mut self, l: &mut SourceLearning, clock: &mut Clock) -> Verdict {
        let v = l.on_packet(self.addr, self.ssrc, self.seq, clock.tick());
        self.seq = self.seq.wrapping_add(1);
        v
    }

    /// Send `n` in-sequence packets and return their verdicts.
    fn burst(&mut self, l: &mut SourceLearning, clock: &mut Clock, n: u32) -> Vec<Verdict> {
        (0..n).map(|_| self.send(l, clock)).collect()
    }
}

/// `n - 1` probation refusals, then the switch.
fn learned_run(n: u32) -> Vec<Verdict> {
    let mut v = vec![PROBATION; n as usize - 1];
    v.push(SWITCH);
    v
}

fn strict_phone() -> SourceLearning {
    SourceLearning::new(Some(sa(PHONE)), ip(PHONE_SIP_IP), true)
}

#[test]
fn destination_before_any_packet_is_the_signalled_address() {
    assert_eq!(strict_phone().destination(), Some(sa(PHONE)));
    let on_hold = SourceLearning::new(None, ip(PHONE_SIP_IP), true);
    assert_eq!(on_hold.destination(), None);
    assert_eq!(on_hold.counters(), ForeignCounters::default());
}

#[test]
fn phone_from_signalled_address_is_accepted_on_its_first_packet() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    let mut phone = Sender::new(PHONE, 0x1111, 100);
    assert_eq!(
        phone.send(&mut l, &mut clock),
        ACCEPT,
        "destination unchanged"
    );
    assert_eq!(l.destination(), Some(sa(PHONE)));
    for v in phone.burst(&mut l, &mut clock, 50) {
        assert_eq!(v, ACCEPT);
    }
    assert_eq!(l.counters().total(), 0);
}

#[test]
fn signalled_address_is_accepted_whatever_its_ssrc_and_seq() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..100 {
        let v = l.on_packet(sa(PHONE), rng.random(), rng.random(), clock.tick());
        assert_eq!(v, ACCEPT);
    }
}

#[test]
fn signalled_address_is_accepted_even_from_an_ip_other_than_signalling() {
    // The SIP request came through a proxy; the SDP names the phone itself.
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa(PHONE)), ip("192.0.2.99"), true);
    let mut phone = Sender::new(PHONE, 7, 7);
    assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
}

#[test]
fn stranger_on_another_ip_is_never_learned_when_strict() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    let mut stranger = Sender::new("203.0.113.66:5000", 0xBAD, 1);
    for v in stranger.burst(&mut l, &mut clock, 500) {
        assert_eq!(v, WRONG_IP);
    }
    assert_eq!(l.destination(), Some(sa(PHONE)));
    assert_eq!(l.counters().wrong_ip, 500);
    // Still refused after the phone has come and gone quiet.
    let mut phone = Sender::new(PHONE, 0x1111, 9);
    assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
    clock.advance(DEFAULT_QUIET_PERIOD * 10);
    for v in stranger.burst(&mut l, &mut clock, 100) {
        assert_eq!(v, WRONG_IP);
    }
    assert_eq!(l.destination(), Some(sa(PHONE)));
}

#[test]
fn same_ip_stranger_needs_n_in_sequence_packets_and_loses_to_the_phone() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    // Same IP as the signalling, another port, before the phone's first packet.
    let mut stranger = Sender::new("198.51.100.10:4002", 0xBAD, 65000);
    let verdicts = stranger.burst(&mut l, &mut clock, N);
    assert_eq!(verdicts, learned_run(N));
    assert_eq!(l.destination(), Some(sa("198.51.100.10:4002")));
    assert_eq!(stranger.send(&mut l, &mut clock), ACCEPT);
    // The phone's first packet takes the media back at once.
    let mut phone = Sender::new(PHONE, 0x1111, 3);
    assert_eq!(phone.send(&mut l, &mut clock), SWITCH);
    assert_eq!(l.destination(), Some(sa(PHONE)));
    // From then on the stranger is refused while the phone talks.
    for _ in 0..200 {
        assert_eq!(stranger.send(&mut l, &mut clock), ACTIVE);
        assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
    }
    assert_eq!(l.destination(), Some(sa(PHONE)));
    assert_eq!(l.counters().source_active, 200);
}

#[test]
fn stranger_on_the_signalled_ip_is_a_candidate_when_strict() {
    // The SIP request came from a proxy, so only the signalled IP qualifies.
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa(PHONE)), ip("192.0.2.99"), true);
    let mut other_port = Sender::new("198.51.100.10:4010", 5, 5);
    assert_eq!(other_port.burst(&mut l, &mut clock, N), learned_run(N));
    let mut elsewhere = Sender::new("203.0.113.66:4000", 5, 5);
    clock.advance(DEFAULT_QUIET_PERIOD);
    assert_eq!(elsewhere.send(&mut l, &mut clock), WRONG_IP);
}

#[test]
fn nat_source_is_learned_after_n_in_sequence_packets_and_not_before() {
    let mut clock = Clock::new();
    let signalled = sa("192.168.1.5:4000");
    let mut l = SourceLearning::new(Some(signalled), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 0xC0FFEE, 1000);
    for k in 1..N {
        assert_eq!(nat.send(&mut l, &mut clock), PROBATION, "packet {k}");
        assert_eq!(
            l.destination(),
            Some(signalled),
            "not learned at packet {k}"
        );
    }
    assert_eq!(nat.send(&mut l, &mut clock), SWITCH);
    assert_eq!(l.destination(), Some(sa("203.0.113.7:31000")));
    for v in nat.burst(&mut l, &mut clock, 100) {
        assert_eq!(v, ACCEPT);
    }
    assert_eq!(l.counters().probation, u64::from(N - 1));
    assert_eq!(l.counters().total(), u64::from(N - 1));
}

#[test]
fn learned_source_is_accepted_after_changing_ssrc_and_seq() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 1);
    nat.burst(&mut l, &mut clock, N);
    let restarted = l.on_packet(nat.addr, 0xDEAD, 40_000, clock.tick());
    assert_eq!(restarted, ACCEPT);
}

#[test]
fn random_ssrc_spray_is_never_learned() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut rng = StdRng::seed_from_u64(14_099);
    let from = sa("203.0.113.7:31000");
    let mut seq: u16 = rng.random();
    let mut last_ssrc = None;
    for _ in 0..10_000 {
        // A fresh SSRC on every packet (never the previous one), in sequence.
        let ssrc = loop {
            let s: u32 = rng.random();
            if Some(s) != last_ssrc {
                break s;
            }
        };
        last_ssrc = Some(ssrc);
        assert_eq!(l.on_packet(from, ssrc, seq, clock.tick()), PROBATION);
        seq = seq.wrapping_add(1);
    }
    assert_eq!(l.destination(), Some(sa("192.168.1.5:4000")));
    assert_eq!(l.counters().probation, 10_000);
}

#[test]
fn random_seq_spray_is_never_learned() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut rng = StdRng::seed_from_u64(99);
    let from = sa("203.0.113.7:31000");
    let mut last: u16 = rng.random();
    for _ in 0..10_000 {
        // A random sequence number, never the one after the previous.
        let seq = loop {
            let s: u16 = rng.random();
            if s != last.wrapping_add(1) {
                break s;
            }
        };
        last = seq;
        assert_eq!(l.on_packet(from, 0xABCD, seq, clock.tick()), PROBATION);
    }
    assert_eq!(l.destination(), Some(sa("192.168.1.5:4000")));
}

#[test]
fn random_address_spray_is_never_learned() {
    // Non-strict, so every packet reaches probation; ports hop every packet.
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa(PHONE)), ip(PHONE_SIP_IP), false);
    let mut rng = StdRng::seed_from_u64(5);
    let mut seq = 0u16;
    let mut last_port = 0u16;
    for _ in 0..10_000 {
        let port = loop {
            let p: u16 = rng.random_range(1024..=65535);
            if p != last_port && p != 4000 {
                break p;
            }
        };
        last_port = port;
        let from = SocketAddr::new(ip("203.0.113.66"), port);
        assert_eq!(l.on_packet(from, 1, seq, clock.tick()), PROBATION);
        seq = seq.wrapping_add(1);
    }
    assert_eq!(l.destination(), Some(sa(PHONE)));
}

#[test]
fn seq_wraparound_counts_as_in_sequence() {
    for first in [65535 - (N as u16 - 1), 65534, 65535] {
        let mut clock = Clock::new();
        let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
        let mut nat = Sender::new("203.0.113.7:31000", 42, first);
        assert_eq!(
            nat.burst(&mut l, &mut clock, N),
            learned_run(N),
            "from {first}"
        );
    }
}

#[test]
fn broken_run_restarts_with_the_breaking_packet() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let from = sa("203.0.113.7:31000");
    let mut pkt = |ssrc, seq| l.on_packet(from, ssrc, seq, clock.tick());
    // A gap, a duplicate and a step back each restart the run.
    for (ssrc, seq) in [
        (1, 10),
        (1, 11),
        (1, 13),
        (1, 14),
        (1, 14),
        (1, 15),
        (1, 14),
    ] {
        assert_eq!(pkt(ssrc, seq), PROBATION);
    }
    // Another SSRC with the next seq restarts it too.
    assert_eq!(pkt(2, 15), PROBATION);
    // The run that started at (2, 15) completes with N - 1 more packets.
    for seq in 16..(16 + N as u16 - 2) {
        assert_eq!(pkt(2, seq), PROBATION);
    }
    assert_eq!(pkt(2, 16 + N as u16 - 2), SWITCH);
}

#[test]
fn interleaved_senders_restart_each_others_runs() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut a = Sender::new("203.0.113.7:31000", 1, 100);
    let mut b = Sender::new("203.0.113.7:31002", 1, 100);
    for _ in 0..1000 {
        assert_eq!(a.send(&mut l, &mut clock), PROBATION);
        assert_eq!(b.send(&mut l, &mut clock), PROBATION);
    }
    assert_eq!(l.destination(), Some(sa("192.168.1.5:4000")));
}

#[test]
fn wrong_ip_packets_do_not_disturb_a_run() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    let mut stranger = Sender::new("192.0.2.50:31000", 1, 100);
    let mut got = Vec::new();
    for _ in 0..N {
        assert_eq!(stranger.send(&mut l, &mut clock), WRONG_IP);
        got.push(nat.send(&mut l, &mut clock));
    }
    assert_eq!(got, learned_run(N));
    assert_eq!(l.counters().wrong_ip, u64::from(N));
}

#[test]
fn in_sequence_stranger_never_takes_over_a_talking_phone() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    let mut phone = Sender::new(PHONE, 0x1111, 500);
    let mut stranger = Sender::new("198.51.100.10:4002", 0xBAD, 0);
    assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
    // The stranger sprays ten packets per phone packet for a minute.
    for _ in 0..3000 {
        for _ in 0..10 {
            let v = l.on_packet(stranger.addr, stranger.ssrc, stranger.seq, clock.now);
            stranger.seq = stranger.seq.wrapping_add(1);
            assert_eq!(v, ACTIVE);
        }
        assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
    }
    assert_eq!(l.destination(), Some(sa(PHONE)));
    assert_eq!(l.counters().source_active, 30_000);
    assert_eq!(l.counters().probation, 0);
}

#[test]
fn learned_nat_source_is_kept_while_active_and_replaced_after_quiet() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    assert_eq!(nat.burst(&mut l, &mut clock, N), learned_run(N));
    // A new NAT mapping (the router rebooted) while the old one still sends.
    let mut remapped = Sender::new("203.0.113.7:31999", 2, 7);
    for _ in 0..100 {
        assert_eq!(remapped.send(&mut l, &mut clock), ACTIVE);
        assert_eq!(nat.send(&mut l, &mut clock), ACCEPT);
    }
    assert_eq!(l.destination(), Some(sa("203.0.113.7:31000")));
    // The old mapping falls silent; just short of the quiet period the new
    // one is still refused, once the period has passed it is on probation.
    let last = clock.now;
    let early = last + DEFAULT_QUIET_PERIOD - Duration::from_millis(1);
    assert_eq!(l.on_packet(remapped.addr, 2, 500, early), ACTIVE);
    clock.now = last + DEFAULT_QUIET_PERIOD - PTIME;
    assert_eq!(remapped.burst(&mut l, &mut clock, N), learned_run(N));
    assert_eq!(l.destination(), Some(sa("203.0.113.7:31999")));
    // And now the old mapping is the stranger.
    assert_eq!(nat.send(&mut l, &mut clock), ACTIVE);
}

#[test]
fn quiet_period_ends_exactly_at_its_length() {
    let t0 = Instant::now();
    let mut l = SourceLearning::new(Some(sa(PHONE)), ip(PHONE_SIP_IP), true).with_probation(1);
    assert_eq!(l.on_packet(sa(PHONE), 1, 1, t0), ACCEPT);
    let other = sa("198.51.100.10:4002");
    let just_before = t0 + DEFAULT_QUIET_PERIOD - Duration::from_nanos(1);
    assert_eq!(l.on_packet(other, 2, 1, just_before), ACTIVE);
    assert_eq!(l.on_packet(other, 2, 2, t0 + DEFAULT_QUIET_PERIOD), SWITCH);
}

#[test]
fn clock_reading_before_the_last_packet_counts_as_active() {
    let t0 = Instant::now() + Duration::from_secs(10);
    let mut l = strict_phone();
    assert_eq!(l.on_packet(sa(PHONE), 1, 1, t0), ACCEPT);
    let earlier = t0 - Duration::from_secs(5);
    assert_eq!(l.on_packet(sa("198.51.100.10:4002"), 2, 1, earlier), ACTIVE);
}

#[test]
fn phone_wins_back_from_a_learned_nat_source_whenever_it_sends() {
    // The SDP address turns out to be reachable after all.
    let mut clock = Clock::new();
    let signalled = sa("192.168.1.5:4000");
    let mut l = SourceLearning::new(Some(signalled), ip("192.168.1.5"), true);
    let mut other_port = Sender::new("192.168.1.5:4444", 9, 9);
    assert_eq!(other_port.burst(&mut l, &mut clock, N), learned_run(N));
    let mut phone = Sender::new("192.168.1.5:4000", 1, 1);
    assert_eq!(phone.send(&mut l, &mut clock), SWITCH);
    assert_eq!(l.destination(), Some(signalled));
    assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
    assert_eq!(other_port.send(&mut l, &mut clock), ACTIVE);
}

#[test]
fn phone_packet_during_a_run_ends_the_run() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    let mut phone = Sender::new(PHONE, 1, 1);
    let mut stranger = Sender::new("198.51.100.10:4002", 2, 2);
    assert_eq!(
        stranger.burst(&mut l, &mut clock, N - 1),
        vec![PROBATION; N as usize - 1]
    );
    assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
    // The phone then goes quiet; the stranger's next packet starts afresh.
    clock.advance(DEFAULT_QUIET_PERIOD);
    assert_eq!(stranger.send(&mut l, &mut clock), PROBATION);
    assert_eq!(l.destination(), Some(sa(PHONE)));
    assert_eq!(stranger.burst(&mut l, &mut clock, N - 1), {
        let mut v = vec![PROBATION; N as usize - 2];
        v.push(SWITCH);
        v
    });
}

#[test]
fn renegotiated_to_a_new_address_starts_over() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    nat.burst(&mut l, &mut clock, N);
    assert_eq!(l.destination(), Some(sa("203.0.113.7:31000")));
    // A re-INVITE moves the media to a new private address.
    l.renegotiated(Some(sa("192.168.1.5:5000")));
    assert_eq!(
        l.destination(),
        Some(sa("192.168.1.5:5000")),
        "learned source forgotten"
    );
    // The old source is on probation like anyone else, without waiting.
    assert_eq!(nat.burst(&mut l, &mut clock, N), learned_run(N));
    // The new signalled address wins whenever it sends; the old one is a
    // stranger now.
    assert_eq!(
        l.on_packet(sa("192.168.1.5:5000"), 3, 3, clock.tick()),
        SWITCH
    );
    assert_eq!(
        l.on_packet(sa("192.168.1.5:4000"), 3, 4, clock.tick()),
        ACTIVE
    );
}

#[test]
fn renegotiated_drops_a_run_in_progress() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    nat.burst(&mut l, &mut clock, N - 1);
    l.renegotiated(Some(sa("192.168.1.5:5000")));
    assert_eq!(nat.send(&mut l, &mut clock), PROBATION, "run restarted");
}

#[test]
fn renegotiated_keeps_the_source_when_it_is_the_new_signalled_address() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    nat.burst(&mut l, &mut clock, N);
    // The phone learned its public address (STUN) and now signals it.
    l.renegotiated(Some(sa("203.0.113.7:31000")));
    assert_eq!(l.destination(), Some(sa("203.0.113.7:31000")));
    assert_eq!(nat.send(&mut l, &mut clock), ACCEPT);
    // Still active: a stranger on the same IP is held off.
    let stranger = sa("203.0.113.7:31002");
    assert_eq!(l.on_packet(stranger, 5, 5, clock.tick()), ACTIVE);
}

#[test]
fn renegotiated_with_the_same_address_keeps_the_learned_source() {
    let mut clock = Clock::new();
    let signalled = sa("192.168.1.5:4000");
    let mut l = SourceLearning::new(Some(signalled), ip("203.0.113.7"), true);
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    nat.burst(&mut l, &mut clock, N);
    l.renegotiated(Some(signalled)); // a session refresh
    assert_eq!(l.destination(), Some(sa("203.0.113.7:31000")));
    assert_eq!(nat.send(&mut l, &mut clock), ACCEPT);
}

#[test]
fn renegotiated_to_hold_and_back() {
    let mut clock = Clock::new();
    let mut l = strict_phone();
    let mut phone = Sender::new(PHONE, 1, 1);
    phone.send(&mut l, &mut clock);
    // Hold with c=0.0.0.0: nowhere to send.
    l.renegotiated(None);
    assert_eq!(l.destination(), None);
    // Strict still holds with no signalled address: only the signalling IP.
    let mut stranger = Sender::new("203.0.113.66:4000", 2, 2);
    assert_eq!(stranger.send(&mut l, &mut clock), WRONG_IP);
    assert_eq!(phone.burst(&mut l, &mut clock, N), learned_run(N));
    // Unhold names the phone again: it is the source and still active.
    l.renegotiated(Some(sa(PHONE)));
    assert_eq!(l.destination(), Some(sa(PHONE)));
    assert_eq!(phone.send(&mut l, &mut clock), ACCEPT);
}

#[test]
fn non_strict_allows_a_candidate_on_another_ip() {
    let mut clock = Clock::new();
    // A carrier whose media comes from a different host than its signalling.
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("198.51.100.1"), false);
    let mut media = Sender::new("203.0.113.200:16384", 0x5150, 9);
    let got = media.burst(&mut l, &mut clock, N);
    assert_eq!(got, learned_run(N));
    assert_eq!(l.destination(), Some(sa("203.0.113.200:16384")));
    assert_eq!(l.counters().wrong_ip, 0);
    // Non-strict does not mean unprotected: while it sends, nobody else gets in.
    let mut stranger = Sender::new("192.0.2.50:9999", 1, 1);
    for _ in 0..100 {
        assert_eq!(stranger.send(&mut l, &mut clock), ACTIVE);
        assert_eq!(media.send(&mut l, &mut clock), ACCEPT);
    }
}

#[test]
fn strict_refuses_the_same_sender_that_non_strict_would_learn() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("198.51.100.1"), true);
    let mut media = Sender::new("203.0.113.200:16384", 0x5150, 9);
    assert_eq!(
        media.burst(&mut l, &mut clock, N),
        vec![WRONG_IP; N as usize]
    );
}

#[test]
fn counters_count_per_reason() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mut far = Sender::new("192.0.2.50:1000", 1, 1);
    let mut nat = Sender::new("203.0.113.7:31000", 2, 2);
    let mut near = Sender::new("203.0.113.7:31002", 3, 3);
    far.burst(&mut l, &mut clock, 3);
    nat.burst(&mut l, &mut clock, N);
    near.burst(&mut l, &mut clock, 5);
    nat.burst(&mut l, &mut clock, 10);
    let c = l.counters();
    assert_eq!(
        c,
        ForeignCounters {
            wrong_ip: 3,
            probation: u64::from(N - 1),
            source_active: 5,
        }
    );
    assert_eq!(c.total(), 3 + u64::from(N - 1) + 5);
    assert_eq!(c.get(ForeignReason::WrongIp), 3);
    assert_eq!(c.get(ForeignReason::Probation), u64::from(N - 1));
    assert_eq!(c.get(ForeignReason::SourceActive), 5);
}

#[test]
fn probation_and_quiet_period_can_be_set() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true)
        .with_probation(8)
        .with_quiet_period(Duration::from_millis(500));
    let mut nat = Sender::new("203.0.113.7:31000", 1, 100);
    assert_eq!(nat.burst(&mut l, &mut clock, 8), learned_run(8));
    clock.advance(Duration::from_millis(500));
    let mut other = Sender::new("203.0.113.7:31002", 1, 100);
    assert_eq!(other.burst(&mut l, &mut clock, 8), learned_run(8));
    // Zero packets is taken as one: learned on the first packet.
    let mut l = SourceLearning::new(None, ip("203.0.113.7"), true).with_probation(0);
    assert_eq!(nat.send(&mut l, &mut clock), SWITCH);
    assert!(SWITCH.is_accepted() && ACCEPT.is_accepted());
    assert!(!PROBATION.is_accepted());
}

#[test]
fn ipv4_mapped_addresses_match_their_ipv4_form() {
    // A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d.
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("192.168.1.5:4000")), ip("203.0.113.7"), true);
    let mapped_phone = sa("[::ffff:192.168.1.5]:4000");
    assert_eq!(l.on_packet(mapped_phone, 1, 1, clock.tick()), ACCEPT);
    assert_eq!(l.destination(), Some(mapped_phone), "sent back as received");
    clock.advance(DEFAULT_QUIET_PERIOD);
    let mut nat = Sender::new("[::ffff:203.0.113.7]:31000", 2, 2);
    assert_eq!(nat.burst(&mut l, &mut clock, N), learned_run(N));
    let mut far = Sender::new("[::ffff:192.0.2.50]:31000", 2, 2);
    clock.advance(DEFAULT_QUIET_PERIOD);
    assert_eq!(far.send(&mut l, &mut clock), WRONG_IP);
}

#[test]
fn ipv6_call() {
    let mut clock = Clock::new();
    let mut l = SourceLearning::new(Some(sa("[2001:db8::5]:4000")), ip("2001:db8::5"), true);
    assert_eq!(
        l.on_packet(sa("[2001:db8::5]:4000"), 1, 1, clock.tick()),
        ACCEPT
    );
    clock.advance(DEFAULT_QUIET_PERIOD);
    let mut far = Sender::new("[2001:db8::66]:4000", 2, 2);
    assert_eq!(far.send(&mut l, &mut clock), WRONG_IP);
    let mut near = Sender::new("[2001:db8::5]:4002", 2, 2);
    assert_eq!(near.burst(&mut l, &mut clock, N), learned_run(N));
}
