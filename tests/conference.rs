//! Test phones key a PIN over real sockets, land in one room and hear each
//! other (and never themselves); the room closes after the last BYE. Member
//! controls, full rooms and dead peers behave as configured.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::keypad::Keypad;
use common::next_event as next;
use common::raw::RawPhone;
use common::signal::goertzel;
use common::{daemon, offer, rtp_socket, sdp_rtp_addr};
use confgate::conference::Control;
use confgate::daemon::Daemon;
use confgate::events::Event;
use confgate::media::codec::Codec;
use confgate::rtp::packet::{self, RtpSender};
use tokio::net::UdpSocket;
use tokio::sync::broadcast::Receiver;

const WAIT: Duration = Duration::from_secs(5);

struct Member {
    /// Our call id, from the join.
    call: String,
    phone: RawPhone,
    rtp: UdpSocket,
    dest: SocketAddr,
}

/// Dial, key `pin#` as RFC 4733 events, and wait for the join.
async fn join(d: &Daemon, events: &mut Receiver<Event>, id: &str, pin: &str) -> Member {
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), id).await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0 101", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let ok = seen.last().expect("final response").clone();
    assert_eq!(ok.code, 200, "{seen:#?}");
    phone.ack(None).await;
    let dest = sdp_rtp_addr(ok.body()).expect("answer address");
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events(&format!("{pin}#"), 101)
        .await;
    let joined = next(events, WAIT, |e| match e {
        Event::MemberJoined {
            call,
            sip_call_id,
            room,
            ..
        } if sip_call_id == id => Some((call, room)),
        _ => None,
    })
    .await;
    let (call, room) = joined.expect("joined");
    assert_eq!(room, pin, "{id} joins room {pin}");
    Member {
        call,
        phone,
        rtp,
        dest,
    }
}

/// Send a sine at `freq` for `secs` (silence when `freq` is 0) while
/// recording what comes back; returns the decoded audio heard.
async fn talk_and_listen(m: &Member, freq: f64, secs: f64) -> Vec<i16> {
    let mut sender = RtpSender::random();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let frames = (secs * 50.0) as usize;
    let mut sent = 0;
    let mut heard = Vec::new();
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    while sent < frames {
        tokio::select! {
            _ = tick.tick() => {
                let pcm: Vec<i16> = (0..160)
                    .map(|i| {
                        let t = (sent * 160 + i) as f64 / 8000.0;
                        (6000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
                    })
                    .collect();
                let mut enc = [0u8; 160];
                Codec::Pcmu.g711().expect("G.711").encode(&pcm, &mut enc);
                sender.packetize(0, &enc, 160, &mut out);
                m.rtp.send_to(&out, m.dest).await.unwrap();
                sent += 1;
            }
            r = m.rtp.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                if let Ok(p) = packet::parse(&buf[..n]) {
                    if p.pt == 0 {
                        let mut pcm = vec![0i16; p.payload.len()];
                        Codec::Pcmu.g711().expect("G.711").decode(p.payload, &mut pcm);
                        heard.extend(pcm);
                    }
                }
            }
        }
    }
    heard
}

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

async fn hang_up(m: &mut Member) {
    m.phone.in_dialog("BYE", "", "").await;
    let bye = m.phone.until_final("BYE", WAIT).await;
    assert_eq!(bye.last().map(|r| r.code), Some(200), "{bye:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_callers_hear_each_other_and_not_themselves() {
    three_callers(&[]).await;
}

/// Calls start on the media threads in turn and a room lives on one of
/// them: with three threads, at least two of the three callers are handed
/// over, socket and session, to the room's thread when they join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_handed_over_between_media_threads_hear_each_other() {
    three_callers(&["media.threads=3"]).await;
}

