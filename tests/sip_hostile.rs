//! What the network may throw at the SIP side, over real sockets: INFOs sent
//! back to back, requests out of CSeq order, a reused Call-ID, more calls than
//! the daemon admits, and sources it does not accept.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw::RawPhone;
use common::{daemon, offer, rtp_socket};
use confgate::daemon::{Daemon, Held};
use confgate::events::Event;
use tokio::net::UdpSocket;
use tokio::sync::broadcast::Receiver;

const WAIT: Duration = Duration::from_secs(5);

/// An answered, acknowledged call from `phone`; its RTP socket.
async fn answered(phone: &mut RawPhone) -> UdpSocket {
    let rtp = rtp_socket().await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(200), "{seen:#?}");
    phone.ack(None).await;
    rtp
}

fn info(phone: &mut RawPhone, cseq: u32, digit: char) -> String {
    let body = format!("Signal={digit}\r\nDuration=160\r\n");
    phone.request(
        "INFO",
        cseq,
        "INFO",
        &format!("info{cseq}"),
        "Content-Type: application/dtmf-relay\r\n",
        &body,
    )
}

/// Final responses to INFO by CSeq number, until `n` have come.
async fn info_answers(phone: &RawPhone, n: usize) -> Vec<(u32, u16, Option<String>)> {
    let mut answers = Vec::new();
    while answers.len() < n {
        let Some(r) = phone.recv(WAIT).await else {
            break;
        };
        let cseq = r.header("CSeq").unwrap_or("");
        if r.code >= 200 && cseq.ends_with("INFO") {
            let num = cseq.split_whitespace().next().and_then(|n| n.parse().ok());
            answers.push((
                num.unwrap_or(0),
                r.code,
                r.header("Retry-After").map(str::to_owned),
            ));
        }
    }
    answers.sort();
    answers
}

/// The next event `pick` accepts, waiting longer than for one SIP answer.
async fn next<T>(events: &mut Receiver<Event>, pick: impl FnMut(Event) -> Option<T>) -> Option<T> {
    common::next_event(events, WAIT * 2, pick).await
}

async fn hang_up(phone: &mut RawPhone) {
    phone.in_dialog("BYE", "", "").await;
    phone.until_final("BYE", WAIT).await;
}

