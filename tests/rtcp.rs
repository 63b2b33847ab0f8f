//! RTCP over real sockets: a test phone in a room gets our sender reports
//! (on `a=rtcp`'s port, or muxed on the RTP port), answers with receiver
//! reports, and the room listing shows its round-trip time and an estimated
//! MOS; RTCP from a stranger is ignored; the last report carries a BYE; and
//! a line that an impairment relay makes lossy raises `member_quality`.

#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::RawPhone;
use common::relay::Relay;
use common::{daemon, next_event, offer, rtp_socket, sdp_rtp_addr};
use confgate::conference::MemberStatus;
use confgate::daemon::Daemon;
use confgate::events::{Event, QualityState};
use confgate::rtp::packet::RtpSender;
use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::SourceDescription;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(5);
/// Longer than the longest randomized interval (7.5 s / 1.21828 ≈ 6.2 s).
const REPORT_WAIT: Duration = Duration::from_secs(8);

/// A call from `rtp` that has joined room 2468 by INFO; where the daemon
/// takes RTP, and the answer.
async fn in_room(
    d: &Daemon,
    phone: &mut RawPhone,
    rtp: &UdpSocket,
    extra: &str,
) -> (SocketAddr, String) {
    in_room_via(d, phone, rtp.local_addr().unwrap(), extra).await
}

/// The same, with `media` as the address the offer names.
async fn in_room_via(
    d: &Daemon,
    phone: &mut RawPhone,
    media: SocketAddr,
    extra: &str,
) -> (SocketAddr, String) {
    let mut events = d.subscribe();
    phone.invite(&offer(media, "0", extra)).await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let ok = seen.last().expect("a final response");
    assert_eq!(ok.code, 200, "{seen:#?}");
    phone.ack(None).await;
    let answer = ok.body().to_owned();
    for digit in "2468#".chars() {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        phone
            .in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", &body)
            .await;
        phone.until_final("INFO", WAIT).await;
    }
    let room = next_event(&mut events, WAIT * 2, |e| match e {
        Event::MemberJoined { room, .. } => Some(room),
        _ => None,
    })
    .await;
    assert_eq!(room.as_deref(), Some("2468"));
    (sdp_rtp_addr(&answer).expect("answer has media"), answer)
}

/// The phone talks: a quiet PCMU stream every 20 ms until `stop`.
fn talk(rtp: Arc<UdpSocket>, dest: SocketAddr, ssrc: u32, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut tx = RtpSender::new(ssrc, 100, 1000);
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            tx.packetize(0, &[0xfe; 160], 160, &mut out);
            rtp.send_to(&out, dest).await.ok();
        }
    });
}

fn parse(bytes: &[u8]) -> Option<Vec<Box<dyn Packet + Send + Sync>>> {
    rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(bytes)).ok()
}

fn is_rtcp(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && (200..=204).contains(&bytes[1])
}

/// The next RTCP compound packet on `sock` (RTP on a muxed socket is skipped).
async fn next_report(
    sock: &UdpSocket,
    wait: Duration,
) -> Option<(Vec<Box<dyn Packet + Send + Sync>>, SocketAddr, Instant)> {
    let mut buf = [0u8; 2048];
    let end = Instant::now() + wait;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        let (n, from) = tokio::time::timeout(left, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if is_rtcp(&buf[..n]) {
            return parse(&buf[..n]).map(|p| (p, from, Instant::now()));
        }
    }
}

fn sender_report(packets: &[Box<dyn Packet + Send + Sync>]) -> Option<&SenderReport> {
    packets.first()?.as_any().downcast_ref::<SenderReport>()
}

