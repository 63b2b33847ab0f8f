#![allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock

use super::*;
use bytes::Bytes;
use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::SourceDescription;
use std::time::SystemTime;

const MS: Duration = Duration::from_millis(1);

fn session(ssrc: u32, now: Instant) -> RtcpSession {
    RtcpSession::new(ssrc, "test@confgate", 8000, now, SystemTime::now(), 42)
}

/// Feed `b` RTP packets from `a`'s SSRC, 20 ms apart from `start`, leaving
/// out the sequence numbers in `lose`.
fn stream(b: &mut RtcpSession, ssrc: u32, start: Instant, n: u16, lose: &[u16]) {
    for i in 0..n {
        if !lose.contains(&i) {
            b.on_rtp(
                ssrc,
                1000 + i,
                5000 + u32::from(i) * 160,
                true,
                start + 20 * MS * u32::from(i),
            );
        }
    }
}

fn parse(bytes: &[u8]) -> Vec<Box<dyn Packet + Send + Sync>> {
    rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(bytes)).expect("our RTCP parses")
}

fn due(s: &mut RtcpSession, sent: Sent) -> (Instant, Vec<u8>) {
    let at = s.poll_timeout();
    let mut out = Vec::new();
    assert!(s.handle_timeout(at, sent, &mut out));
    (at, out)
}