/// Wait until the daemon holds nothing for any call (what expires on its
/// own clock aside: the stack's finished transactions, wrong PINs).
async fn nothing_held(d: &Daemon) -> Held {
    for _ in 0..100 {
        if d.held().calls() == Held::default() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.held().calls()
}

// Several worker threads, as the daemon runs: requests handled on tasks of
// their own then race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_infos_sent_back_to_back_all_reach_the_room() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "info-burst").await;
    let _rtp = answered(&mut phone).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One datagram after the other, as one softphone stack sends a PIN:
    // five transactions, CSeq 2..6, within a millisecond.
    let burst: Vec<String> = "1357#"
        .chars()
        .enumerate()
        .map(|(i, digit)| info(&mut phone, 2 + i as u32, digit))
        .collect();
    for request in &burst {
        phone.send_raw(request.as_bytes()).await;
    }
    let answers = info_answers(&phone, 5).await;
    let codes: Vec<(u32, u16)> = answers.iter().map(|a| (a.0, a.1)).collect();
    assert_eq!(codes, [(2, 200), (3, 200), (4, 200), (5, 200), (6, 200)]);
    let mut digits = String::new();
    let room = next(&mut events, |e| match e {
        Event::Digit { digit, .. } => {
            digits.push(digit);
            None
        }
        Event::MemberJoined { room, .. } => Some(room),
        _ => None,
    })
    .await;
    assert_eq!(digits, "1357#");
    assert_eq!(room.as_deref(), Some("1357"));
    let bye = phone.request("BYE", 7, "BYE", "bye7", "", "");
    phone.send_raw(bye.as_bytes()).await;
    let r = phone.until_final("BYE", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
    assert_eq!(nothing_held(&d).await.dialog_queues, 0);
    d.shutdown().await;
}

#[tokio::test]
async fn a_request_older_than_one_handled_gets_500_with_retry_after() {
    let d = daemon(&[]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "info-old").await;
    let _rtp = answered(&mut phone).await;
    let newer = info(&mut phone, 10, '1');
    phone.send_raw(newer.as_bytes()).await;
    assert_eq!(info_answers(&phone, 1).await, [(10, 200, None)]);
    let older = info(&mut phone, 9, '2');
    phone.send_raw(older.as_bytes()).await;
    assert_eq!(info_answers(&phone, 1).await, [(9, 500, Some("1".into()))]);
    // Its retransmission gets the same answer again.
    phone.send_raw(older.as_bytes()).await;
    assert_eq!(info_answers(&phone, 1).await, [(9, 500, Some("1".into()))]);
    // The dialog goes on: the next request in order is handled.
    let next_one = info(&mut phone, 11, '3');
    phone.send_raw(next_one.as_bytes()).await;
    assert_eq!(info_answers(&phone, 1).await, [(11, 200, None)]);
    d.shutdown().await;
}

/// The PIN `pin#` by INFO, one transaction after the other.
async fn key_pin(phone: &mut RawPhone, pin: &str) {
    for digit in format!("{pin}#").chars() {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        phone
            .in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", &body)
            .await;
        let r = phone.until_final("INFO", WAIT).await;
        assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
    }
}

#[tokio::test]
async fn two_calls_with_one_call_id_from_two_ports_are_two_calls() {
    let d = daemon(&[]).await;
    let board = d.switchboard();
    let mut first = RawPhone::new(d.sip_addr(), "same-call-id@attacker").await;
    let mut second = RawPhone::new(d.sip_addr(), "same-call-id@attacker").await;
    second.from_tag = "other-tag".into();
    let _a = answered(&mut first).await;
    let _b = answered(&mut second).await;
    key_pin(&mut first, "2468").await;
    key_pin(&mut second, "2468").await;
    let members = members_once(&*board, 2).await;
    assert_eq!(members.len(), 2, "{members:#?}");
    assert_ne!(members[0].call, members[1].call, "each call has its own id");
    for m in &members {
        assert_eq!(m.sip_call_id, "same-call-id@attacker");
        assert_eq!(m.call.len(), 8, "{}", m.call);
    }
    // Hanging one up leaves the other in its room.
    let port = format!(":{}", first.local().port());
    let i = members
        .iter()
        .position(|m| m.from.ends_with(&port))
        .expect("the first phone is listed by its From");
    board.hangup(&members[i].call).await.expect("hangup");
    let bye = first.recv_request(WAIT).await.unwrap_or_default();
    assert!(bye.starts_with("BYE"), "{bye}");
    let left = members_once(&*board, 1).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].call, members[1 - i].call);
    d.shutdown().await;
}