/// Our receiver report on `sr`, claiming to have held it `claimed` (in
/// DLSR), with `fraction_lost`/256 of its packets lost.
fn receiver_report(
    phone_ssrc: u32,
    sr: &SenderReport,
    claimed: Duration,
    fraction_lost: u8,
) -> Vec<u8> {
    let rr = ReceiverReport {
        ssrc: phone_ssrc,
        reports: vec![ReceptionReport {
            ssrc: sr.ssrc,
            fraction_lost,
            total_lost: 0,
            last_sequence_number: 0,
            jitter: 16,
            last_sender_report: (sr.ntp_time >> 16) as u32,
            delay: (claimed.as_secs_f64() * 65536.0) as u32,
        }],
        profile_extensions: Bytes::new(),
    };
    let packets: Vec<Box<dyn Packet + Send + Sync>> = vec![Box::new(rr)];
    rtcp::packet::marshal(&packets).expect("marshal").to_vec()
}

/// The one member, once `ready` holds for it (or after `wait`).
async fn member_when(
    d: &Daemon,
    wait: Duration,
    ready: impl Fn(&MemberStatus) -> bool,
) -> Option<MemberStatus> {
    let board = d.switchboard();
    let end = Instant::now() + wait;
    while Instant::now() < end {
        let member = board
            .rooms()
            .await
            .into_iter()
            .flat_map(|r| r.members)
            .next();
        if let Some(m) = member.filter(|m| ready(m)) {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_both_ways_and_the_member_gets_a_round_trip_time_and_a_mos() {
    let d = daemon(&[]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "rtcp-reports").await;
    let rtp = Arc::new(rtp_socket().await);
    // Its RTCP on a port of its own, named by a=rtcp (RFC 3605).
    let rtcp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtcp_port = rtcp_sock.local_addr().unwrap().port();
    let (dest, answer) = in_room(&d, &mut phone, &rtp, &format!("a=rtcp:{rtcp_port}\r\n")).await;
    assert!(!answer.contains("rtcp-mux"), "{answer}");
    let stop = Arc::new(AtomicBool::new(false));
    talk(rtp.clone(), dest, 0x5eed, stop.clone());

    // Our sender report comes, with its CNAME, from the RTP port + 1.
    let (packets, from, _) = next_report(&rtcp_sock, REPORT_WAIT)
        .await
        .expect("an RTCP report");
    assert_eq!(from, SocketAddr::new(dest.ip(), dest.port() + 1));
    let sr = sender_report(&packets).expect("the daemon sends audio: SR first");
    assert!(sr.packet_count > 0 && sr.octet_count >= 160 * sr.packet_count);
    let sdes = packets[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .expect("SDES");
    let cname = String::from_utf8_lossy(&sdes.chunks[0].items[0].text).into_owned();
    assert!(cname.ends_with("@confgate"), "{cname}");
    // The SR's block reports our stream, and our SSRC.
    let block = &sr.reports[0];
    assert_eq!(block.ssrc, 0x5eed);

    // We answer 150 ms later but claim 100 ms: the daemon sees ~50 ms RTT.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let rr = receiver_report(0x5eed, sr, Duration::from_millis(100), 0);
    rtcp_sock.send_to(&rr, from).await.unwrap();
    let m = member_when(&d, REPORT_WAIT, |m| m.quality.rtt_ms.is_some())
        .await
        .expect("an RTT listed");
    let rtt = m.quality.rtt_ms.unwrap();
    assert!((45.0..90.0).contains(&rtt), "rtt {rtt} ms");
    assert_eq!(m.quality.remote_lost, Some(0.0));
    assert_eq!(m.quality.remote_jitter_ms, Some(2.0), "16 samples at 8 kHz");
    let mos = m.quality.mos.expect("a MOS");
    assert!((4.2..=4.45).contains(&mos), "mos {mos}");

    // Hanging up sends a last report with BYE.
    stop.store(true, Ordering::Relaxed);
    phone.in_dialog("BYE", "", "").await;
    phone.until_final("BYE", WAIT).await;
    let mut saw_bye = false;
    while let Some((packets, _, _)) = next_report(&rtcp_sock, WAIT).await {
        if packets.iter().any(|p| p.as_any().is::<Goodbye>()) {
            saw_bye = true;
            break;
        }
    }
    assert!(saw_bye, "RTCP BYE at the end");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rtcp_mux_reports_share_the_rtp_port_and_a_strangers_are_ignored() {
    let d = daemon(&[]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "rtcp-mux").await;
    let rtp = Arc::new(rtp_socket().await);
    let (dest, answer) = in_room(&d, &mut phone, &rtp, "a=rtcp-mux\r\n").await;
    assert!(answer.contains("a=rtcp-mux"), "{answer}");
    let stop = Arc::new(AtomicBool::new(false));
    talk(rtp.clone(), dest, 0xabc, stop.clone());

    // A stranger on another address sends a receiver report of doom.
    let (packets, from, _) = next_report(&rtp, REPORT_WAIT)
        .await
        .expect("RTCP on the RTP port");
    assert_eq!(from, dest, "muxed: from the RTP port");
    let sr = sender_report(&packets).expect("SR").clone();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.expect("127.0.0.2");
    let doom = receiver_report(0xabc, &sr, Duration::ZERO, 255);
    stranger.send_to(&doom, dest).await.unwrap();
    // Two more of our reports: the listing has taken whatever it would.
    for _ in 0..2 {
        next_report(&rtp, REPORT_WAIT).await.expect("reports go on");
    }
    let m = member_when(&d, WAIT, |m| m.quality.mos.is_some())
        .await
        .expect("a MOS from our own view");
    assert_eq!(
        m.quality.remote_lost, None,
        "the stranger's report was not taken"
    );
    assert!(m.quality.mos.unwrap() > 4.0, "{:?}", m.quality);
    // The phone's own report is taken, muxed.
    let (packets, _, _) = next_report(&rtp, REPORT_WAIT).await.expect("a report");
    let sr = sender_report(&packets).expect("SR").clone();
    rtp.send_to(&receiver_report(0xabc, &sr, Duration::ZERO, 64), dest)
        .await
        .unwrap();
    let m = member_when(&d, REPORT_WAIT, |m| m.quality.remote_lost.is_some())
        .await
        .expect("the phone's report");
    assert_eq!(m.quality.remote_lost, Some(0.25));
    stop.store(true, Ordering::Relaxed);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_line_raises_member_quality_and_clears_when_it_recovers() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "rtcp-lossy").await;
    let rtp = Arc::new(rtp_socket().await);
    // An impairment relay on the media path: the daemon is offered its
    // address, the phone sends through it.
    let relay = Relay::new().await;
    let (dest, _) = in_room_via(&d, &mut phone, relay.daemon_side(), "").await;
    relay.set_upstream(dest);
    relay.set_drop_percents(10, 0);
    let stop = Arc::new(AtomicBool::new(false));
    talk(rtp.clone(), relay.phone_side(), 0x1055, stop.clone());
    let degraded = next_event(&mut events, Duration::from_secs(30), |e| match e {
        Event::MemberQuality { mos, state, .. } => Some((mos, state)),
        _ => None,
    })
    .await;
    let (mos, state) = degraded.expect("member_quality within 30 s");
    assert_eq!(state, QualityState::Degraded);
    assert!(mos < 3.5, "{mos}");
    let lost = relay.counts().to_daemon;
    assert!(
        lost.dropped * 100 > (lost.forwarded + lost.dropped) * 7,
        "{lost:?}"
    );
    let m = member_when(&d, WAIT, |_| true).await.expect("listed");
    assert!(m.quality.mos.is_some_and(|m| m < 3.5), "{:?}", m.quality);
    relay.set_drop_percents(0, 0);
    let recovered = next_event(&mut events, Duration::from_secs(15), |e| match e {
        Event::MemberQuality { mos, state, .. } => Some((mos, state)),
        _ => None,
    })
    .await;
    let (mos, state) = recovered.expect("recovery within 15 s");
    assert_eq!(state, QualityState::Recovered);
    assert!(mos >= 3.5, "{mos}");
    stop.store(true, Ordering::Relaxed);
    d.shutdown().await;
}
