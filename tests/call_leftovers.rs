//! Whatever a call adds to the daemon's maps and registries goes when the
//! call ends, however it ends: the registry, admission slots and sources,
//! dialog queues, call tasks, RTP ports, room seats and rooms, PIN lockout
//! keys (when their window passes) and what rsipstack holds (dialogs,
//! transactions, their timers). Each test ends one kind of call and waits,
//! with a bound, until [`Daemon::held`] is all zero.
//!
//! SIP timer T1 is 20 ms here (T4 100 ms), so the stack forgets finished
//! transactions after 64·T1 = 1.28 s instead of 32 s.

mod common;

use std::time::Duration;

use common::callee::Callee;
use common::raw::RawPhone;
use common::{offer, rtp_socket};
use confgate::control::DialRequest;
use confgate::daemon::{Daemon, Held};
use confgate::events::Event;

const WAIT: Duration = Duration::from_secs(5);

const FAST_TIMERS: [&str; 2] = ["sip.timer_t1_ms=20", "sip.timer_t4_ms=100"];

async fn daemon(extra: &[&str]) -> Daemon {
    let mut keys: Vec<&str> = FAST_TIMERS.to_vec();
    keys.extend_from_slice(extra);
    common::daemon(&keys).await
}

/// Wait (at most 10 s) until the daemon holds nothing for any call.
async fn all_gone(d: &Daemon) -> Held {
    for _ in 0..200 {
        if d.held() == Held::default() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.held()
}

/// Wait (at most 5 s) until `ready` holds for what the daemon holds.
async fn until(d: &Daemon, ready: impl Fn(&Held) -> bool) -> Held {
    for _ in 0..100 {
        if ready(&d.held()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.held()
}

/// The next event `pick` accepts.
async fn next<T>(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    pick: impl FnMut(Event) -> Option<T>,
) -> Option<T> {
    common::next_event(events, WAIT * 2, pick).await
}

/// INVITE with an offer for `rtp` and `extra` headers; the final answer.
async fn invite(phone: &mut RawPhone, rtp: &tokio::net::UdpSocket, extra: &str) -> u16 {
    phone
        .invite_with(&offer(rtp.local_addr().unwrap(), "0 101", ""), extra)
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    seen.last().map_or(0, |r| r.code)
}

async fn hang_up(phone: &mut RawPhone) {
    phone.in_dialog("BYE", "", "").await;
    let r = phone.until_final("BYE", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
}

#[tokio::test]
async fn a_call_that_joined_a_room_leaves_nothing_after_its_bye() {
    let d = daemon(&["rooms.trusted=[\"127.0.0.1\"]", "sip.early_media=false"]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "left-bye").await;
    let rtp = rtp_socket().await;
    assert_eq!(
        invite(&mut phone, &rtp, "X-Conference-Id: r1\r\n").await,
        200
    );
    phone.ack(None).await;
    let room = next(&mut events, |e| match e {
        Event::MemberJoined { room, .. } => Some(room),
        _ => None,
    })
    .await;
    assert_eq!(room.as_deref(), Some("r1"));
    let up = d.held();
    assert_eq!(
        (up.listed, up.admitted, up.sources, up.tasks, up.rtp_ports),
        (1, 1, 1, 1, 1),
        "{up:?}"
    );
    assert_eq!(
        (up.members, up.rooms, up.stack.dialogs),
        (1, 1, 1),
        "{up:?}"
    );
    hang_up(&mut phone).await;
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn a_call_that_keyed_its_pin_by_info_leaves_nothing_after_its_bye() {
    let d = daemon(&["sip.early_media=false"]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "left-pin").await;
    let rtp = rtp_socket().await;
    assert_eq!(invite(&mut phone, &rtp, "").await, 200);
    phone.ack(None).await;
    for digit in "2468#".chars() {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        phone
            .in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", &body)
            .await;
        let r = phone.until_final("INFO", WAIT).await;
        assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
    }
    let room = next(&mut events, |e| match e {
        Event::MemberJoined { room, .. } => Some(room),
        _ => None,
    })
    .await;
    assert_eq!(room.as_deref(), Some("2468"));
    assert_eq!(d.held().dialog_queues, 1, "the INFOs queued in order");
    hang_up(&mut phone).await;
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

/// SIP messages off a TCP stream, one at a time.
struct TcpPhone {
    tcp: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl TcpPhone {
    async fn send(&mut self, message: &str) {
        use tokio::io::AsyncWriteExt;
        self.tcp.write_all(message.as_bytes()).await.expect("send");
    }

    /// The next whole message within `WAIT`.
    async fn recv(&mut self) -> Option<String> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = common::raw::header(&head, "Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let message: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8_lossy(&message).into_owned());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Responses until a final one to `method`; its status and To tag.
    async fn until_final(&mut self, method: &str) -> Option<(u16, Option<String>)> {
        loop {
            let message = self.recv().await?;
            let r = common::raw::Response::parse(message.as_bytes())?;
            if r.code >= 200 && r.cseq_method() == Some(method) {
                return Some((r.code, r.to_tag()));
            }
        }
    }
}

#[tokio::test]
async fn a_call_over_tcp_leaves_nothing_once_its_connection_closes() {
    let d = daemon(&["rooms.trusted=[\"127.0.0.1\"]", "sip.early_media=false"]).await;
    let tcp = tokio::net::TcpStream::connect(d.sip_addr()).await.unwrap();
    let mut tcp = TcpPhone {
        tcp,
        buf: Vec::new(),
    };
    let mut phone = RawPhone::new(d.sip_addr(), "left-tcp").await;
    let rtp = rtp_socket().await;
    let local = tcp.tcp.local_addr().unwrap().to_string();
    let udp_local = phone.local().to_string();
    let over_tcp = |m: String| {
        m.replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace(&udp_local, &local)
    };
    let sdp = offer(rtp.local_addr().unwrap(), "0", "");
    let invite = phone.request(
        "INVITE",
        1,
        "INVITE",
        "tinv1",
        "X-Conference-Id: t1\r\n",
        &sdp,
    );
    tcp.send(&over_tcp(invite)).await;
    let (code, to_tag) = tcp.until_final("INVITE").await.expect("an answer");
    assert_eq!(code, 200);
    phone.to_tag = to_tag;
    tcp.send(&over_tcp(phone.request("ACK", 1, "ACK", "tack1", "", "")))
        .await;
    let up = until(&d, |h| h.members == 1).await;
    assert_eq!(up.stack.connections, 1, "{up:?}");
    tcp.send(&over_tcp(phone.request("BYE", 2, "BYE", "tbye2", "", "")))
        .await;
    assert_eq!(tcp.until_final("BYE").await.map(|a| a.0), Some(200));
    drop(tcp);
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn a_call_cancelled_before_the_answer_leaves_nothing() {
    // Early media for 3 s: the caller cancels while it plays.
    let d = daemon(&["sip.early_media_ms=3000"]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "left-cancel").await;
    let rtp = rtp_socket().await;
    let branch = phone
        .invite(&offer(rtp.local_addr().unwrap(), "0 101", ""))
        .await;
    let mut progress = None;
    while let Some(r) = phone.recv(WAIT).await {
        if r.code == 183 {
            progress = Some(r);
            break;
        }
    }
    assert!(progress.is_some(), "183 with early media");
    assert_eq!(d.held().rtp_ports, 1);
    phone.cancel(&branch).await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(487), "{seen:#?}");
    phone.ack(Some(&branch)).await;
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn an_answer_never_acked_leaves_nothing_once_the_stack_gives_up() {
    let d = daemon(&["sip.early_media=false"]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "left-no-ack").await;
    let rtp = rtp_socket().await;
    assert_eq!(invite(&mut phone, &rtp, "").await, 200);
    // No ACK: the 200 is sent again until 64·T1 (1.28 s here), then the call ends.
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn an_idle_call_hung_up_by_the_daemon_leaves_nothing() {
    let d = daemon(&["sip.early_media=false", "calls.idle_timeout_secs=1"]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "left-idle").await;
    let rtp = rtp_socket().await;
    assert_eq!(invite(&mut phone, &rtp, "").await, 200);
    phone.ack(None).await;
    // No PIN keyed: after the idle timeout the daemon says BYE.
    let bye = phone.recv_request(WAIT).await.unwrap_or_default();
    assert!(bye.starts_with("BYE "), "{bye}");
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn refused_invites_leave_nothing() {
    // 127.0.0.1 may call, one call at a time; 127.0.0.2 may not call at all.
    let d = daemon(&[
        "sip.early_media=false",
        "sip.allow=[\"127.0.0.1\"]",
        "calls.max_calls=1",
    ])
    .await;
    let rtp = rtp_socket().await;

    // 403: a source outside sip.allow.
    let mut stranger = RawPhone::new(d.sip_addr(), "left-403").await;
    stranger.sock = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    assert_eq!(invite(&mut stranger, &rtp, "").await, 403);
    stranger.ack(Some("inv1")).await;

    // 488: no codec in common, refused after the call task took its port.
    let mut g729 = RawPhone::new(d.sip_addr(), "left-488").await;
    g729.invite(&offer(rtp.local_addr().unwrap(), "18", ""))
        .await;
    let seen = g729.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(488), "{seen:#?}");
    g729.ack(Some("inv1")).await;
    assert_eq!(all_gone(&d).await, Held::default());

    // 503: one call up, the next one over calls.max_calls.
    let mut first = RawPhone::new(d.sip_addr(), "left-up").await;
    assert_eq!(invite(&mut first, &rtp, "").await, 200);
    first.ack(None).await;
    let mut second = RawPhone::new(d.sip_addr(), "left-503").await;
    assert_eq!(invite(&mut second, &rtp, "").await, 503);
    second.ack(Some("inv1")).await;
    let up = d.held();
    assert_eq!(
        (up.listed, up.admitted, up.stack.dialogs),
        (1, 1, 1),
        "{up:?}"
    );
    hang_up(&mut first).await;
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn wrong_pins_are_forgotten_when_their_window_passes() {
    let d = daemon(&[
        "sip.early_media=false",
        "pin.failure_window_secs=1",
        "pin.attempts=1",
        "rooms.open=false",
        "rooms.room=[{ id = \"board\", pin = \"9999\" }]",
    ])
    .await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "left-wrong-pin").await;
    let rtp = rtp_socket().await;
    assert_eq!(invite(&mut phone, &rtp, "").await, 200);
    phone.ack(None).await;
    // No room has this PIN: rejected, the one attempt used up.
    for digit in "1111#".chars() {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        phone
            .in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", &body)
            .await;
        phone.until_final("INFO", WAIT).await;
    }
    let rejected = next(&mut events, |e| match e {
        Event::PinRejected { failures, .. } => Some(failures),
        _ => None,
    })
    .await;
    assert_eq!(rejected, Some(1));
    assert_eq!(d.held().pin_keys, 2, "the caller and the number dialled");
    // Goodbye is played, then the daemon hangs up.
    let bye = phone.recv_request(WAIT * 2).await.unwrap_or_default();
    assert!(bye.starts_with("BYE "), "{bye}");
    // Nobody calls again: the keys go when the window has passed all the same.
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

fn dial(room: &str, to: String, timeout: Option<u64>) -> DialRequest {
    DialRequest {
        room: room.into(),
        to,
        from: None,
        timeout: timeout.map(Duration::from_secs),
        dtmf: None,
    }
}

#[tokio::test]
async fn an_answered_outbound_call_leaves_nothing_after_the_callees_bye() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let mut events = d.subscribe();
    let callee = Callee::new().await;
    let rtp = rtp_socket().await;
    d.switchboard()
        .dial(dial("o1", format!("sip:bob@{}", callee.addr()), None))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    callee.reply(&invite, 180, "", "").await;
    callee
        .reply(&invite, 200, "", &offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    callee.expect("ACK", WAIT).await.expect("ACK");
    next(&mut events, |e| {
        matches!(e, Event::MemberJoined { .. }).then_some(())
    })
    .await
    .expect("joined");
    // The count is published just after the event: wait for it, bounded.
    for _ in 0..50 {
        if d.held().members == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.held().members, 1);
    callee.bye(&invite).await;
    let (code, ..) = callee.final_response(WAIT).await.expect("200 for the BYE");
    assert_eq!(code, 200);
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn a_busy_callee_leaves_nothing() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let callee = Callee::new().await;
    d.switchboard()
        .dial(dial("o2", format!("sip:busy@{}", callee.addr()), None))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    assert_eq!(d.held().rtp_ports, 1);
    callee.reply(&invite, 180, "", "").await;
    callee.reply(&invite, 486, "", "").await;
    callee.expect("ACK", WAIT).await.expect("ACK for the 486");
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_dial_cancelled_at_its_ring_timeout_leaves_nothing() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let callee = Callee::new().await;
    d.switchboard()
        .dial(dial("o3", format!("sip:slow@{}", callee.addr()), Some(1)))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    callee.reply(&invite, 180, "", "").await;
    let cancel = callee.expect("CANCEL", WAIT).await.expect("CANCEL");
    callee.reply(&cancel, 200, "", "").await;
    callee.reply(&invite, 487, "", "").await;
    callee.expect("ACK", WAIT).await.expect("ACK for the 487");
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}

#[tokio::test]
async fn a_dial_nobody_answers_at_all_leaves_nothing() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let mut events = d.subscribe();
    // A socket that reads nothing: no 100, no final answer; the INVITE
    // times out (Timer B, 64·T1 = 1.28 s here).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let call = d
        .switchboard()
        .dial(dial(
            "o4",
            format!("sip:nobody@{}", silent.local_addr().unwrap()),
            None,
        ))
        .await
        .expect("dial accepted");
    let failed = next(&mut events, |e| match e {
        Event::DialFailed {
            call: c, status, ..
        } if c == call => Some(status),
        _ => None,
    })
    .await;
    assert_eq!(failed, Some(Some(408)), "Timer B: the stack's own 408");
    assert_eq!(all_gone(&d).await, Held::default());
    d.shutdown().await;
}
