//! A browser member's media session fed bytes and a virtual clock (no
//! sockets, no browser): a second str0m `Rtc`, with full ICE and its own
//! offer, plays the browser. ICE, DTLS and SRTP complete between them; the
//! browser's Opus tone reaches the room side and the room's tone reaches
//! the browser, at 48 kHz RTP time.
#![allow(clippy::disallowed_methods)] // the test's virtual clock starts at now

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::signal::band_db;
use confgate::call::media::MediaEvent;
use confgate::call::webrtc::{OfferError, WebSession};
use confgate::media::codec::{Codec, Decoder, Encoder, OpusParams, ROOM_FRAME};
use confgate::media::mixer::Output as Mix;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SERVER: &str = "127.0.0.1:50000";
const BROWSER: &str = "127.0.0.1:40000";

fn tone(freq: f64, n: usize, start: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (8000.0 * (std::f64::consts::TAU * freq * i as f64 / 16000.0).sin()) as i16)
        .collect()
}

/// The browser's side: an offer with one sendrecv audio line.
fn browser(now: Instant) -> (Rtc, String, str0m::change::SdpPendingOffer, Mid) {
    let mut rtc = Rtc::builder().build(now);
    rtc.add_local_candidate(Candidate::host(BROWSER.parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending, mid)
}

/// What one side heard: Opus payloads decoded at 16 kHz.
#[derive(Default)]
struct Heard(Vec<i16>);

impl Heard {
    fn add(&mut self, dec: &mut Decoder, payload: &[u8]) {
        let mut pcm = [0i16; ROOM_FRAME];
        dec.decode(payload, &mut pcm).unwrap();
        self.0.extend_from_slice(&pcm);
    }
}

#[test]
fn a_browser_connects_and_is_heard_both_ways() {
    let t0 = Instant::now();
    let (mut web, offer, pending, mid) = browser(t0);
    let server: SocketAddr = SERVER.parse().unwrap();
    let browser_addr: SocketAddr = BROWSER.parse().unwrap();
    let (mut ours, answer) =
        WebSession::accept(&offer, server, Duration::from_secs(10), t0).expect("offer accepted");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("opus/48000/2"), "{answer}");
    web.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let mut pt = None;
    let mut enc = Encoder::new(
        Codec::Opus,
        OpusParams {
            max_playback_rate: None,
            inband_fec: false,
        },
    )
    .unwrap();
    let (mut room_dec, mut web_dec) = (
        Decoder::new(Codec::Opus, 16000).unwrap(),
        Decoder::new(Codec::Opus, 16000).unwrap(),
    );
    let (mut room_heard, mut web_heard) = (Heard::default(), Heard::default());
    let mut payload = Vec::new();
    let mut room_ts = Vec::new();
    let mut now = t0;
    // 3 s of virtual time in 5 ms steps; a frame each way every 20 ms.
    for step in 0..600u64 {
        now = t0 + Duration::from_millis(5 * step);
        // The browser's output, into our session.
        loop {
            match web.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    assert_eq!(t.destination, server);
                    ours.on_datagram(&t.contents, browser_addr, now);
                }
                Output::Event(Event::MediaData(d)) => {
                    web_heard.add(&mut web_dec, &d.data);
                }
                Output::Event(_) => {}
            }
        }
        // Ours, into the browser.
        while let Some((to, bytes)) = ours.next_transmit() {
            assert_eq!(to, browser_addr);
            let r = Receive::new(Protocol::Udp, server, browser_addr, &bytes).unwrap();
            web.handle_input(Input::Receive(now, r)).unwrap();
            // Drained at the top of the next round, before another input.
            while let Ok(o) = web.poll_output() {
                match o {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => ours.on_datagram(&t.contents, browser_addr, now),
                    Output::Event(Event::MediaData(d)) => web_heard.add(&mut web_dec, &d.data),
                    Output::Event(_) => {}
                }
            }
        }
        while let Some((ts, frame)) = ours.next_heard() {
            room_ts.push(ts);
            room_heard.add(&mut room_dec, &frame);
        }
        if step % 4 == 0 {
            let n = (step / 4) as usize;
            // The room's mix to the browser: 600 Hz.
            ours.audio_frame(
                Some(Mix::Pcm(&tone(600.0, ROOM_FRAME, n * ROOM_FRAME))),
                now,
            );
            // The browser's microphone: 1 kHz.
            if web.is_connected() {
                let w = web.writer(mid).unwrap();
                let p = *pt.get_or_insert_with(|| w.payload_params().next().unwrap().pt());
                enc.encode(&tone(1000.0, ROOM_FRAME, n * ROOM_FRAME), &mut payload)
                    .unwrap();
                let time = MediaTime::new(960 * n as u64, Frequency::FORTY_EIGHT_KHZ);
                w.write(p, now, time, payload.clone()).unwrap();
            }
        }
        if now >= ours.poll_timeout() {
            ours.handle_timeout(now);
        }
        web.handle_input(Input::Timeout(now)).unwrap();
    }
    assert!(ours.connected(), "DTLS never completed");
    assert_eq!(
        ours.poll_event(),
        None::<MediaEvent>,
        "no timeout while media flows"
    );
    // Both ways carry well over two seconds of the other's tone.
    assert!(
        room_heard.0.len() > 100 * ROOM_FRAME,
        "{}",
        room_heard.0.len()
    );
    assert!(
        web_heard.0.len() > 100 * ROOM_FRAME,
        "{}",
        web_heard.0.len()
    );
    let tail = |x: &[i16]| x[x.len() - 50 * ROOM_FRAME..].to_vec();
    let room = tail(&room_heard.0);
    let webs = tail(&web_heard.0);
    assert!(
        band_db(&room, 16000, 900.0, 1100.0) > -1.0,
        "room side hears 1 kHz"
    );
    assert!(
        band_db(&webs, 16000, 500.0, 700.0) > -1.0,
        "browser hears 600 Hz"
    );
    // RTP time in 48 kHz units, 960 per frame.
    assert!(
        room_ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 960),
        "{room_ts:?}"
    );
    let stats = ours.stats();
    assert!(stats.sent > 100 && stats.received > 100, "{stats:?}");
    let _ = now;
}

