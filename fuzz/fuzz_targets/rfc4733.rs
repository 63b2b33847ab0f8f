//! RFC 4733 telephone-events: packets parsed, their events fed to the
//! receiver with timeouts between them.
#![no_main]
#![allow(clippy::disallowed_methods)] // the clock's starting point

use std::time::{Duration, Instant};

use confgate::dtmf::rfc4733::EventReceiver;
use confgate::rtp::packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut rx = EventReceiver::new(101);
    let mut out = Vec::new();
    let mut now = t0;
    // Datagrams: a length byte, then the bytes.
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, after) = tail.split_at(n);
        rest = after;
        now += Duration::from_millis(u64::from(*len % 64));
        if let Ok(p) = packet::parse(datagram) {
            rx.on_packet(
                p.pt,
                p.ssrc,
                p.seq,
                p.timestamp,
                p.marker,
                p.payload,
                now,
                &mut out,
            );
        }
        if let Some(deadline) = rx.next_deadline() {
            if deadline <= now + Duration::from_millis(100) {
                rx.on_timeout(deadline.max(now), &mut out);
            }
        }
    }
    rx.on_timeout(now + Duration::from_secs(10), &mut out);
    for press in &out {
        assert!("0123456789*#ABCD".contains(press.digit), "{press:?}");
    }
});