#[test]
fn a_receiver_report_carries_the_loss_we_saw_and_the_sender_learns_it() {
    let t = Instant::now();
    let mut a = session(0xA, t);
    let mut b = session(0xB, t);
    assert!(!b.receiving(), "nothing heard yet: nothing to score");
    stream(
        &mut b,
        0xA,
        t,
        100,
        &[10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    );
    assert!(b.receiving());
    let (at, report) = due(&mut b, Sent::default());
    let packets = parse(&report);
    let rr = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .expect("B sent nothing: a receiver report");
    assert_eq!(rr.ssrc, 0xB);
    let block = &rr.reports[0];
    assert_eq!(block.ssrc, 0xA);
    assert_eq!(block.total_lost, 10);
    assert_eq!(block.fraction_lost, (10 * 256 / 100) as u8);
    assert_eq!(block.last_sequence_number, 1099);
    assert_eq!(block.last_sender_report, 0, "no SR from A yet");
    let sdes = packets[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .expect("SDES follows");
    assert_eq!(&sdes.chunks[0].items[0].text[..], b"test@confgate");
    // Our own figure is the loss over about the last 10 s: 10 of 100.
    assert!((b.figures().lost - 0.1).abs() < 1e-9);

    a.on_rtcp(&report, at).expect("A takes B's report");
    let remote = a.figures().remote.expect("A heard about its stream");
    assert_eq!(remote.cumulative_lost, 10);
    assert!((remote.fraction_lost - 0.0977).abs() < 0.001);
    assert_eq!(a.figures().rtt, None, "no SR of A's was echoed");
    // The next interval saw no loss.
    stream(&mut b, 0xA, t + 2000 * MS, 0, &[]);
    for i in 100..150u16 {
        b.on_rtp(
            0xA,
            1000 + i,
            5000 + u32::from(i) * 160,
            true,
            t + 20 * MS * u32::from(i),
        );
    }
    let (_, report) = due(&mut b, Sent::default());
    let packets = parse(&report);
    let rr = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .unwrap();
    assert_eq!(
        (rr.reports[0].fraction_lost, rr.reports[0].total_lost),
        (0, 10)
    );
    // Within 10 s of the losses our figure still holds them: 10 of 150.
    assert!((b.figures().lost - 10.0 / 150.0).abs() < 1e-9);
    // Reports go on for more than 10 s of clean packets: the losses age out.
    let mut next = 150u16;
    while b.poll_timeout() < t + Duration::from_secs(40) {
        let until = b.poll_timeout();
        while t + 20 * MS * u32::from(next) < until {
            b.on_rtp(
                0xA,
                1000 + next,
                5000 + u32::from(next) * 160,
                true,
                t + 20 * MS * u32::from(next),
            );
            next += 1;
        }
        due(&mut b, Sent::default());
    }
    assert_eq!(b.figures().lost, 0.0);
}

#[test]
fn round_trip_time_comes_from_lsr_and_dlsr() {
    let t = Instant::now();
    // Different wall clocks: only A's own clock matters for its RTT.
    let mut a = RtcpSession::new(0xA, "a", 8000, t, SystemTime::now(), 1);
    let mut b = RtcpSession::new(
        0xB,
        "b",
        8000,
        t,
        SystemTime::now() - Duration::from_secs(3600),
        2,
    );
    stream(&mut b, 0xA, t, 10, &[]);
    let sent = Sent {
        packets: 10,
        octets: 1600,
        rtp_timestamp: 6600,
    };
    let (at, sr) = due(&mut a, sent);
    let packets = parse(&sr);
    let report = packets[0]
        .as_any()
        .downcast_ref::<SenderReport>()
        .expect("A has sent: a sender report");
    assert_eq!((report.packet_count, report.octet_count), (10, 1600));
    assert_eq!(report.rtp_time, 6600);
    // 40 ms to B; B answers 1 s later; 40 ms back.
    b.on_rtcp(&sr, at + 40 * MS).expect("B takes A's SR");
    let mut rr = Vec::new();
    b.report(at + 1040 * MS, Sent::default(), false, &mut rr);
    a.on_rtcp(&rr, at + 1080 * MS).expect("A takes B's RR");
    let rtt = a.figures().rtt.expect("an RTT");
    assert!(rtt.abs_diff(80 * MS) < MS, "{rtt:?}");

    // A DLSR rounded up past the real hold time: a little negative, so 0.
    let more = Sent {
        packets: 20,
        ..sent
    };
    let (at, sr) = due(&mut a, more);
    b.on_rtcp(&sr, at).unwrap();
    let mut rr = Vec::new();
    b.report(at + 100 * MS, Sent::default(), false, &mut rr);
    let mut packets = parse(&rr);
    let mut block = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .expect("an RR")
        .clone();
    block.reports[0].delay += 65536 / 500; // 2 ms more than held
    packets[0] = Box::new(block.clone());
    let rounded = rtcp::packet::marshal(&packets).unwrap();
    a.on_rtcp(&rounded, at + 100 * MS).unwrap();
    assert_eq!(a.figures().rtt, Some(Duration::ZERO));
    // A report claiming an hour's hold is garbage: the RTT stays.
    block.reports[0].delay = 3600 * 65536;
    packets[0] = Box::new(block);
    let forged = rtcp::packet::marshal(&packets).unwrap();
    a.on_rtcp(&forged, at + 100 * MS).unwrap();
    assert_eq!(a.figures().rtt, Some(Duration::ZERO));
}

#[test]
fn intervals_are_randomized_around_the_minimum() {
    let t = Instant::now();
    let mut s = session(1, t);
    let first = s.poll_timeout() - t;
    assert!(
        first >= Duration::from_secs_f64(1.25 / 1.21828)
            && first <= Duration::from_secs_f64(3.75 / 1.21828),
        "{first:?}"
    );
    let mut now = s.poll_timeout();
    let mut gaps = Vec::new();
    for _ in 0..200 {
        let mut out = Vec::new();
        assert!(
            !s.handle_timeout(now - MS, Sent::default(), &mut out),
            "not early"
        );
        assert!(s.handle_timeout(now, Sent::default(), &mut out));
        let next = s.poll_timeout();
        gaps.push((next - now).as_secs_f64());
        now = next;
    }
    let (lo, hi) = (2.5 / 1.21828, 7.5 / 1.21828);
    assert!(gaps.iter().all(|g| (lo..=hi).contains(g)), "{gaps:?}");
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!((mean - 5.0 / 1.21828).abs() < 0.3, "mean {mean}");
    let spread = gaps.iter().cloned().fold(f64::MIN, f64::max)
        - gaps.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 2.0, "randomized: {spread}");
}

#[test]
fn reports_from_another_ssrc_are_foreign_and_change_nothing() {
    let t = Instant::now();
    let mut a = session(0xA, t);
    a.on_rtp(0xB, 1, 160, true, t);
    let mut stranger = session(0xC, t);
    stranger.on_rtp(0xA, 1, 160, true, t);
    stranger.on_rtp(0xA, 5, 800, true, t + 80 * MS);
    let (at, forged) = due(&mut stranger, Sent::default());
    assert_eq!(a.on_rtcp(&forged, at), Err(RtcpError::Foreign(0xC)));
    assert_eq!(a.figures().remote, None);
    assert_eq!(a.counters().foreign, 1);
}

#[test]
fn malformed_datagrams_are_counted_and_dropped() {
    let t = Instant::now();
    let mut a = session(0xA, t);
    let mut b = session(0xB, t);
    b.on_rtp(0xA, 1, 160, true, t);
    let (at, good) = due(&mut b, Sent::default());
    // SDES alone is no compound packet.
    let sdes_only = &good[good.len() - 20..];
    assert!(matches!(
        a.on_rtcp(sdes_only, at),
        Err(RtcpError::NotCompound) | Err(RtcpError::Malformed)
    ));
    assert_eq!(a.on_rtcp(&[], at), Err(RtcpError::Malformed));
    assert_eq!(
        a.on_rtcp(&good[..good.len() - 3], at),
        Err(RtcpError::Malformed)
    );
    // Mutations of a good packet: never a panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut v = good.clone();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % v.len();
            v[at] = (x >> 32) as u8;
        }
        let _ = a.on_rtcp(&v, at);
    }
    let c = a.counters();
    assert_eq!(c.received + c.malformed + c.foreign, 20_003);
    assert!(c.malformed >= 3);
}

