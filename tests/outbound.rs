//! Outbound calls placed through the switchboard (what the control socket
//! drives) against a far end written by hand: answered calls join their room
//! and leave on BYE, busy and unanswered calls fail once, a 407 trunk gets an
//! authenticated INVITE, refused destinations never see an INVITE, and a
//! hang-up while ringing is a CANCEL. Every dial ends in one terminal event.

mod common;

use std::time::Duration;

use common::callee::{Callee, Request};
use common::{daemon, offer, rtp_socket};
use confgate::control::{CommandError, DialRequest, Target};
use confgate::events::{Direction, Event};
use md5::{Digest, Md5};
use tokio::sync::broadcast::{error::RecvError, Receiver};

const WAIT: Duration = Duration::from_secs(5);

fn dial(room: &str, to: String, timeout: Option<u64>) -> DialRequest {
    DialRequest {
        room: room.into(),
        to,
        from: None,
        timeout: timeout.map(Duration::from_secs),
        dtmf: None,
    }
}

/// Every event about `call` until `quiet` passes without one.
async fn events_of(events: &mut Receiver<Event>, call: &str, quiet: Duration) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(quiet, events.recv()).await {
            Ok(Ok(e)) => {
                let mine = match &e {
                    Event::CallRinging { call: c, .. }
                    | Event::CallAnswered { call: c, .. }
                    | Event::DialFailed { call: c, .. }
                    | Event::MemberJoined { call: c, .. }
                    | Event::MemberLeft { call: c, .. } => c == call,
                    _ => false,
                };
                if mine {
                    seen.push(e);
                }
            }
            Ok(Err(RecvError::Lagged(_))) => continue,
            _ => return seen,
        }
    }
}

fn terminal(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| matches!(e, Event::DialFailed { .. } | Event::MemberLeft { .. }))
        .collect()
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            Event::CallRinging { .. } => "call_ringing",
            Event::CallAnswered { .. } => "call_answered",
            Event::DialFailed { .. } => "dial_failed",
            Event::MemberJoined { .. } => "member_joined",
            Event::MemberLeft { .. } => "member_left",
            _ => "other",
        })
        .collect()
}

/// An SDP answer for a callee whose RTP socket is `rtp`.
fn answer_sdp(rtp: std::net::SocketAddr) -> String {
    offer(rtp, "0 101", "")
}

#[tokio::test]
async fn an_answered_call_rings_joins_and_leaves_on_bye() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let board = d.switchboard();
    let mut events = d.subscribe();
    let callee = Callee::new().await;
    let rtp = rtp_socket().await;
    let call = board
        .dial(dial("4321", format!("sip:bob@{}", callee.addr()), None))
        .await
        .expect("dial accepted");

    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    // Our call id is ours; the INVITE carries a SIP Call-ID of its own.
    let sip_call_id = invite.header("Call-ID").unwrap_or("");
    assert!(
        !sip_call_id.is_empty() && sip_call_id != call,
        "{sip_call_id}"
    );
    assert!(
        invite.uri.starts_with("sip:bob@127.0.0.1:"),
        "{}",
        invite.uri
    );
    assert!(invite.body().contains("m=audio"), "an SDP offer");
    callee.reply(&invite, 100, "", "").await;
    callee.reply(&invite, 180, "", "").await;
    callee
        .reply(&invite, 200, "", &answer_sdp(rtp.local_addr().unwrap()))
        .await;
    callee.expect("ACK", WAIT).await.expect("ACK for the 200");

    // The joined prompt reaches the callee's RTP socket.
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(WAIT, rtp.recv_from(&mut buf)).await;
    assert!(matches!(got, Ok(Ok((172, _)))), "RTP from the room");

    let rooms = board.rooms().await;
    let member = rooms
        .iter()
        .find(|r| r.room == "4321")
        .and_then(|r| r.members.iter().find(|m| m.call == call))
        .expect("listed in room 4321");
    assert_eq!(member.direction, Direction::Outbound);

    // Text spoken to the room is rendered and played; unknown targets are named.
    board
        .say(Target::Room("4321".into()), "the meeting ends soon".into())
        .await
        .expect("say to the room");
    assert_eq!(
        board.say(Target::Room("nope".into()), "hello".into()).await,
        Err(CommandError::NoSuchRoom("nope".into()))
    );

    callee.bye(&invite).await;
    let seen = events_of(&mut events, &call, Duration::from_millis(1500)).await;
    assert_eq!(
        kinds(&seen),
        [
            "call_ringing",
            "call_answered",
            "member_joined",
            "member_left"
        ]
    );
    assert!(matches!(
        terminal(&seen)[..],
        [Event::MemberLeft {
            reason: "hangup",
            ..
        }]
    ));
    d.shutdown().await;
}