/// Every member of every room, once there are `n` of them (or after 5 s).
async fn members_once(
    board: &dyn confgate::control::Switchboard,
    n: usize,
) -> Vec<confgate::conference::MemberStatus> {
    let mut members = Vec::new();
    for _ in 0..100 {
        members = board
            .rooms()
            .await
            .into_iter()
            .flat_map(|r| r.members)
            .collect();
        if members.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    members
}

#[tokio::test]
async fn calls_beyond_max_calls_get_503_with_retry_after_and_no_port() {
    let settings = common::settings(&["calls.max_calls=2", "calls.idle_timeout_secs=2"]);
    let d = Daemon::start(settings).await.expect("daemon starts");
    let mut one = RawPhone::new(d.sip_addr(), "cap-1").await;
    let mut two = RawPhone::new(d.sip_addr(), "cap-2").await;
    let _a = answered(&mut one).await;
    let _b = answered(&mut two).await;
    // The daemon's own count: other tests in this process bind ports too,
    // some of them inside this daemon's range.
    assert_eq!(d.held().rtp_ports, 2);

    let mut three = RawPhone::new(d.sip_addr(), "cap-3").await;
    let rtp = rtp_socket().await;
    three
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = three.until_final("INVITE", WAIT).await;
    let last = seen.last().expect("an answer");
    assert_eq!(last.code, 503, "{seen:#?}");
    assert!(last.header("Retry-After").is_some(), "{last:#?}");
    assert!(
        seen.iter().all(|r| r.code == 100 || r.code == 503),
        "{seen:#?}"
    );
    three.ack(Some("inv1")).await;
    assert_eq!(d.held().rtp_ports, 2, "no port taken");

    // A call that never keys its PIN gives its slot back at the idle timeout.
    hang_up(&mut one).await;
    let _ = two.recv_request(WAIT).await.expect("idle call hung up");
    let held = nothing_held(&d).await;
    assert_eq!(held.admitted, 0, "{held:?}");
    let mut four = RawPhone::new(d.sip_addr(), "cap-4").await;
    let _c = answered(&mut four).await;
    d.shutdown().await;
}

async fn phone_on(ip: [u8; 4], server: SocketAddr, call_id: &str) -> RawPhone {
    let mut phone = RawPhone::new(server, call_id).await;
    phone.sock = UdpSocket::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("bind");
    phone
}

#[tokio::test]
async fn max_per_source_caps_one_address_and_not_the_others() {
    let d = daemon(&["calls.max_per_source=1"]).await;
    let mut first = RawPhone::new(d.sip_addr(), "src-1").await;
    let _a = answered(&mut first).await;
    let mut again = RawPhone::new(d.sip_addr(), "src-2").await;
    let rtp = rtp_socket().await;
    again
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = again.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(503), "{seen:#?}");
    let mut elsewhere = phone_on([127, 0, 0, 2], d.sip_addr(), "src-3").await;
    let _b = answered(&mut elsewhere).await;
    d.shutdown().await;
}

#[tokio::test]
async fn sources_outside_sip_allow_get_403() {
    let d = daemon(&["sip.allow=[\"127.0.0.2\"]"]).await;
    let mut stranger = RawPhone::new(d.sip_addr(), "allow-1").await;
    let rtp = rtp_socket().await;
    stranger
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = stranger.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(403), "{seen:#?}");
    stranger.to_tag = None;
    let options = stranger.request("OPTIONS", 7, "OPTIONS", "opt7", "", "");
    stranger.send_raw(options.as_bytes()).await;
    let r = stranger.recv(WAIT).await.expect("an answer to OPTIONS");
    assert_eq!(r.code, 403);
    let mut trunk = phone_on([127, 0, 0, 2], d.sip_addr(), "allow-2").await;
    let _a = answered(&mut trunk).await;
    assert_eq!(d.held().admitted, 1);
    d.shutdown().await;
}

#[tokio::test]
async fn in_a_room_a_reinvite_is_held_to_the_rooms_codec() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "codec-lock").await;
    let rtp = answered(&mut phone).await;
    let here = rtp.local_addr().unwrap();
    // Before the room, a codec change is followed.
    let r = reinvite(&mut phone, &offer(here, "8", "")).await;
    assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
    assert!(r.last().unwrap().body().contains("PCMA"));
    phone.ack(None).await;
    key_pin(&mut phone, "1357").await;
    let room = next(&mut events, |e| match e {
        Event::MemberJoined { room, .. } => Some(room),
        _ => None,
    })
    .await;
    assert_eq!(room.as_deref(), Some("1357"));
    // In the room (PCMA), PCMU alone is refused rather than mixed as noise.
    phone.in_dialog("INVITE", "", &offer(here, "0", "")).await;
    let r = phone.until_final("INVITE", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(488), "{r:#?}");
    phone.ack(Some(&format!("invite{}", phone_cseq(&r)))).await;
    // Both offered: the room's codec is kept.
    phone.in_dialog("INVITE", "", &offer(here, "0 8", "")).await;
    let r = phone.until_final("INVITE", WAIT).await;
    let ok = r.last().expect("an answer");
    assert_eq!(ok.code, 200, "{r:#?}");
    assert!(
        ok.body().contains("PCMA") && !ok.body().contains("PCMU"),
        "{}",
        ok.body()
    );
    phone.ack(None).await;
    hang_up(&mut phone).await;
    d.shutdown().await;
}

