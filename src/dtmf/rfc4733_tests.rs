use super::*;

const PT: u8 = 101;
const SSRC: u32 = 0x1234_5678;

fn payload(code: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [code, if end { 0x8a } else { 0x0a }, d[0], d[1]]
}

struct Harness {
    rx: EventReceiver,
    t0: Instant,
    out: Vec<Press>,
    seq: u16,
}

impl Harness {
    fn new() -> Self {
        Self {
            rx: EventReceiver::new(PT),
            t0: Instant::now(),
            out: Vec::new(),
            seq: 1000,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    #[allow(clippy::too_many_arguments)]
    fn raw(&mut self, pt: u8, ssrc: u32, seq: u16, ts: u32, m: bool, p: &[u8], ms: u64) {
        let now = self.at(ms);
        self.rx
            .on_packet(pt, ssrc, seq, ts, m, p, now, &mut self.out);
    }

    fn ev(&mut self, ts: u32, code: u8, end: bool, dur: u16, ms: u64) {
        self.seq = self.seq.wrapping_add(1);
        let p = payload(code, end, dur);
        self.raw(PT, SSRC, self.seq, ts, false, &p, ms);
    }

    /// A complete, well-formed press: start (marker), two updates, 3 ends.
    fn press(&mut self, ts: u32, code: u8, ms: u64) {
        self.seq = self.seq.wrapping_add(1);
        self.raw(PT, SSRC, self.seq, ts, true, &payload(code, false, 160), ms);
        self.ev(ts, code, false, 320, ms + 20);
        self.ev(ts, code, false, 480, ms + 40);
        for i in 0..3 {
            self.ev(ts, code, true, 640, ms + 60 + i);
        }
    }

    fn tick(&mut self, ms: u64) {
        let now = self.at(ms);
        self.rx.on_timeout(now, &mut self.out);
    }

    fn digits(&self) -> String {
        self.out.iter().map(|p| p.digit).collect()
    }
}

#[test]
fn digit_mapping_covers_0_to_15_only() {
    let all: String = (0..16).filter_map(event_digit).collect();
    assert_eq!(all, "0123456789*#ABCD");
    assert_eq!(event_digit(16), None);
    assert_eq!(event_digit(255), None);
}

#[test]
fn reports_on_first_end_packet_with_its_duration() {
    let mut h = Harness::new();
    h.ev(8000, 5, false, 0, 0);
    h.ev(8000, 5, false, 320, 20);
    assert!(h.out.is_empty());
    h.ev(8000, 5, true, 640, 40);
    assert_eq!(
        h.out,
        vec![Press {
            digit: '5',
            timestamp: 8000,
            duration: 640,
            ended: true
        }]
    );
    assert_eq!(h.rx.next_deadline(), None);
}

#[test]
fn repeated_end_packets_same_seq_reported_once() {
    let mut h = Harness::new();
    h.ev(100, 1, false, 160, 0);
    let p = payload(1, true, 480);
    for i in 0..3 {
        h.raw(PT, SSRC, 7991, 100, false, &p, 40 + i);
    }
    assert_eq!(h.digits(), "1");
}

#[test]
fn repeated_end_packets_distinct_seq_reported_once() {
    let mut h = Harness::new();
    h.press(100, 1, 0);
    h.tick(10_000);
    assert_eq!(h.digits(), "1");
    assert!(h.out[0].ended);
}

#[test]
fn same_digit_twice_is_two_presses() {
    let mut h = Harness::new();
    h.press(1000, 1, 0);
    h.press(2000, 1, 200);
    h.press(3000, 2, 400);
    h.press(4000, 2, 600);
    assert_eq!(h.digits(), "1122");
}

#[test]
fn other_payload_types_ignored() {
    let mut h = Harness::new();
    h.raw(0, SSRC, 1, 100, true, &payload(1, true, 160), 0);
    h.raw(96, SSRC, 2, 100, true, &payload(1, true, 160), 0);
    assert!(h.out.is_empty());
    assert_eq!(h.rx.next_deadline(), None);
    let mut rx = EventReceiver::new(120);
    let mut out = Vec::new();
    rx.on_packet(120, 1, 1, 5, false, &payload(11, true, 5), h.t0, &mut out);
    assert_eq!(out[0].digit, '#');
}

#[test]
fn short_payload_and_unknown_events_ignored() {
    let mut h = Harness::new();
    for len in 0..4 {
        h.raw(PT, SSRC, 1, 100, true, &[1, 0x80, 0, 160][..len], 0);
    }
    h.ev(200, 16, true, 160, 0);
    h.ev(300, 200, false, 160, 0);
    assert!(h.out.is_empty());
    assert_eq!(h.rx.next_deadline(), None);
    let long = [3, 0x80, 0, 160, 0xff, 0xff];
    h.raw(PT, SSRC, 2, 400, false, &long, 0);
    assert_eq!(h.digits(), "3");
}

#[test]
fn lost_end_reported_after_timeout() {
    let mut h = Harness::new();
    h.ev(100, 7, false, 160, 0);
    h.ev(100, 7, false, 320, 20);
    assert_eq!(h.rx.next_deadline(), Some(h.at(20) + END_TIMEOUT));
    h.tick(20 + END_TIMEOUT.as_millis() as u64 - 1);
    assert!(h.out.is_empty());
    h.tick(20 + END_TIMEOUT.as_millis() as u64);
    assert_eq!(
        h.out,
        vec![Press {
            digit: '7',
            timestamp: 100,
            duration: 320,
            ended: false
        }]
    );
    assert_eq!(h.rx.next_deadline(), None);
    // The end packet arriving afterwards must not report it again.
    h.ev(100, 7, true, 480, 1000);
    h.tick(5000);
    assert_eq!(h.out.len(), 1);
}

#[test]
fn new_event_reports_unended_open_one_first() {
    let mut h = Harness::new();
    h.ev(100, 4, false, 160, 0);
    h.ev(100, 4, false, 320, 20);
    h.ev(900, 4, false, 160, 100);
    assert_eq!(h.digits(), "4");
    assert!(!h.out[0].ended);
    h.ev(900, 4, true, 320, 120);
    assert_eq!(h.digits(), "44");
    assert!(h.out[1].ended);
}

#[test]
fn late_retransmitted_end_after_new_press_started_not_rereported() {
    let mut h = Harness::new();
    h.press(100, 1, 0);
    h.ev(900, 2, false, 160, 100);
    // Late copy of press 1's end, and a stale update of it.
    h.ev(100, 1, true, 640, 110);
    h.ev(100, 1, false, 480, 111);
    h.ev(900, 2, true, 320, 120);
    assert_eq!(h.digits(), "12");
    // Also when no press is open at the time.
    h.ev(100, 1, true, 640, 200);
    h.ev(900, 2, true, 320, 200);
    h.tick(10_000);
    assert_eq!(h.digits(), "12");
}

#[test]
fn marker_on_every_packet_and_tripled_start() {
    let mut h = Harness::new();
    for ts in [1000u32, 2000] {
        for i in 0..3 {
            h.seq += 1;
            h.raw(PT, SSRC, h.seq, ts, true, &payload(6, false, 80), i);
        }
        for (i, d) in [160u16, 240, 320].into_iter().enumerate() {
            h.seq += 1;
            h.raw(
                PT,
                SSRC,
                h.seq,
                ts,
                true,
                &payload(6, false, d),
                10 + i as u64,
            );
        }
        for i in 0..3 {
            h.seq += 1;
            h.raw(PT, SSRC, h.seq, ts, true, &payload(6, true, 400), 50 + i);
        }
    }
    assert_eq!(h.digits(), "66");
}

#[test]
fn interleaved_audio_and_separate_event_ssrc() {
    let mut h = Harness::new();
    let audio = [0xffu8; 160];
    let ev_ssrc = 0xdead_beef;
    let mut seq = 480u16;
    for (k, code) in [1u8, 2, 1, 1, 11].into_iter().enumerate() {
        let ts = 10_000 + 4000 * k as u32;
        for step in 0..5u16 {
            h.raw(0, SSRC, seq, ts + 160 * step as u32, false, &audio, 0);
            let end = step >= 3;
            let p = payload(code, end, 160 * (step.min(3) + 1));
            h.raw(PT, ev_ssrc, seq + 1, ts, step == 0, &p, 20 * step as u64);
            seq = seq.wrapping_add(2);
        }
    }
    assert_eq!(h.digits(), "1211#");
    assert!(h.out.iter().all(|p| p.ended));
}

#[test]
fn end_without_start_reported_immediately() {
    let mut h = Harness::new();
    h.ev(100, 12, true, 800, 0);
    assert_eq!(h.digits(), "A");
    h.ev(100, 12, true, 800, 1);
    assert_eq!(h.digits(), "A");
}

#[test]
fn timestamp_wraparound() {
    let mut h = Harness::new();
    h.press(u32::MAX - 100, 8, 0);
    h.press(50, 9, 200);
    h.ev(u32::MAX - 100, 8, true, 640, 300);
    assert_eq!(h.digits(), "89");
}

#[test]
fn stray_end_of_older_unseen_press_does_not_close_open_one() {
    let mut h = Harness::new();
    h.ev(5000, 3, false, 160, 0);
    h.ev(4000, 2, true, 640, 5);
    h.ev(4000, 2, false, 480, 6);
    assert_eq!(h.digits(), "2");
    h.ev(5000, 3, true, 320, 20);
    assert_eq!(h.digits(), "23");
}

#[test]
fn timeout_only_fires_when_due_and_is_idempotent() {
    let mut h = Harness::new();
    h.tick(0);
    h.ev(100, 0, false, 160, 0);
    h.tick(100);
    h.ev(100, 0, false, 320, 250);
    h.tick(400);
    assert!(h.out.is_empty());
    h.tick(550);
    h.tick(600);
    assert_eq!(h.digits(), "0");
}

#[test]
fn never_panics_on_arbitrary_input() {
    let mut h = Harness::new();
    let mut x: u32 = 0x9e37_79b9;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..20_000u64 {
        let r = next();
        let len = (r % 7) as usize;
        let bytes = next().to_be_bytes();
        let mut p = [0u8; 6];
        p[..4].copy_from_slice(&bytes);
        p[0] %= 20;
        let pt = if r & 0x100 != 0 { PT } else { (r >> 9) as u8 };
        let ts = next() % 8;
        let ssrc = next() % 3;
        h.raw(pt, ssrc, r as u16, ts, r & 1 != 0, &p[..len], i / 3);
        if r % 5 == 0 {
            h.tick(i / 3 + (r % 500) as u64);
        }
    }
    let far =
        h.t0.checked_add(Duration::from_secs(1 << 40))
            .unwrap_or(h.t0);
    h.rx.on_packet(PT, 1, 1, 1, false, &[1, 0, 0, 1], far, &mut h.out);
    h.rx.on_timeout(h.t0, &mut h.out);
    let _ = h.rx.next_deadline();
}