#[test]
fn sender_report_only_after_sending_and_bye_at_the_end() {
    let t = Instant::now();
    let mut a = session(0xA, t);
    let mut b = session(0xB, t);
    let (_, first) = due(&mut a, Sent::default());
    assert!(parse(&first)[0].as_any().is::<ReceiverReport>());
    let sent = Sent {
        packets: 5,
        octets: 800,
        rtp_timestamp: 800,
    };
    let (_, second) = due(&mut a, sent);
    assert!(parse(&second)[0].as_any().is::<SenderReport>());
    // Nothing sent since: a receiver report again.
    let (_, third) = due(&mut a, sent);
    assert!(parse(&third)[0].as_any().is::<ReceiverReport>());

    b.on_rtp(0xA, 1, 160, true, t);
    let mut bye = Vec::new();
    a.bye(t + Duration::from_secs(30), sent, &mut bye);
    let packets = parse(&bye);
    let goodbye = packets
        .last()
        .and_then(|p| p.as_any().downcast_ref::<Goodbye>())
        .expect("BYE last");
    assert_eq!(goodbye.sources, [0xA]);
    assert!(!b.bye_heard());
    b.on_rtcp(&bye, t + Duration::from_secs(30)).unwrap();
    assert!(b.bye_heard());
}

#[test]
fn jitter_follows_rfc3550() {
    let t = Instant::now();
    let mut b = session(0xB, t);
    // Steady 20 ms: no jitter.
    stream(&mut b, 0xA, t, 50, &[]);
    assert!(b.figures().jitter_ms < 0.01);
    // Arrivals alternately 10 ms late: |D| = 10 ms each time; J → 10 ms.
    let mut b = session(0xB, t);
    for i in 0..400u32 {
        let late = if i % 2 == 1 { 10 * MS } else { Duration::ZERO };
        b.on_rtp(0xA, i as u16, i * 160, true, t + 20 * MS * i + late);
    }
    let j = b.figures().jitter_ms;
    assert!((j - 10.0).abs() < 0.5, "{j}");
    // A key press: event packets every 20 ms, all with the press's start
    // timestamp. Counted as received, not as jitter.
    let mut b = session(0xB, t);
    stream(&mut b, 0xA, t, 50, &[]);
    for i in 50..60u16 {
        b.on_rtp(
            0xA,
            1000 + i,
            5000 + 50 * 160,
            false,
            t + 20 * MS * u32::from(i),
        );
    }
    for i in 60..100u16 {
        b.on_rtp(
            0xA,
            1000 + i,
            5000 + u32::from(i) * 160,
            true,
            t + 20 * MS * u32::from(i),
        );
    }
    assert!(b.figures().jitter_ms < 0.01, "{}", b.figures().jitter_ms);
    let (_, report) = due(&mut b, Sent::default());
    let rr = parse(&report);
    let rr = rr[0].as_any().downcast_ref::<ReceiverReport>().unwrap();
    assert_eq!(rr.reports[0].total_lost, 0);
}

#[test]
fn duplicates_make_negative_cumulative_loss_and_a_new_ssrc_starts_over() {
    let t = Instant::now();
    let mut a = session(0xA, t);
    let mut b = session(0xB, t);
    stream(&mut b, 0xA, t, 10, &[]);
    stream(&mut b, 0xA, t, 10, &[]);
    let (at, report) = due(&mut b, Sent::default());
    a.on_rtcp(&report, at).unwrap();
    assert_eq!(a.figures().remote.unwrap().cumulative_lost, -10);
    assert_eq!(a.figures().remote.unwrap().fraction_lost, 0.0);
    // The phone restarts its stream under a new SSRC.
    b.on_rtp(0xD, 7, 0, true, t + Duration::from_secs(3));
    let (_, report) = due(&mut b, Sent::default());
    let packets = parse(&report);
    let rr = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .unwrap();
    assert_eq!(rr.reports[0].ssrc, 0xD);
    assert_eq!(rr.reports[0].total_lost, 0);
}