#[tokio::test]
async fn a_busy_callee_gives_one_dial_failed_486() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let mut events = d.subscribe();
    let callee = Callee::new().await;
    let call = d
        .switchboard()
        .dial(dial("55", format!("sip:busy@{}", callee.addr()), None))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    callee.reply(&invite, 180, "", "").await;
    callee.reply(&invite, 486, "", "").await;
    callee.expect("ACK", WAIT).await.expect("ACK for the 486");
    let seen = events_of(&mut events, &call, Duration::from_millis(1500)).await;
    assert_eq!(kinds(&seen), ["call_ringing", "dial_failed"]);
    assert!(matches!(
        &seen[1],
        Event::DialFailed { status: Some(486), reason, .. } if reason == "busy"
    ));
    d.shutdown().await;
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_cancelled_once() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let mut events = d.subscribe();
    let callee = Callee::new().await;
    let call = d
        .switchboard()
        .dial(dial("56", format!("sip:slow@{}", callee.addr()), Some(1)))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    callee.reply(&invite, 180, "", "").await;
    let cancel = callee
        .expect("CANCEL", WAIT)
        .await
        .expect("CANCEL after 1 s");
    assert_eq!(cancel.header("Call-ID"), invite.header("Call-ID"));
    callee.reply(&cancel, 200, "", "").await;
    callee.reply(&invite, 487, "", "").await;
    let seen = events_of(&mut events, &call, Duration::from_millis(1500)).await;
    assert_eq!(kinds(&seen), ["call_ringing", "dial_failed"]);
    assert!(matches!(
        &seen[1],
        Event::DialFailed { reason, .. } if reason == "no_answer"
    ));
    d.shutdown().await;
}

#[tokio::test]
async fn hangup_while_ringing_sends_cancel_and_one_terminal_event() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let board = d.switchboard();
    let mut events = d.subscribe();
    let callee = Callee::new().await;
    let call = board
        .dial(dial("57", format!("sip:ring@{}", callee.addr()), None))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    callee.reply(&invite, 180, "", "").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    board.hangup(&call).await.expect("the call is known");
    let cancel = callee.expect("CANCEL", WAIT).await.expect("CANCEL");
    callee.reply(&cancel, 200, "", "").await;
    callee.reply(&invite, 487, "", "").await;
    let seen = events_of(&mut events, &call, Duration::from_millis(1500)).await;
    assert_eq!(kinds(&seen), ["call_ringing", "dial_failed"]);
    assert!(matches!(
        &seen[1],
        Event::DialFailed { reason, .. } if reason == "cancelled"
    ));
    assert_eq!(
        board.hangup(&call).await,
        Err(CommandError::NoSuchCall(call.clone())),
        "the call is gone"
    );
    d.shutdown().await;
}