#[test]
fn an_offer_without_audio_or_not_sdp_is_refused() {
    let now = Instant::now();
    let server: SocketAddr = SERVER.parse().unwrap();
    let err = WebSession::accept("hello", server, Duration::from_secs(10), now).err();
    assert!(matches!(err, Some(OfferError::Sdp(_))), "{err:?}");
    let mut rtc = Rtc::builder().build(now);
    rtc.add_local_candidate(Candidate::host(BROWSER.parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_channel("chat".into());
    let (offer, _) = change.apply().unwrap();
    let err =
        WebSession::accept(&offer.to_sdp_string(), server, Duration::from_secs(10), now).err();
    assert!(matches!(err, Some(OfferError::NoOpus)), "{err:?}");
}

#[test]
fn strangers_datagrams_do_not_disturb_a_session() {
    let t0 = Instant::now();
    let (_web, offer, _pending, _) = browser(t0);
    let server: SocketAddr = SERVER.parse().unwrap();
    let (mut ours, _) = WebSession::accept(&offer, server, Duration::from_secs(10), t0).unwrap();
    let stranger: SocketAddr = "127.0.0.9:4000".parse().unwrap();
    // Garbage, an RTP-looking packet, a short STUN-looking header, no UTF-8.
    let junk: [&[u8]; 4] = [
        b"",
        &[
            0x80, 0x6f, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
        ],
        &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42],
        &[0xff; 300],
    ];
    for bytes in junk {
        ours.on_datagram(bytes, stranger, t0);
    }
    assert!(
        ours.next_transmit().is_none(),
        "strangers are never answered"
    );
    assert!(ours.next_heard().is_none());
    assert!(!ours.connected());
}