#[test]
fn rtcp_is_told_from_rtp_by_its_second_byte() {
    let t = Instant::now();
    let mut s = session(1, t);
    let (_, report) = due(&mut s, Sent::default());
    assert!(is_rtcp(&report));
    let mut rtp = Vec::new();
    crate::rtp::packet::RtpSender::new(1, 2, 3).packetize(0, &[0; 160], 160, &mut rtp);
    assert!(!is_rtcp(&rtp));
    assert!(!is_rtcp(&[0x80, 200]));
}

#[test]
fn reports_parse_whatever_the_cname_length_and_say_bye_last() {
    let t0 = Instant::now();
    for len in 1..=9 {
        let cname = "c".repeat(len);
        let mut s = RtcpSession::new(7, &cname, 8000, t0, SystemTime::now(), 1);
        let mut out = Vec::new();
        let sent = Sent {
            packets: 3,
            octets: 480,
            rtp_timestamp: 480,
        };
        s.bye(t0, sent, &mut out);
        assert_eq!(out.len() % 4, 0, "{len}");
        let packets = parse(&out);
        let sr = packets[0]
            .as_any()
            .downcast_ref::<SenderReport>()
            .expect("an SR");
        assert_eq!((sr.packet_count, sr.octet_count), (3, 480));
        let sdes = packets[1]
            .as_any()
            .downcast_ref::<SourceDescription>()
            .expect("SDES");
        assert_eq!(sdes.chunks[0].items[0].text, cname.as_bytes());
        assert!(packets[2].as_any().downcast_ref::<Goodbye>().is_some());
    }
}

/// Found by fuzzing (`fuzz/` target `rtp_media`): a feedback packet (FIR)
/// too short for its kind made the `rtcp` crate panic mid-parse, which on
/// a media thread would have ended every call on it.
#[test]
fn a_short_feedback_packet_is_refused_not_a_panic() {
    let t0 = Instant::now();
    let mut s = session(0x1111, t0);
    let fir = [0x84, 206, 0, 1, 0, 31, 16, 0];
    assert_eq!(s.on_rtcp(&fir, t0), Err(RtcpError::NotCompound));
    let mut found = fir.to_vec();
    found.extend_from_slice(&[136, 101, 31]);
    found.resize(130, 0);
    found.extend_from_slice(&[16, 0, 128, 14, 0, 0, 0, 0, 0, 0, 84]);
    assert_eq!(s.on_rtcp(&found, t0), Err(RtcpError::Malformed));
    // The same feedback packet after a receiver report is framed well, so
    // the compound is taken and the feedback skipped.
    let mut rr = vec![0x80, PT_RR, 0, 1];
    rr.extend_from_slice(&0x2222u32.to_be_bytes());
    rr.extend_from_slice(&fir);
    assert_eq!(s.on_rtcp(&rr, t0), Ok(()));
    assert_eq!(s.counters().malformed, 2);
}

#[test]
fn compound_framing_is_checked_before_anything_is_read() {
    let t0 = Instant::now();
    let mut s = session(0x1111, t0);
    let rr = |count: u8, words: u16| {
        let mut p = vec![0x80 | count, PT_RR];
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(&0x2222u32.to_be_bytes());
        p.resize(4 + usize::from(words) * 4, 0);
        p
    };
    assert_eq!(s.on_rtcp(&rr(0, 1), t0), Ok(()));
    // A report count its packet cannot hold.
    assert_eq!(s.on_rtcp(&rr(1, 1), t0), Err(RtcpError::Malformed));
    // A length past the datagram's end, and one short of it.
    let mut long = rr(0, 1);
    long[3] = 2;
    assert_eq!(s.on_rtcp(&long, t0), Err(RtcpError::Malformed));
    let mut trailing = rr(0, 1);
    trailing.extend_from_slice(&[0x80, PT_SDES]);
    assert_eq!(s.on_rtcp(&trailing, t0), Err(RtcpError::Malformed));
    // Version 1.
    let mut v1 = rr(0, 1);
    v1[0] = 0x40;
    assert_eq!(s.on_rtcp(&v1, t0), Err(RtcpError::Malformed));
    // Padding: allowed on the last packet only, and within its body.
    let mut padded = rr(0, 2);
    padded[0] |= 0x20;
    *padded.last_mut().unwrap() = 4;
    assert_eq!(s.on_rtcp(&padded, t0), Ok(()));
    *padded.last_mut().unwrap() = 9;
    assert_eq!(s.on_rtcp(&padded, t0), Err(RtcpError::Malformed));
    let mut early = rr(0, 2);
    early[0] |= 0x20;
    early[11] = 4;
    early.extend_from_slice(&rr(0, 1));
    assert_eq!(s.on_rtcp(&early, t0), Err(RtcpError::Malformed));
    assert_eq!(s.on_rtcp(&[], t0), Err(RtcpError::Malformed));
}