/// `key="value"` from a digest header.
fn param<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("{key}="))? + key.len() + 1;
    let rest = &header[at..];
    match rest.strip_prefix('"') {
        Some(q) => q.split('"').next(),
        None => rest.split([',', ' ']).next(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_trunk_challenging_with_407_gets_an_authenticated_invite() {
    let trunk = Callee::new().await;
    let d = daemon(&[
        &format!("trunk.proxy={}", trunk.addr()),
        "trunk.username=confuser",
        "trunk.password=s3cret-pass",
        "trunk.from_user=conf",
        "trunk.allow=[\"+1555\"]",
    ])
    .await;
    let mut events = d.subscribe();
    let rtp = rtp_socket().await;
    let call = d
        .switchboard()
        .dial(dial("77", "+15551234".into(), None))
        .await
        .expect("dial accepted");
    let first = trunk.expect("INVITE", WAIT).await.expect("INVITE");
    assert_eq!(first.uri, format!("sip:+15551234@{}", trunk.addr()));
    assert!(first.header("From").unwrap_or("").contains("sip:conf@"));
    assert!(first.header("Proxy-Authorization").is_none());
    let nonce = "4b1d0a6f3e";
    trunk
        .reply(
            &first,
            407,
            &format!("Proxy-Authenticate: Digest realm=\"trunk.test\", nonce=\"{nonce}\", algorithm=MD5\r\n"),
            "",
        )
        .await;
    trunk.expect("ACK", WAIT).await.expect("ACK for the 407");
    let second: Request = trunk
        .expect("INVITE", WAIT)
        .await
        .expect("INVITE with credentials");
    let auth = second
        .header("Proxy-Authorization")
        .expect("Proxy-Authorization")
        .to_owned();
    assert_eq!(param(&auth, "username"), Some("confuser"));
    assert_eq!(param(&auth, "realm"), Some("trunk.test"));
    assert_eq!(param(&auth, "nonce"), Some(nonce));
    let uri = param(&auth, "uri").expect("uri");
    // RFC 2617 without qop: MD5(MD5(user:realm:pass):nonce:MD5(INVITE:uri)).
    let ha1 = hex(&Md5::digest(b"confuser:trunk.test:s3cret-pass"));
    let ha2 = hex(&Md5::digest(format!("INVITE:{uri}").as_bytes()));
    let expected = hex(&Md5::digest(format!("{ha1}:{nonce}:{ha2}").as_bytes()));
    assert_eq!(param(&auth, "response"), Some(expected.as_str()));

    trunk
        .reply(&second, 200, "", &answer_sdp(rtp.local_addr().unwrap()))
        .await;
    trunk.expect("ACK", WAIT).await.expect("ACK for the 200");
    let seen = events_of(&mut events, &call, Duration::from_millis(1000)).await;
    assert_eq!(kinds(&seen), ["call_answered", "member_joined"]);
    d.shutdown().await;
}

#[tokio::test]
async fn sha256_challenges_are_answered_too() {
    use sha2::Sha256;
    let trunk = Callee::new().await;
    let d = daemon(&[
        &format!("trunk.proxy={}", trunk.addr()),
        "trunk.username=u256",
        "trunk.password=pw",
        "trunk.allow=[\"*\"]",
    ])
    .await;
    d.switchboard()
        .dial(dial("78", "1000".into(), None))
        .await
        .expect("dial accepted");
    let first = trunk.expect("INVITE", WAIT).await.expect("INVITE");
    trunk
        .reply(
            &first,
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n256\", algorithm=SHA-256\r\n",
            "",
        )
        .await;
    let second = trunk.expect("INVITE", WAIT).await.expect("second INVITE");
    let auth = second
        .header("Authorization")
        .expect("Authorization")
        .to_owned();
    assert_eq!(param(&auth, "algorithm"), Some("SHA-256"), "{auth}");
    let uri = param(&auth, "uri").expect("uri");
    let h = |s: String| hex(&Sha256::digest(s.as_bytes()));
    let expected = h(format!(
        "{}:n256:{}",
        h("u256:r:pw".into()),
        h(format!("INVITE:{uri}"))
    ));
    assert_eq!(param(&auth, "response"), Some(expected.as_str()));
    trunk.reply(&second, 603, "", "").await;
    d.shutdown().await;
}

#[tokio::test]
async fn destinations_outside_the_allow_list_are_refused_before_any_invite() {
    let trunk = Callee::new().await;
    let d = daemon(&[
        &format!("trunk.proxy={}", trunk.addr()),
        "trunk.allow=[\"+1555\", \"+4420XXXXXXXX\"]",
        "trunk.max_outbound=1",
    ])
    .await;
    let board = d.switchboard();
    for to in ["+19005551234", "+442012345", "sip:anyone@127.0.0.1:9"] {
        let refused = board.dial(dial("1", to.into(), None)).await;
        assert!(
            matches!(
                &refused,
                Err(CommandError::Refused {
                    rule: "trunk.allow",
                    ..
                })
            ),
            "{to}: {refused:?}"
        );
    }
    assert!(
        trunk.recv(Duration::from_millis(500)).await.is_none(),
        "no INVITE left"
    );
    // The cap on concurrent calls says which rule refused.
    board
        .dial(dial("1", "+15550001".into(), None))
        .await
        .expect("first call");
    let second = board.dial(dial("1", "+15550002".into(), None)).await;
    assert!(matches!(
        second,
        Err(CommandError::Refused {
            rule: "trunk.max_outbound",
            ..
        })
    ));
    assert!(matches!(
        board
            .dial(dial("bad room!", "+15550003".into(), None))
            .await,
        Err(CommandError::BadArgument { field: "room", .. })
    ));
    assert!(matches!(
        board.dial(dial("1", "not a number".into(), None)).await,
        Err(CommandError::BadDestination(_))
    ));
    d.shutdown().await;
}

#[tokio::test]
async fn trunk_registration_is_retried_after_a_failure_and_reported() {
    let trunk = Callee::new().await;
    let d = daemon(&[
        &format!("trunk.proxy={}", trunk.addr()),
        "trunk.username=reguser",
        "trunk.password=regpass",
        "trunk.register=true",
        "trunk.register_expires_secs=120",
    ])
    .await;
    let mut events = d.subscribe();
    let first = trunk.expect("REGISTER", WAIT).await.expect("REGISTER");
    assert!(first.header("To").unwrap_or("").contains("reguser"));
    trunk.reply(&first, 403, "", "").await;
    let state = |e: Event| match e {
        Event::Registration { state, .. } => Some(state),
        _ => None,
    };
    let mut next_state = async || loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Ok(e)) => {
                if let Some(s) = state(e) {
                    return Some(s);
                }
            }
            Ok(Err(RecvError::Lagged(_))) => continue,
            _ => return None,
        }
    };
    assert_eq!(next_state().await, Some("failed"));
    // Retried after the 1 s backoff, answered with a challenge, then accepted.
    let retry = trunk
        .expect("REGISTER", WAIT)
        .await
        .expect("REGISTER retried");
    trunk
        .reply(
            &retry,
            401,
            "WWW-Authenticate: Digest realm=\"reg\", nonce=\"rn1\", algorithm=MD5\r\n",
            "",
        )
        .await;
    let authed = trunk
        .expect("REGISTER", WAIT)
        .await
        .expect("REGISTER with credentials");
    assert!(authed
        .header("Authorization")
        .is_some_and(|a| a.contains("username=\"reguser\"")));
    trunk.reply(&authed, 200, "Expires: 120\r\n", "").await;
    assert_eq!(next_state().await, Some("registered"));
    assert_eq!(d.switchboard().status().await.registration, "registered");
    d.shutdown().await;
}

