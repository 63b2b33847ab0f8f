//! A call's media session marks the frames that carry a key's tones, so the
//! room mixes silence in their place: fed RTP bytes and a virtual clock,
//! speech-like audio passes, a `5` keyed in-band is marked from its first
//! frames to the one after its end, and a tone pair too short for a key
//! (10 ms) is not.
#![allow(clippy::disallowed_methods)] // the test's virtual clock starts at now

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use confgate::call::media::{MediaParams, MediaSession, MediaSetup};
use confgate::media::codec::Codec;
use confgate::rtp::learning::SourceLearning;

fn session(t0: Instant) -> MediaSession {
    let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let params = MediaParams {
        codec: Codec::Pcmu,
        payload_type: 0,
        remote: Some(remote),
        send: true,
        dtmf_pt: Some(101),
        rtcp_mux: false,
        rtcp: None,
        opus: Default::default(),
        srtp: None,
    };
    MediaSession::new(
        MediaSetup {
            params,
            inband: true,
            rtp_timeout: Duration::from_secs(30),
            learning: SourceLearning::new(Some(remote), remote.ip(), false),
            cname: "c@confgate".into(),
            quality_alarm_mos: 3.0,
        },
        t0,
        SystemTime::now(),
    )
}

/// Which 20 ms frames of `audio` the session marks as keyed.
fn marked(audio: &[i16]) -> Vec<bool> {
    let t0 = Instant::now();
    let mut s = session(t0);
    let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    audio
        .chunks(160)
        .enumerate()
        .map(|(n, pcm)| {
            let mut payload = [0u8; 160];
            Codec::Pcmu
                .g711()
                .expect("G.711")
                .encode(pcm, &mut payload[..pcm.len()]);
            let mut pkt = vec![0x80, 0];
            pkt.extend_from_slice(&(n as u16).to_be_bytes());
            pkt.extend_from_slice(&(n as u32 * 160).to_be_bytes());
            pkt.extend_from_slice(&0x1234u32.to_be_bytes());
            pkt.extend_from_slice(&payload[..pcm.len()]);
            let at = t0 + Duration::from_millis(20 * n as u64);
            s.on_rtp(&mut pkt, from, at).is_some_and(|a| a.keyed)
        })
        .collect()
}

fn sine(hz: f64, len: usize) -> Vec<i16> {
    common::signal::sine(8000, hz, 6000.0, len)
}

#[test]
fn a_keys_tones_are_marked_from_their_start_to_the_frame_after_them() {
    // 200 ms of talk, a `5` of 120 ms starting 7 ms into a frame, talk again.
    let mut audio = sine(440.0, 1600 + 56);
    let press_start = audio.len();
    audio.extend(common::keypad::tones("5", 120, 0));
    let press_end = audio.len();
    audio.extend(sine(440.0, 1600));
    let marks = marked(&audio);
    let frame = |sample: usize| sample / 160;
    let keyed: Vec<usize> = (0..marks.len()).filter(|&n| marks[n]).collect();
    eprintln!(
        "press in frames {}..={}, marked {keyed:?}",
        frame(press_start),
        frame(press_end - 1)
    );
    assert!(
        keyed
            .iter()
            .all(|&n| n >= frame(press_start) && n <= frame(press_end) + 1),
        "only the press is marked: {keyed:?}"
    );
    // Marked from within 16 ms of its start (the mixer silences the two
    // frames before the first mark too) to the frame after it ends.
    let first = keyed.first().copied().expect("the press is marked");
    assert!(first <= frame(press_start) + 1, "first mark {first}");
    assert_eq!(keyed.last().copied(), Some(frame(press_end - 1) + 1));
    assert_eq!(
        keyed.len(),
        keyed.last().unwrap() - first + 1,
        "no hole: {keyed:?}"
    );
}

#[test]
fn talk_and_a_tone_pair_too_short_for_a_key_are_not_marked() {
    let mut audio = sine(440.0, 1600);
    audio.extend(common::keypad::tones("5", 10, 0));
    audio.extend(sine(700.0, 1600));
    assert!(marked(&audio).iter().all(|&k| !k));
}
