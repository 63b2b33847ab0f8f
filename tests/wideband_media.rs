//! A wideband call's media session fed bytes and a virtual clock (no
//! sockets, no baresip): an Opus call on payload type 111 with
//! telephone-event/48000 on 110 — numbers another phone than the e2e one
//! picks — and a G.722 call on 9. What we send runs at the codec's clock,
//! carries the 16 kHz prompt and keys digits in 48 kHz units; what the
//! phone sends is heard, its events and its in-band tones are digits.
#![allow(clippy::disallowed_methods)] // the test's virtual clock starts at now

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::signal::goertzel;
use confgate::call::media::{MediaCommand, MediaEvent, MediaParams, MediaSession, MediaSetup};
use confgate::dtmf::Source;
use confgate::media::codec::{Codec, Decoder, Encoder, OpusParams, ROOM_FRAME};
use confgate::rtp::learning::SourceLearning;
use confgate::rtp::packet::{parse, RtpSender};

const PHONE: &str = "192.0.2.7:40000";

fn session(codec: Codec, pt: u8, dtmf_pt: Option<u8>, t0: Instant) -> MediaSession {
    let remote: SocketAddr = PHONE.parse().unwrap();
    let params = MediaParams {
        codec,
        payload_type: pt,
        remote: Some(remote),
        send: true,
        dtmf_pt,
        rtcp_mux: true,
        rtcp: None,
        opus: OpusParams {
            inband_fec: true,
            max_playback_rate: Some(16_000),
        },
        srtp: None,
    };
    MediaSession::new(
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
    )
}

fn tone(rate: u32, freqs: &[f64], n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let s: f64 = freqs
                .iter()
                .map(|f| (std::f64::consts::TAU * f * t).sin())
                .sum();
            (5000.0 * s) as i16
        })
        .collect()
}

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

fn digits(m: &mut MediaSession) -> Vec<(char, Source)> {
    let mut got = Vec::new();
    while let Some(e) = m.poll_event() {
        if let MediaEvent::Digit { digit, source, .. } = e {
            got.push((digit, source));
        }
    }
    got
}

#[test]
fn an_opus_call_sends_the_wide_prompt_at_its_clock_and_keys_in_48_khz_units() {
    let t0 = Instant::now();
    let mut m = session(Codec::Opus, 111, Some(110), t0);
    // The 8 kHz clip is a 1 kHz tone, its 16 kHz copy 6 kHz: what is heard
    // tells which one played.
    m.command(
        MediaCommand::Play {
            samples: Arc::from(tone(8000, &[1000.0], 8000)),
            wide: Some(Arc::from(tone(16_000, &[6000.0], 16_000))),
            looped: false,
            id: 1,
        },
        t0,
    );
    let mut dec = Decoder::new(Codec::Opus, 16_000).unwrap();
    let mut heard = Vec::new();
    let mut stamps = Vec::new();
    for _ in 0..25 {
        let t = m.prompt_frame().expect("a packet");
        let rtp = parse(t.bytes).unwrap();
        assert_eq!(rtp.pt, 111);
        stamps.push(rtp.timestamp);
        let mut pcm = [0i16; ROOM_FRAME];
        dec.decode(rtp.payload, &mut pcm).unwrap();
        heard.extend_from_slice(&pcm);
    }
    assert!(stamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 960));
    let tail = &heard[5 * ROOM_FRAME..];
    let (wide, narrow) = (
        db(goertzel(tail, 16_000, 6000.0)),
        db(goertzel(tail, 16_000, 1000.0)),
    );
    assert!(
        wide > narrow + 30.0,
        "6 kHz at {wide:.1} dB, 1 kHz at {narrow:.1} dB"
    );
    // A key goes out as telephone-event 110, its duration in 48 kHz units.
    m.command(
        MediaCommand::Key {
            digits: "5".into(),
            lead_frames: 0,
        },
        t0,
    );
    let durations: Vec<u16> = (0..5)
        .map(|_| {
            let t = m.prompt_frame().expect("a packet");
            let rtp = parse(t.bytes).unwrap();
            assert_eq!((rtp.pt, rtp.payload[0]), (110, 5));
            u16::from_be_bytes([rtp.payload[2], rtp.payload[3]])
        })
        .collect();
    assert_eq!(durations, [960, 1920, 2880, 3840, 4800]);
}

