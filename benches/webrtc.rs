//! A browser member's media cost per 20 ms frame, beside a phone's: our
//! WebRTC session (str0m: packetize, SRTP, RTCP, pacing) sending the
//! room's mix and taking the browser's frames, with a second str0m peer
//! in memory as the browser. The Opus encode is timed apart, since every
//! Opus member pays it. `cargo bench --bench webrtc` prints the figures.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confgate::call::webrtc::WebSession;
use confgate::media::codec::{Codec, Encoder, OpusParams, ROOM_FRAME};
use confgate::media::mixer::Output;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output as RtcOutput, Rtc};

#[path = "common/counting.rs"]
mod counting;
use counting::ALLOCS;

const FRAMES: usize = 20_000;

fn tone(n: usize) -> Vec<i16> {
    (0..ROOM_FRAME)
        .map(|i| {
            let t = (n * ROOM_FRAME + i) as f64 / 16000.0;
            (6000.0 * (std::f64::consts::TAU * 440.0 * t).sin()) as i16
        })
        .collect()
}

fn main() {
    let server: SocketAddr = "127.0.0.1:50000".parse().expect("address");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let t0 = Instant::now();
    let mut web = Rtc::builder().build(t0);
    web.add_local_candidate(Candidate::host(peer, "udp").expect("candidate"));
    let mut change = web.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().expect("offer");
    let (mut ours, answer) = WebSession::accept(
        &offer.to_sdp_string(),
        server,
        Duration::from_secs(3600),
        t0,
    )
    .expect("accepted");
    web.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("answer"),
        )
        .expect("answer taken");

    // Connect: shuttle datagrams until DTLS is up on both sides.
    let mut now = t0;
    let mut to_ours: Vec<Vec<u8>> = Vec::new();
    let pump = |web: &mut Rtc, ours: &mut WebSession, to_ours: &mut Vec<Vec<u8>>, now| {
        loop {
            match web.poll_output().expect("browser output") {
                RtcOutput::Timeout(_) => break,
                RtcOutput::Transmit(t) => to_ours.push(t.contents.into()),
                RtcOutput::Event(_) => {}
            }
        }
        while let Some((_, bytes)) = ours.next_transmit() {
            let r = Receive::new(Protocol::Udp, server, peer, &bytes).expect("datagram");
            web.handle_input(Input::Receive(now, r))
                .expect("browser input");
            while let Ok(o) = web.poll_output() {
                match o {
                    RtcOutput::Timeout(_) => break,
                    RtcOutput::Transmit(t) => to_ours.push(t.contents.into()),
                    RtcOutput::Event(_) => {}
                }
            }
        }
    };
    for step in 0..400 {
        now = t0 + Duration::from_millis(5 * step);
        pump(&mut web, &mut ours, &mut to_ours, now);
        for d in to_ours.drain(..) {
            ours.on_datagram(&d, peer, now);
        }
        ours.handle_timeout(now);
        web.handle_input(Input::Timeout(now)).expect("timeout");
        if ours.connected() && web.is_connected() {
            break;
        }
    }
    assert!(ours.connected(), "connected");

    // The browser's frames, sealed beforehand, for the receive side.
    // As the session encodes for a browser: with in-band FEC.
    let mut enc = Encoder::new(
        Codec::Opus,
        OpusParams {
            inband_fec: true,
            max_playback_rate: None,
        },
    )
    .expect("encoder");
    let mut payload = Vec::new();
    let mut sealed = Vec::with_capacity(FRAMES);
    for n in 0..FRAMES {
        enc.encode(&tone(n), &mut payload).expect("encode");
        let w = web.writer(mid).expect("writer");
        let pt = w.payload_params().next().expect("opus").pt();
        let time = MediaTime::new(960 * n as u64, Frequency::FORTY_EIGHT_KHZ);
        let at = now + Duration::from_millis(20 * n as u64);
        w.write(pt, at, time, payload.clone()).expect("write");
        loop {
            match web.poll_output().expect("browser output") {
                RtcOutput::Timeout(_) => break,
                RtcOutput::Transmit(t) => sealed.push((at, Vec::from(t.contents))),
                RtcOutput::Event(_) => {}
            }
        }
        web.handle_input(Input::Timeout(at)).expect("timeout");
    }

    // What the room sends: speech (espeak-ng), 16 kHz, in 20 ms frames.
    let speech = confgate::tts::espeak::synthesize(
        "please enter your conference pin, then press pound. you have joined the conference. \
         there are three other participants.",
        "en-us",
        160,
    )
    .expect("espeak-ng");
    let speech = confgate::media::resample::resample(&speech.samples, speech.rate, 16000);
    let frames: Vec<Vec<i16>> = speech
        .chunks_exact(ROOM_FRAME)
        .map(<[i16]>::to_vec)
        .collect();
    let m = frames.len();
    // The Opus encode alone, as every Opus member pays it.
    let t = Instant::now();
    for n in 0..FRAMES {
        enc.encode(&frames[n % m], &mut payload).expect("encode");
        std::hint::black_box(&payload);
    }
    let encode = t.elapsed().as_secs_f64() / FRAMES as f64;
    // The same without FEC (as for a phone that does not ask for it).
    let mut plain = Encoder::new(Codec::Opus, OpusParams::default()).expect("encoder");
    let t = Instant::now();
    for n in 0..FRAMES {
        plain.encode(&frames[n % m], &mut payload).expect("encode");
        std::hint::black_box(&payload);
    }
    let encode_plain = t.elapsed().as_secs_f64() / FRAMES as f64;

    // Send, str0m alone: Opus payloads encoded beforehand, packetized,
    // protected and queued.
    let encoded: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            enc.encode(f, &mut payload).expect("encode");
            payload.clone()
        })
        .collect();
    let before = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut sent = 0;
    for n in 0..FRAMES {
        let at = now + Duration::from_millis(20 * n as u64);
        ours.audio_frame(Some(Output::Encoded(&encoded[n % m])), at);
        while let Some(d) = ours.next_transmit() {
            sent += 1;
            std::hint::black_box(d);
        }
    }
    let send_str0m = t.elapsed().as_secs_f64() / FRAMES as f64;
    let send_allocs = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / FRAMES as f64;
    assert!(sent >= FRAMES, "sent {sent}");
    let now = now + Duration::from_millis(20 * FRAMES as u64);

    // Send: the room's frame encoded, packetized, protected and queued.
    let t = Instant::now();
    sent = 0;
    for n in 0..FRAMES {
        let at = now + Duration::from_millis(20 * n as u64);
        // The frame goes out at once: no timer needs a look first.
        ours.audio_frame(Some(Output::Pcm(&frames[n % m])), at);
        while let Some(d) = ours.next_transmit() {
            sent += 1;
            std::hint::black_box(d);
        }
    }
    let send = t.elapsed().as_secs_f64() / FRAMES as f64;

    // Receive: a sealed frame authenticated, decrypted and handed over.
    let before = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut heard = 0;
    for (at, d) in &sealed {
        ours.on_datagram(d, peer, *at);
        while let Some(f) = ours.next_heard() {
            heard += 1;
            std::hint::black_box(f);
        }
    }
    let recv = t.elapsed().as_secs_f64() / sealed.len() as f64;
    let recv_allocs = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / sealed.len() as f64;
    assert!(
        sent >= FRAMES && heard >= FRAMES * 9 / 10,
        "sent {sent}, heard {heard}"
    );

    println!("A browser member per 20 ms frame ({FRAMES} frames, one core):");
    println!(
        "  send (Opus encode + str0m)   {:>6.1} µs   of which the encode {:>5.1} µs   allocations (str0m) {send_allocs:.1}",
        send * 1e6,
        encode * 1e6
    );
    println!(
        "  (the encode without in-band FEC {:>5.1} µs)",
        encode_plain * 1e6
    );
    println!(
        "  receive (str0m, SRTP)        {:>6.1} µs   allocations {recv_allocs:.1}",
        recv * 1e6
    );
    println!(
        "  str0m's own share            {:>6.1} µs per frame both ways (send {:.1}, receive {:.1})",
        (send_str0m + recv) * 1e6,
        send_str0m * 1e6,
        recv * 1e6
    );
}
