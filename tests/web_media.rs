//! A browser member over real sockets, beside a real phone: a str0m peer
//! (the browser's part, with full ICE and its own offer) is admitted by
//! the daemon's joiner with the room's PIN and talks to it over UDP on
//! loopback. A baresip phone in the same room hears the browser's tone and
//! the browser hears the phone's; `rooms --json` lists the browser as
//! `direction: web` on Opus. Wrong PINs from the join page count toward
//! the same lockout as phone callers'.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::baresip::{Baresip, Options};
use common::daemon;
use common::signal::{goertzel, temp_dir, write_wav_at};
use confgate::media::codec::{Codec, Decoder, Encoder, OpusParams, ROOM_FRAME};
use confgate::web::{JoinAsk, JoinRefused};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

fn sine(rate: u32, freq: f64, n: usize, start: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| {
            (6000.0 * (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin()) as i16
        })
        .collect()
}

/// The browser's part: an `Rtc` on a UDP socket of its own.
struct Browser {
    rtc: Rtc,
    socket: UdpSocket,
    mid: Mid,
}

impl Browser {
    async fn offer() -> (Browser, String, str0m::change::SdpPendingOffer) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        (Browser { rtc, socket, mid }, offer.to_sdp_string(), pending)
    }

    fn peer(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Run for `secs`, sending a `freq` tone each 20 ms once connected;
    /// returns what it heard, 16 kHz.
    async fn talk(&mut self, freq: f64, secs: u64) -> Vec<i16> {
        let mut enc = Encoder::new(Codec::Opus, OpusParams::default()).unwrap();
        let mut dec = Decoder::new(Codec::Opus, 16000).unwrap();
        let (mut heard, mut payload, mut buf) = (Vec::new(), Vec::new(), vec![0u8; 2000]);
        let local = self.peer();
        let end = Instant::now() + Duration::from_secs(secs);
        let mut next_frame = Instant::now();
        let mut n = 0usize;
        while Instant::now() < end {
            let timeout = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        self.socket.send_to(&t.contents, t.destination).await.ok();
                    }
                    Output::Event(Event::MediaData(d)) => {
                        let mut pcm = [0i16; ROOM_FRAME];
                        if dec.decode(&d.data, &mut pcm).is_ok() {
                            heard.extend_from_slice(&pcm);
                        }
                    }
                    Output::Event(_) => {}
                }
            };
            let wake = timeout.min(next_frame).max(Instant::now());
            let input = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((len, from)) => {
                        let Ok(r) = Receive::new(Protocol::Udp, from, local, &buf[..len]) else { continue };
                        Input::Receive(Instant::now(), r)
                    }
                    Err(_) => continue,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= next_frame && self.rtc.is_connected() {
                        next_frame += Duration::from_millis(20);
                        let w = self.rtc.writer(self.mid).unwrap();
                        let pt = w.payload_params().next().unwrap().pt();
                        enc.encode(&sine(16000, freq, ROOM_FRAME, n * ROOM_FRAME), &mut payload).unwrap();
                        let time = MediaTime::new(960 * n as u64, Frequency::FORTY_EIGHT_KHZ);
                        n += 1;
                        w.write(pt, Instant::now(), time, payload.clone()).unwrap();
                        continue;
                    }
                    if Instant::now() >= next_frame {
                        next_frame += Duration::from_millis(20);
                    }
                    Input::Timeout(Instant::now())
                }
            };
            self.rtc.handle_input(input).unwrap();
        }
        heard
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_and_a_phone_hear_each_other() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let dir = temp_dir("web-media");
    let mic = dir.join("phone.wav");
    write_wav_at(&mic, &sine(8000, 700.0, 8000 * 40, 0), 8000);
    let mut phone = Baresip::start_with("pcmu", &mic, false, &Options::default()).await;
    let (room, _) = phone
        .join_room(d.sip_addr(), "2468#", Duration::ZERO, &mut events)
        .await;
    assert_eq!(room.as_deref(), Some("2468"));

    let (mut browser, offer, pending) = Browser::offer().await;
    let joined = d
        .joiner()
        .join(JoinAsk {
            room: "2468".into(),
            pin: "2468".into(),
            offer,
            peer: browser.peer(),
        })
        .await
        .expect("the browser is admitted");
    assert!(joined.answer.contains("a=ice-lite"), "{}", joined.answer);
    browser
        .rtc
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&joined.answer).unwrap())
        .unwrap();
    let joined_event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(confgate::events::Event::MemberJoined {
                call,
                direction,
                direct,
                ..
            }) = events.recv().await
            {
                if call == joined.call {
                    return (direction, direct);
                }
            }
        }
    })
    .await;
    assert_eq!(
        joined_event.ok(),
        Some((confgate::events::Direction::Web, false)),
        "member_joined says web"
    );
    let heard = browser.talk(1000.0, 6).await;
    assert!(browser.rtc.is_connected(), "ICE and DTLS completed");

    let rooms = common::rooms_json(&d);
    let out = rooms.to_string();
    let web = rooms[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["direction"] == "web")
        .unwrap_or_else(|| panic!("no web member: {out}"))
        .clone();
    assert_eq!(web["call"], joined.call.as_str(), "{out}");
    assert_eq!(web["codec"], "opus", "{out}");

    // The browser heard the phone's 700 Hz, and not its own 1 kHz back.
    assert!(
        heard.len() > 16000 * 3,
        "the browser heard {} samples",
        heard.len()
    );
    let tail = &heard[heard.len() - 16000 * 2..];
    let (phone_tone, own, floor) = (
        db(goertzel(tail, 16000, 700.0)),
        db(goertzel(tail, 16000, 1000.0)),
        db(goertzel(tail, 16000, 2300.0)),
    );
    eprintln!(
        "browser hears 700 Hz {phone_tone:.1} dB, its own 1 kHz {own:.1} dB, floor {floor:.1} dB"
    );
    assert!(phone_tone - floor > 20.0, "browser hears the phone");
    assert!(own < phone_tone - 30.0, "browser does not hear itself");

    // Dropping the page's side takes the member out of the room.
    drop(joined.leave);
    let left = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(confgate::events::Event::MemberLeft { call, .. }) = events.recv().await {
                if call == joined.call {
                    return;
                }
            }
        }
    })
    .await;
    assert!(left.is_ok(), "the browser member left when its page went");

    let rec = Baresip::heard(&phone.quit().await).expect("a recording");
    d.shutdown().await;
    let samples: Vec<i16> = hound::WavReader::open(&rec)
        .unwrap()
        .samples::<i16>()
        .map_while(Result::ok)
        .collect();
    // The phone's last seconds with the browser in: 1 kHz well over the floor.
    let rate = 8000;
    assert!(samples.len() > rate * 5, "{} samples", samples.len());
    let window = &samples[samples.len() - rate * 4..samples.len() - rate * 2];
    let (tone, floor) = (
        db(goertzel(window, rate as u32, 1000.0)),
        db(goertzel(window, rate as u32, 2300.0)),
    );
    eprintln!("phone hears 1 kHz {tone:.1} dB over floor {floor:.1} dB");
    assert!(tone - floor > 20.0, "the phone hears the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_on_the_join_page_lock_the_browser_out() {
    let d = daemon(&["pin.caller_failures=3"]).await;
    let mut events = d.subscribe();
    let joiner = d.joiner();
    let ask = |pin: &str, offer: String| JoinAsk {
        room: "2468".into(),
        pin: pin.into(),
        offer,
        peer: "127.0.0.1:5555".parse().unwrap(),
    };
    let (_b, offer, _) = Browser::offer().await;
    // A PIN of another room is as wrong as any.
    for pin in ["1111", "9999"] {
        let r = joiner.join(ask(pin, offer.clone())).await;
        assert!(matches!(r, Err(JoinRefused::WrongPin)), "{:?}", r.err());
    }
    let r = joiner.join(ask("1357", offer.clone())).await;
    assert!(
        matches!(r, Err(JoinRefused::LockedOut)),
        "the third: {:?}",
        r.err()
    );
    // Now even the right PIN is refused, and the lockout was published.
    let r = joiner.join(ask("2468", offer.clone())).await;
    assert!(matches!(r, Err(JoinRefused::LockedOut)), "{:?}", r.err());
    let mut lockouts = 0;
    while let Ok(e) = events.try_recv() {
        if let confgate::events::Event::PinLockout { key, .. } = e {
            assert!(key.contains("127.0.0.1"), "{key}");
            lockouts += 1;
        }
    }
    // One for the attempt that locked it, one for the refused right PIN.
    assert_eq!(lockouts, 2);
    // A garbage offer with the right PIN from elsewhere is refused as such.
    let other = JoinAsk {
        peer: "127.0.0.2:5555".parse().unwrap(),
        ..ask("2468", "v=0 nonsense".into())
    };
    let r = joiner.join(other).await;
    assert!(matches!(r, Err(JoinRefused::BadOffer(_))), "{:?}", r.err());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_link_lets_a_browser_in_without_a_pin_only_where_allowed() {
    let token = "control.token=web-test-token-0123456789";
    for links in [false, true] {
        let on = format!("web.room_links={links}");
        let d = daemon(&["web.listen=127.0.0.1:0", token, &on]).await;
        let (b, offer, _) = Browser::offer().await;
        let ask = JoinAsk {
            room: "lobby".into(),
            pin: String::new(),
            offer,
            peer: b.peer(),
        };
        let r = d.joiner().join(ask).await;
        match links {
            false => assert!(matches!(r, Err(JoinRefused::WrongPin)), "{:?}", r.err()),
            true => {
                let joined = r.expect("a link names the room");
                let rooms = d.conference().rooms().await;
                assert_eq!(rooms.len(), 1);
                assert_eq!(rooms[0].room, "lobby");
                assert_eq!(rooms[0].members[0].call, joined.call);
            }
        }
        d.shutdown().await;
    }
}