#[test]
fn what_an_opus_phone_sends_is_heard_and_its_events_and_tones_are_digits() {
    let t0 = Instant::now();
    let mut m = session(Codec::Opus, 111, Some(110), t0);
    let from: SocketAddr = PHONE.parse().unwrap();
    let mut phone = RtpSender::new(0x1234_5678, 100, 90_000);
    let mut enc = Encoder::new(Codec::Opus, OpusParams::default()).unwrap();
    let (mut payload, mut packet) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    let mut send = |m: &mut MediaSession, pcm: &[i16], phone: &mut RtpSender| {
        enc.encode(pcm, &mut payload).unwrap();
        phone.packetize(111, &payload, 960, &mut packet);
        n += 1;
        let at = t0 + Duration::from_millis(20 * n);
        m.on_rtp(&mut packet, from, at)
            .map(|a| (a.ts, a.payload.len()))
    };
    // Speech-like audio: heard, each packet for the room.
    let talk = tone(16_000, &[440.0], ROOM_FRAME * 10);
    for (k, frame) in talk.chunks(ROOM_FRAME).enumerate() {
        let (ts, len) = send(&mut m, frame, &mut phone).expect("for the room");
        assert_eq!(ts, 90_000 + k as u32 * 960);
        assert!(len > 0);
    }
    // A 7 keyed in-band (852 + 1209 Hz, 100 ms), then silence.
    let key = tone(16_000, &[852.0, 1209.0], ROOM_FRAME * 5);
    for frame in key.chunks(ROOM_FRAME) {
        send(&mut m, frame, &mut phone);
    }
    for _ in 0..10 {
        send(&mut m, &[0; ROOM_FRAME], &mut phone);
    }
    assert_eq!(digits(&mut m), [('7', Source::Inband)]);
    // A 9 as telephone-events at the phone's 48 kHz clock: five packets
    // with growing durations, the end three times, one start timestamp.
    let start = phone.timestamp();
    for k in 1..=8u16 {
        let end = k > 5;
        let duration = 960 * k.min(5);
        let event = [
            9,
            (u8::from(end) << 7) | 10,
            (duration >> 8) as u8,
            duration as u8,
        ];
        phone.packetize_at(110, &event, start, k == 1, &mut packet);
        n += 1;
        let at = t0 + Duration::from_millis(20 * n);
        assert!(
            m.on_rtp(&mut packet, from, at).is_none(),
            "an event is not audio"
        );
    }
    assert_eq!(digits(&mut m), [('9', Source::Rfc4733)]);
}

#[test]
fn a_g722_call_sends_160_bytes_and_160_clock_units_per_frame() {
    let t0 = Instant::now();
    let mut m = session(Codec::G722, 9, Some(101), t0);
    m.command(
        MediaCommand::Play {
            samples: Arc::from(tone(8000, &[1000.0], 8000)),
            wide: Some(Arc::from(tone(16_000, &[6000.0], 16_000))),
            looped: false,
            id: 1,
        },
        t0,
    );
    let mut dec = Decoder::new(Codec::G722, 16_000).unwrap();
    let mut heard = Vec::new();
    let mut stamps = Vec::new();
    for _ in 0..20 {
        let t = m.prompt_frame().expect("a packet");
        let rtp = parse(t.bytes).unwrap();
        assert_eq!((rtp.pt, rtp.payload.len()), (9, 160));
        stamps.push(rtp.timestamp);
        let mut pcm = [0i16; ROOM_FRAME];
        dec.decode(rtp.payload, &mut pcm).unwrap();
        heard.extend_from_slice(&pcm);
    }
    // RFC 3551: an 8 kHz clock for 16 kHz audio.
    assert!(stamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160));
    let tail = &heard[5 * ROOM_FRAME..];
    assert!(db(goertzel(tail, 16_000, 6000.0)) > db(goertzel(tail, 16_000, 1000.0)) + 30.0);
}