async fn three_callers(overrides: &[&str]) {
    let d = daemon(overrides).await;
    let mut events = d.subscribe();
    let mut members = Vec::new();
    for id in ["conf-a", "conf-b", "conf-c"] {
        members.push(join(&d, &mut events, id, "4321").await);
    }
    let rooms = d.conference().rooms().await;
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].room, "4321");
    assert_eq!(rooms[0].members.len(), 3);

    // Everyone talks at once for 6 s; judge the last 2 s, after the
    // announcements.
    const FREQS: [f64; 3] = [500.0, 800.0, 1300.0];
    let (a, b, c) = tokio::join!(
        talk_and_listen(&members[0], FREQS[0], 6.0),
        talk_and_listen(&members[1], FREQS[1], 6.0),
        talk_and_listen(&members[2], FREQS[2], 6.0),
    );
    for (k, heard) in [a, b, c].iter().enumerate() {
        assert!(
            heard.len() > 8000 * 5,
            "member {k} heard {} samples",
            heard.len()
        );
        let tail = &heard[heard.len() - 16000..];
        let level = |f: f64| db(goertzel(tail, 8000, f));
        let own = level(FREQS[k]);
        for (j, &f) in FREQS.iter().enumerate() {
            if j != k {
                let other = level(f);
                eprintln!(
                    "member {k}: {f} Hz {other:.1} dB, own {} Hz {own:.1} dB",
                    FREQS[k]
                );
                assert!(
                    other - own > 30.0,
                    "member {k} hears {f} Hz over its own voice"
                );
            }
        }
    }
    let talking = d.conference().rooms().await[0]
        .members
        .iter()
        .filter(|m| m.talking)
        .count();
    assert_eq!(talking, 3, "all three were talking");

    for m in members.iter_mut() {
        hang_up(m).await;
    }
    let closed = next(&mut events, WAIT, |e| match e {
        Event::RoomClosed { room } => Some(room),
        _ => None,
    })
    .await;
    assert_eq!(closed.as_deref(), Some("4321"));
    assert!(d.conference().rooms().await.is_empty());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_members_are_not_heard_and_kicked_members_get_a_bye() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let a = join(&d, &mut events, "ctl-a", "5555").await;
    let mut b = join(&d, &mut events, "ctl-b", "5555").await;
    assert!(d.conference().control(&a.call, Control::Mute(true)).await);
    assert!(
        !d.conference()
            .control("no-such-call", Control::Mute(true))
            .await
    );
    // Long enough for b's joined prompt and the count of the others.
    let (_, heard_by_b) = tokio::join!(
        talk_and_listen(&a, 700.0, 7.0),
        talk_and_listen(&b, 0.0, 7.0)
    );
    let tail = &heard_by_b[heard_by_b.len() - 8000..];
    assert!(
        db(goertzel(tail, 8000, 700.0)) < -30.0,
        "a muted member is not heard"
    );
    let listed = d.conference().rooms().await;
    assert!(listed[0]
        .members
        .iter()
        .any(|m| m.call == a.call && m.sip_call_id == "ctl-a" && m.muted));

    assert!(d.conference().control(&a.call, Control::Kick).await);
    let bye = a.phone.recv_request(WAIT).await;
    assert!(bye.is_some_and(|b| b.starts_with("BYE ")));
    let reason = next(&mut events, WAIT, |e| match e {
        Event::MemberLeft { call, reason, .. } if call == a.call => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, Some("kicked"));
    hang_up(&mut b).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_the_next_caller() {
    let d = daemon(&["rooms.max_members=2"]).await;
    let mut events = d.subscribe();
    let mut a = join(&d, &mut events, "full-a", "7777").await;
    let mut b = join(&d, &mut events, "full-b", "7777").await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "full-c").await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0 101", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let ok = seen.last().unwrap().clone();
    phone.ack(None).await;
    let dest = sdp_rtp_addr(ok.body()).unwrap();
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events("7777#", 101)
        .await;
    // The conference-full prompt plays, then the daemon hangs up.
    let bye = phone.recv_request(Duration::from_secs(10)).await;
    assert!(bye.is_some_and(|b| b.starts_with("BYE ")));
    assert_eq!(d.conference().rooms().await[0].members.len(), 2);
    hang_up(&mut a).await;
    hang_up(&mut b).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_rtp_stops_is_hung_up() {
    let d = daemon(&["rtp.timeout_secs=1"]).await;
    let mut events = d.subscribe();
    let m = join(&d, &mut events, "dead-a", "8888").await;
    // The phone goes quiet after keying its PIN.
    let bye = m.phone.recv_request(Duration::from_secs(4)).await;
    assert!(bye.is_some_and(|b| b.starts_with("BYE ")));
    let reason = next(&mut events, WAIT, |e| match e {
        Event::MemberLeft { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, Some("rtp_timeout"));
    d.shutdown().await;
}
