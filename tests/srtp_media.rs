//! A call's media session with SRTP, fed bytes and a virtual clock (no
//! sockets): what the far end protects is heard, what we send is protected
//! (RTP, RTCP reports and the BYE), and a packet that fails authentication
//! or is a replay is counted and dropped before it can teach the RTP latch,
//! be mixed or be a digit.
#![allow(clippy::disallowed_methods)] // the test's virtual clock starts at now

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use confgate::call::media::{MediaEvent, MediaParams, MediaSession, MediaSetup, Via};
use confgate::media::codec::Codec;
use confgate::media::mixer::Output;
use confgate::rtp::learning::SourceLearning;
use confgate::rtp::srtp::{MasterKey, SrtpKeys, SrtpSession, Suite};

const SIGNALLED: &str = "192.0.2.7:40000";
/// The caller's media as it arrives through its NAT: same IP, another port.
const NATTED: &str = "192.0.2.7:41000";

struct Call {
    media: MediaSession,
    /// The far end's SRTP: protects what it sends, checks what we send.
    phone: SrtpSession,
    t0: Instant,
}

fn call(suite: Suite) -> Call {
    let (ours, theirs) = (MasterKey::random(), MasterKey::random());
    let remote: SocketAddr = SIGNALLED.parse().unwrap();
    let params = MediaParams {
        codec: Codec::Pcmu,
        payload_type: 0,
        remote: Some(remote),
        send: true,
        dtmf_pt: Some(101),
        rtcp_mux: true,
        rtcp: None,
        opus: Default::default(),
        srtp: Some(SrtpKeys {
            suite,
            local: ours,
            remote: theirs,
        }),
    };
    let t0 = Instant::now();
    let media = MediaSession::new(
        MediaSetup {
            params,
            inband: true,
            rtp_timeout: Duration::from_secs(30),
            learning: SourceLearning::new(Some(remote), remote.ip(), true),
            cname: "c@confgate".into(),
            quality_alarm_mos: 3.0,
        },
        t0,
        SystemTime::now(),
    );
    let phone = SrtpSession::new(SrtpKeys {
        suite,
        local: theirs,
        remote: ours,
    })
    .unwrap();
    Call { media, phone, t0 }
}