#[tokio::test]
async fn a_reinvite_without_sdp_gets_our_offer_and_one_without_the_rooms_codec_gets_488() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let board = d.switchboard();
    let mut events = d.subscribe();
    let callee = Callee::new().await;
    let rtp = rtp_socket().await;
    let call = board
        .dial(dial("4321", format!("sip:bob@{}", callee.addr()), None))
        .await
        .expect("dial accepted");
    let invite = callee.expect("INVITE", WAIT).await.expect("INVITE");
    callee
        .reply(&invite, 200, "", &answer_sdp(rtp.local_addr().unwrap()))
        .await;
    callee.expect("ACK", WAIT).await.expect("ACK for the 200");
    let joined = events_of(&mut events, &call, Duration::from_millis(800)).await;
    assert!(kinds(&joined).contains(&"member_joined"), "{joined:#?}");

    // RFC 3261 §14.2: a re-INVITE without a body asks for an offer.
    callee.in_dialog(&invite, "INVITE", 2, "").await;
    let (code, cseq, text) = callee.final_response(WAIT).await.expect("an answer");
    assert_eq!((code, cseq.as_str()), (200, "2 INVITE"), "{text}");
    assert!(
        text.contains("m=audio") && text.contains("PCMU"),
        "an offer: {text}"
    );
    assert!(
        !text.contains("PCMA"),
        "in the room only its codec is offered: {text}"
    );
    callee
        .in_dialog(&invite, "ACK", 2, &answer_sdp(rtp.local_addr().unwrap()))
        .await;

    // The room mixes this call in PCMU: an offer of PCMA alone is refused.
    callee
        .in_dialog(
            &invite,
            "INVITE",
            3,
            &offer(rtp.local_addr().unwrap(), "8 101", ""),
        )
        .await;
    let (code, cseq, text) = callee.final_response(WAIT).await.expect("an answer");
    assert_eq!((code, cseq.as_str()), (488, "3 INVITE"), "{text}");
    callee.ack_rejected(&invite, 3).await;
    // PCMA preferred with PCMU beside it: answered with the room's PCMU.
    callee
        .in_dialog(
            &invite,
            "INVITE",
            4,
            &offer(rtp.local_addr().unwrap(), "8 0 101", ""),
        )
        .await;
    let (code, _, text) = callee.final_response(WAIT).await.expect("an answer");
    assert_eq!(code, 200, "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.contains("RTP/AVP 0 ") || body.contains("RTP/AVP 0\r"),
        "{body}"
    );
    callee.in_dialog(&invite, "ACK", 4, "").await;
    let listed = board.rooms().await;
    assert!(listed
        .iter()
        .flat_map(|r| &r.members)
        .any(|m| m.call == call));
    d.shutdown().await;
}