/// A re-INVITE with `sdp`, sent again while it gets 491 (the ACK of the
/// last INVITE not yet taken in), as RFC 3261 §14.1 has a phone do.
async fn reinvite(phone: &mut RawPhone, sdp: &str) -> Vec<common::raw::Response> {
    for _ in 0..20 {
        let cseq = phone.in_dialog("INVITE", "", sdp).await;
        let r = phone.until_final("INVITE", WAIT).await;
        if r.last().map(|r| r.code) != Some(491) {
            return r;
        }
        phone.ack(Some(&format!("invite{cseq}"))).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the re-INVITE kept getting 491");
}

/// The CSeq number of the last response in `r`.
fn phone_cseq(r: &[common::raw::Response]) -> u32 {
    r.last()
        .and_then(|r| r.header("CSeq"))
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinvite_never_acked_does_not_hold_up_the_bye_behind_it() {
    let d = daemon(&[]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "reinvite-no-ack").await;
    let rtp = answered(&mut phone).await;
    let here = rtp.local_addr().unwrap();
    let r = reinvite(&mut phone, &offer(here, "0", "")).await;
    assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
    // No ACK for that 200: the stack waits for one for 64·T1. The BYE
    // right behind it is answered at once all the same.
    let sent = tokio::time::Instant::now();
    phone.in_dialog("BYE", "", "").await;
    let r = phone.until_final("BYE", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    // The dialog is over: a request in it now gets 481.
    phone
        .in_dialog("INFO", "Content-Type: application/dtmf\r\n", "1")
        .await;
    let r = phone.until_final("INFO", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(481), "{r:#?}");
    assert_eq!(nothing_held(&d).await.dialog_queues, 0);
    d.shutdown().await;
}

/// One request over a new TCP connection from `local`; the first response's status line.
async fn over_tcp(server: SocketAddr, local: [u8; 4], request: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((local, 0))).expect("bind");
    let mut tcp = sock.connect(server).await.expect("TCP listens too");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn tcp_gets_the_same_screen_as_udp() {
    let d = daemon(&["sip.allow=[\"127.0.0.2\"]"]).await;
    let phone = RawPhone::new(d.sip_addr(), "tcp-screen").await;
    let rtp = rtp_socket().await;
    let invite = phone
        .request(
            "INVITE",
            1,
            "INVITE",
            "tcpinv1",
            "",
            &offer(rtp.local_addr().unwrap(), "0", ""),
        )
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let status = over_tcp(d.sip_addr(), [127, 0, 0, 1], &invite).await;
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.starts_with("SIP/2.0 403")),
        "{status:?}"
    );
    let options = phone
        .request("OPTIONS", 1, "OPTIONS", "tcpopt1", "", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let status = over_tcp(d.sip_addr(), [127, 0, 0, 2], &options).await;
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.starts_with("SIP/2.0 200")),
        "{status:?}"
    );
    // Bytes that are not SIP close that connection; the next one is served.
    let garbage = "NOT SIP AT ALL\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(over_tcp(d.sip_addr(), [127, 0, 0, 2], garbage).await, None);
    let status = over_tcp(d.sip_addr(), [127, 0, 0, 2], &options).await;
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.starts_with("SIP/2.0 200")),
        "{status:?}"
    );
    assert_eq!(d.held().admitted, 0);
    d.shutdown().await;
}