/// A plain RTP packet: PCMU (pt 0) or RFC 4733 events (pt 101).
fn rtp(seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
    // An event's packets share its start's timestamp (RFC 4733 §2.5.1.2).
    let ts = match pt {
        101 => 0,
        _ => u32::from(seq) * 160,
    };
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0xcafe_0001u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

impl Call {
    fn at(&self, n: u16) -> Instant {
        self.t0 + Duration::from_millis(20 * u64::from(n))
    }

    fn sealed(&mut self, seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = rtp(seq, pt, payload);
        self.phone.protect_rtp(&mut p).unwrap();
        p
    }

    /// Feed one datagram; the payload heard, if any.
    fn feed(&mut self, mut datagram: Vec<u8>, from: &str, n: u16) -> Option<Vec<u8>> {
        let at = self.at(n);
        self.media
            .on_rtp(&mut datagram, from.parse().unwrap(), at)
            .map(|a| a.payload.to_vec())
    }

    fn digits(&mut self) -> Vec<char> {
        let mut got = Vec::new();
        while let Some(e) = self.media.poll_event() {
            if let MediaEvent::Digit { digit, .. } = e {
                got.push(digit);
            }
        }
        got
    }
}

#[test]
fn protected_audio_is_heard_and_what_we_send_is_protected() {
    for suite in Suite::ALL {
        let mut c = call(suite);
        for n in 0..5u16 {
            let p = c.sealed(n, 0, &[0x42; 160]);
            assert_eq!(c.feed(p, SIGNALLED, n).as_deref(), Some(&[0x42u8; 160][..]));
        }
        let stats = c.media.stats();
        assert_eq!((stats.received, stats.srtp_rejected), (5, 0));
        // Our frame on the wire is SRTP: its payload is not ours in plain.
        let frame = [0x17u8; 160];
        let t = c
            .media
            .audio_frame(Some(Output::Encoded(&frame)))
            .expect("a packet");
        assert_eq!(t.to, SIGNALLED.parse().unwrap());
        let mut wire = t.bytes.to_vec();
        assert_ne!(&wire[12..172], &frame[..], "{suite:?}: encrypted");
        let n = c.phone.unprotect_rtp(&mut wire).expect("authentic");
        assert_eq!(&wire[12..n], &frame[..]);
    }
}

#[test]
fn failed_and_replayed_packets_are_counted_dropped_and_teach_nothing() {
    let mut c = call(Suite::AesCm128HmacSha1_80);
    // A forger behind the caller's IP, at another port: tampered packets,
    // plain RTP, junk. None is heard, none is a digit, none is learned.
    let mut rejected = 0;
    for n in 0..20u16 {
        let mut p = c.sealed(n, 0, &[0x55; 160]);
        p[20] ^= 0x80;
        assert_eq!(c.feed(p, NATTED, n), None);
        rejected += 1;
    }
    for n in 20..30u16 {
        assert_eq!(
            c.feed(rtp(n, 0, &[0x55; 160]), NATTED, n),
            None,
            "plain RTP"
        );
        rejected += 1;
    }
    // An RFC 4733 `5` with a broken tag: never a digit.
    for n in 30..34u16 {
        let mut p = c.sealed(n, 101, &[5, 0x8a, 0, 160]);
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(c.feed(p, NATTED, n), None);
        rejected += 1;
    }
    assert!(c.digits().is_empty());
    let stats = c.media.stats();
    assert_eq!(stats.srtp_rejected, rejected);
    assert_eq!(stats.received, 0);
    assert_eq!(
        stats.foreign.total(),
        0,
        "dropped before source learning saw them"
    );
    // We still send to the signalled address: nothing was learned.
    let t = c
        .media
        .audio_frame(Some(Output::Encoded(&[0; 160])))
        .unwrap();
    assert_eq!(t.to, SIGNALLED.parse().unwrap());

    // The genuine caller through its NAT is learned after its probation.
    for n in 40..50u16 {
        let p = c.sealed(n, 0, &[0x33; 160]);
        c.feed(p, NATTED, n);
    }
    let t = c
        .media
        .audio_frame(Some(Output::Encoded(&[0; 160])))
        .unwrap();
    assert_eq!(t.to, NATTED.parse().unwrap());
    // A replay of a packet already taken: counted, not heard again.
    let p = c.sealed(50, 0, &[0x66; 160]);
    assert!(c.feed(p.clone(), NATTED, 50).is_some());
    let before = c.media.stats();
    assert_eq!(c.feed(p, NATTED, 51), None);
    let after = c.media.stats();
    assert_eq!(after.srtp_rejected, before.srtp_rejected + 1);
    assert_eq!(after.received, before.received);
}

#[test]
fn digits_come_only_from_authentic_packets() {
    let mut c = call(Suite::AesCm128HmacSha1_80);
    for (i, end) in [(0u16, 0u8), (1, 0), (2, 0x80), (3, 0x80), (4, 0x80)] {
        let p = c.sealed(i, 101, &[5, end | 10, 0, 160]);
        c.feed(p, SIGNALLED, i);
    }
    assert_eq!(c.digits(), ['5']);
}

#[test]
fn rtcp_reports_and_bye_are_srtcp() {
    let mut c = call(Suite::AesCm128HmacSha1_80);
    for n in 0..3u16 {
        let p = c.sealed(n, 0, &[0x42; 160]);
        c.feed(p, SIGNALLED, n);
    }
    for _ in 0..3 {
        c.media.audio_frame(Some(Output::Encoded(&[0; 160])));
    }
    // The first report is due within a few seconds.
    let mut report = None;
    for ms in (0..15_000).step_by(20) {
        let now = c.t0 + Duration::from_millis(ms);
        if let Some(t) = c.media.handle_timeout(now) {
            report = Some((t.via, t.bytes.to_vec()));
            break;
        }
    }
    let (via, mut wire) = report.expect("an RTCP report");
    assert_eq!(via, Via::Rtp, "muxed");
    assert!(
        c.phone.unprotect_rtcp(&mut wire).is_ok(),
        "an authentic SRTCP report"
    );
    let mut bye = c
        .media
        .bye(c.t0 + Duration::from_secs(20))
        .map(|t| t.bytes.to_vec())
        .expect("a BYE");
    let n = c.phone.unprotect_rtcp(&mut bye).expect("authentic SRTCP");
    assert!(
        bye[..n]
            .windows(2)
            .any(|w| w[0] & 0xc0 == 0x80 && w[1] == 203),
        "has a BYE"
    );
    // The far end's SRTCP is taken in; a forged one is counted.
    let mut rr = vec![0x80, 201, 0, 1, 0xca, 0xfe, 0x00, 0x01];
    c.phone.protect_rtcp(&mut rr).unwrap();
    let before = c.media.stats().srtp_rejected;
    c.media
        .on_rtcp(&mut rr.clone(), SIGNALLED.parse().unwrap(), c.at(100));
    assert_eq!(c.media.stats().srtp_rejected, before);
    let mut forged = rr.clone();
    forged[5] ^= 1;
    c.media
        .on_rtcp(&mut forged, SIGNALLED.parse().unwrap(), c.at(101));
    assert_eq!(c.media.stats().srtp_rejected, before + 1);
}

#[test]
fn a_re_invite_with_a_new_remote_key_gets_a_fresh_inbound_context() {
    use confgate::call::media::MediaCommand;
    let mut c = call(Suite::AesCm128HmacSha1_80);
    let p = c.sealed(0, 0, &[0x42; 160]);
    assert!(c.feed(p, SIGNALLED, 0).is_some());
    let old = *c.media.params();
    let keys = old.srtp.unwrap();
    // The same keys again (a session refresh): the stream goes on.
    c.media.command(MediaCommand::Update(old), c.at(1));
    let p = c.sealed(1, 0, &[0x42; 160]);
    assert!(c.feed(p, SIGNALLED, 1).is_some());
    // The far end's new key; ours stays.
    let fresh = MasterKey::random();
    let params = MediaParams {
        srtp: Some(SrtpKeys {
            remote: fresh,
            ..keys
        }),
        ..old
    };
    c.media.command(MediaCommand::Update(params), c.at(2));
    let p = c.sealed(2, 0, &[0x42; 160]);
    assert_eq!(
        c.feed(p, SIGNALLED, 2),
        None,
        "the old key no longer passes"
    );
    let mut phone = SrtpSession::new(SrtpKeys {
        suite: keys.suite,
        local: fresh,
        remote: keys.local,
    })
    .unwrap();
    let mut p = rtp(3, 0, &[0x42; 160]);
    phone.protect_rtp(&mut p).unwrap();
    assert!(c.feed(p, SIGNALLED, 3).is_some(), "the new one does");
    // What we send is still under our key.
    let mut wire = c
        .media
        .audio_frame(Some(Output::Encoded(&[1; 160])))
        .unwrap()
        .bytes
        .to_vec();
    assert!(phone.unprotect_rtp(&mut wire).is_ok());
}
