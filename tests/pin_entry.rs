//! Callers key their PIN over real sockets — as RFC 4733 events, as tones in
//! the audio, or in SIP INFO — and reach the room; wrong PINs, lockouts and
//! trusted direct entry behave as configured: a trusted source (another
//! node bridging a caller) may seat a moderator with
//! `X-Conference-Moderator`, anyone else may not.

mod common;

use std::time::Duration;

use common::keypad::{tones, Keypad};
use common::next_event as next;
use common::raw::RawPhone;
use common::{daemon, offer, rtp_socket, sdp_rtp_addr, sourced};
use confgate::daemon::Daemon;
use confgate::dtmf::Source;
use confgate::events::Event;
use confgate::media::codec::Codec;
use tokio::net::UdpSocket;
use tokio::sync::broadcast::Receiver;

const WAIT: Duration = Duration::from_secs(5);

/// A call from `phone` offering `formats`, answered and acknowledged; the
/// RTP socket and where the daemon wants RTP.
async fn call(
    phone: &mut RawPhone,
    formats: &str,
    extra: &str,
) -> (UdpSocket, std::net::SocketAddr, String) {
    let rtp = rtp_socket().await;
    phone
        .invite_with(&offer(rtp.local_addr().unwrap(), formats, ""), extra)
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let ok = seen.last().expect("a final response");
    assert_eq!(ok.code, 200, "{seen:#?}");
    phone.ack(None).await;
    let dest = sdp_rtp_addr(ok.body()).expect("answer has c= and m=audio");
    (rtp, dest, ok.body().to_owned())
}

async fn joined(events: &mut Receiver<Event>, wait: Duration) -> Option<(String, bool)> {
    next(events, wait, |e| match e {
        Event::MemberJoined { room, direct, .. } => Some((room, direct)),
        _ => None,
    })
    .await
}

/// Every digit event until the join, as (digit, source).
async fn digits_until_join(events: &mut Receiver<Event>) -> (Vec<(char, Source)>, Option<String>) {
    common::digits_until_join(events, WAIT * 2).await
}

async fn hang_up(phone: &mut RawPhone) {
    phone.in_dialog("BYE", "", "").await;
    let bye = phone.until_final("BYE", WAIT).await;
    assert_eq!(bye.last().map(|r| r.code), Some(200), "{bye:#?}");
}

#[tokio::test]
async fn a_pin_keyed_as_rfc4733_events_reaches_the_room() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-events").await;
    let (rtp, dest, answer) = call(&mut phone, "0 101", "").await;
    assert!(answer.contains("telephone-event"), "{answer}");
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events("1234#", 101)
        .await;
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("1234#", Source::Rfc4733));
    assert_eq!(room.as_deref(), Some("1234"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_pin_keyed_as_tones_reaches_the_room_in_auto_mode() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-tones").await;
    // telephone-event is negotiated, yet the phone sends tones: auto mode
    // still hears them.
    let (rtp, dest, _) = call(&mut phone, "8 101", "").await;
    let mut keypad = Keypad::new(&rtp, dest, Codec::Pcma);
    keypad.audio(&tones("4321#", 80, 80)).await;
    keypad.audio(&[0; 1600]).await;
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("4321#", Source::Inband));
    assert_eq!(room.as_deref(), Some("4321"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn inband_mode_leaves_telephone_event_out_and_ignores_events() {
    let d = daemon(&["dtmf.mode=inband"]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-inband-mode").await;
    let (rtp, dest, answer) = call(&mut phone, "0 101", "").await;
    assert!(!answer.contains("telephone-event"), "{answer}");
    assert!(answer.contains("RTP/AVP 0\r\n"), "{answer}");
    let mut keypad = Keypad::new(&rtp, dest, Codec::Pcmu);
    keypad.events("5555#", 101).await;
    assert_eq!(
        joined(&mut events, Duration::from_millis(500)).await,
        None,
        "events are not listened to"
    );
    keypad.audio(&tones("5555#", 100, 100)).await;
    keypad.audio(&[0; 1600]).await;
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("5555#", Source::Inband));
    assert_eq!(room.as_deref(), Some("5555"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_pin_sent_in_sip_info_reaches_the_room() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-info").await;
    let (_rtp, _, _) = call(&mut phone, "0", "").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bodies = [
        ("application/dtmf-relay", "Signal=2\r\nDuration=160\r\n"),
        ("application/dtmf-relay", "Signal=4\r\nDuration=160\r\n"),
        ("application/dtmf", "6"),
        ("application/dtmf", "8"),
        ("application/dtmf-relay", "Signal=#\r\nDuration=160\r\n"),
    ];
    for (ctype, body) in bodies {
        phone
            .in_dialog("INFO", &format!("Content-Type: {ctype}\r\n"), body)
            .await;
        let r = phone.until_final("INFO", WAIT).await;
        assert_eq!(r.last().map(|r| r.code), Some(200), "{r:#?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("2468#", Source::Info));
    assert_eq!(room.as_deref(), Some("2468"));

    // Other bodies are not digits.
    phone
        .in_dialog("INFO", "Content-Type: text/plain\r\n", "hello")
        .await;
    let r = phone.until_final("INFO", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(415), "{r:#?}");
    phone
        .in_dialog(
            "INFO",
            "Content-Type: application/dtmf-relay\r\n",
            "Signal=Z\r\n",
        )
        .await;
    let r = phone.until_final("INFO", WAIT).await;
    assert_eq!(r.last().map(|r| r.code), Some(400), "{r:#?}");
    hang_up(&mut phone).await;
    d.shutdown().await;
}

/// An INFO request for `digit` with the phone's next CSeq.
fn info(phone: &mut RawPhone, digit: char) -> String {
    let cseq = phone.next_cseq();
    let body = format!("Signal={digit}\r\nDuration=250\r\n");
    phone.request(
        "INFO",
        cseq,
        "INFO",
        &format!("info{cseq}"),
        "Content-Type: application/dtmf-relay\r\n",
        &body,
    )
}

/// The codes of the next `n` final answers to INFO.
async fn info_codes(phone: &RawPhone, n: usize) -> Vec<u16> {
    let mut codes = Vec::new();
    while codes.len() < n {
        let Some(r) = phone.recv(WAIT).await else {
            break;
        };
        if r.code >= 200 && r.cseq_method() == Some("INFO") {
            codes.push(r.code);
        }
    }
    codes
}

/// Sends `digits` as SIP INFO transactions one right after the other,
/// `gap` apart, without waiting for answers; then every answer's code.
async fn infos_without_waiting(phone: &mut RawPhone, digits: &str, gap: Duration) -> Vec<u16> {
    for digit in digits.chars() {
        let request = info(phone, digit);
        phone.send_raw(request.as_bytes()).await;
        tokio::time::sleep(gap).await;
    }
    info_codes(phone, digits.len()).await
}

/// Linphone sends the first INFO digit at once and holds the others until
/// that transaction has ended (T4 = 5 s after our 200 OK), then sends them
/// within 40 ms. With the default timeouts the caller gets in.
#[tokio::test]
async fn info_digits_paced_like_linphone_reach_the_room_with_the_defaults() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-info-paced").await;
    let (_rtp, _, _) = call(&mut phone, "0", "").await;
    assert_eq!(
        infos_without_waiting(&mut phone, "8", Duration::ZERO).await,
        [200]
    );
    tokio::time::sleep(Duration::from_millis(5020)).await;
    assert_eq!(
        infos_without_waiting(&mut phone, "642#", Duration::from_millis(10)).await,
        [200; 4]
    );
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("8642#", Source::Info));
    assert_eq!(room.as_deref(), Some("8642"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

/// The same pacing as RFC 4733 events, with audio flowing in the pause.
#[tokio::test]
async fn rfc4733_digits_paced_like_linphone_reach_the_room_with_the_defaults() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-events-paced").await;
    let (rtp, dest, _) = call(&mut phone, "0 101", "").await;
    let mut keypad = Keypad::new(&rtp, dest, Codec::Pcmu);
    keypad.events("8", 101).await;
    // Events end with 100 ms of silence; the rest of the 5.02 s pause.
    keypad.audio(&[0; 4920 * 8]).await;
    keypad.events("642#", 101).await;
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("8642#", Source::Rfc4733));
    assert_eq!(room.as_deref(), Some("8642"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

/// A phone takes the call as answered on our 200 OK; its first INFO may
/// reach us before its ACK. That digit counts.
#[tokio::test]
async fn a_digit_that_overtakes_the_ack_counts() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-before-ack").await;
    let rtp = rtp_socket().await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(200), "{seen:#?}");
    // INFO (CSeq 2), then the ACK for the INVITE (CSeq 1): the INFO is
    // answered once the ACK has come.
    let first = info(&mut phone, '8');
    phone.send_raw(first.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ack = phone.request("ACK", 1, "ACK", "ack1", "", "");
    phone.send_raw(ack.as_bytes()).await;
    let mut codes = infos_without_waiting(&mut phone, "642#", Duration::ZERO).await;
    codes.extend(info_codes(&phone, 1).await);
    assert_eq!(codes, [200; 5]);
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("8642#", Source::Info));
    assert_eq!(room.as_deref(), Some("8642"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

/// An INFO held for an ACK that never comes is answered 481 when the
/// dialog ends, here by the caller's BYE.
#[tokio::test]
async fn an_info_held_for_the_ack_gets_481_when_the_call_ends_first() {
    let d = daemon(&[]).await;
    let mut phone = RawPhone::new(d.sip_addr(), "pin-no-ack").await;
    let rtp = rtp_socket().await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(200), "{seen:#?}");
    let held = info(&mut phone, '8');
    phone.send_raw(held.as_bytes()).await;
    // (Our 200 OK keeps coming, retransmitted for want of the ACK.)
    let early = tokio::time::timeout(Duration::from_secs(1), info_codes(&phone, 1)).await;
    assert!(early.is_err(), "no answer before the ACK: {early:?}");
    phone.in_dialog("BYE", "", "").await;
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let Some(r) = phone.recv(WAIT).await else {
            break;
        };
        if r.code >= 200 && r.cseq_method() != Some("INVITE") {
            finals.push((r.cseq_method().unwrap_or("").to_owned(), r.code));
        }
    }
    finals.sort();
    assert_eq!(finals, [("BYE".into(), 200), ("INFO".into(), 481)]);
    d.shutdown().await;
}

/// A caller who forgets the pound key: after the inter-digit timeout a PIN
/// of valid length is taken; a room's moderator PIN too.
#[tokio::test]
async fn a_pin_of_valid_length_without_pound_is_taken_after_the_pause() {
    let d = daemon(&[
        "pin.inter_digit_timeout_secs=1",
        "rooms.open=false",
        "rooms.room=[{id=\"sales\", pin=\"4321\", moderator_pin=\"98765\"}]",
    ])
    .await;
    let mut events = d.subscribe();
    for (call_id, pin) in [("pin-no-pound", "4321"), ("pin-no-pound-mod", "98765")] {
        let mut phone = RawPhone::new(d.sip_addr(), call_id).await;
        let (_rtp, _, _) = call(&mut phone, "0", "").await;
        let codes = infos_without_waiting(&mut phone, pin, Duration::from_millis(50)).await;
        assert_eq!(codes, vec![200; pin.len()]);
        let (digits, room) = digits_until_join(&mut events).await;
        assert_eq!(digits, sourced(pin, Source::Info));
        assert_eq!(room.as_deref(), Some("sales"), "PIN {pin}");
        hang_up(&mut phone).await;
    }
    // Too short: dropped, and the caller is asked again. Had "432" been
    // kept, the next entry would make the wrong PIN 4324321.
    let mut phone = RawPhone::new(d.sip_addr(), "pin-no-pound-short").await;
    let (_rtp, _, _) = call(&mut phone, "0", "").await;
    infos_without_waiting(&mut phone, "432", Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    infos_without_waiting(&mut phone, "4321#", Duration::ZERO).await;
    let (digits, room) = digits_until_join(&mut events).await;
    assert_eq!(digits, sourced("4324321#", Source::Info));
    assert_eq!(room.as_deref(), Some("sales"));
    hang_up(&mut phone).await;
    d.shutdown().await;
}

const SALES: &str = "rooms.room=[{id=\"sales\", pin=\"4321\"}]";

/// The daemon's BYE, once it has played its last prompt.
async fn expect_bye(phone: &RawPhone) {
    let bye = phone.recv_request(Duration::from_secs(15)).await;
    assert!(
        bye.as_deref().is_some_and(|b| b.starts_with("BYE ")),
        "{bye:?}"
    );
}

async fn rejected(events: &mut Receiver<Event>) -> Option<u32> {
    next(events, WAIT, |e| match e {
        Event::PinRejected { failures, .. } => Some(failures),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn wrong_pins_end_in_goodbye_and_bye() {
    let d = daemon(&["rooms.open=false", SALES, "pin.attempts=2"]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "pin-wrong").await;
    let (rtp, dest, _) = call(&mut phone, "0 101", "").await;
    let mut keypad = Keypad::new(&rtp, dest, Codec::Pcmu);
    keypad.events("1111#", 101).await;
    assert_eq!(rejected(&mut events).await, Some(1));
    keypad.events("4320#", 101).await;
    assert_eq!(rejected(&mut events).await, Some(2));
    expect_bye(&phone).await;
    assert_eq!(joined(&mut events, Duration::from_millis(200)).await, None);
    d.shutdown().await;
}

#[tokio::test]
async fn a_caller_who_guesses_is_locked_out_across_calls() {
    let d = daemon(&[
        "rooms.open=false",
        SALES,
        "pin.attempts=5",
        "pin.caller_failures=2",
    ])
    .await;
    let mut events = d.subscribe();
    let lockout = |e| match e {
        Event::PinLockout { key, .. } => Some(key),
        _ => None,
    };

    let mut phone = RawPhone::new(d.sip_addr(), "pin-guess-1").await;
    let (rtp, dest, _) = call(&mut phone, "0 101", "").await;
    let mut keypad = Keypad::new(&rtp, dest, Codec::Pcmu);
    keypad.events("1111#", 101).await;
    assert_eq!(rejected(&mut events).await, Some(1));
    keypad.events("2222#", 101).await;
    let key = next(&mut events, WAIT, lockout).await.expect("a lockout");
    assert!(key.starts_with("caller:caller@127.0.0.1"), "{key}");
    expect_bye(&phone).await;

    // The same caller calls again with the right PIN: still refused.
    let mut phone = RawPhone::new(d.sip_addr(), "pin-guess-2").await;
    let (rtp, dest, _) = call(&mut phone, "0 101", "").await;
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events("4321#", 101)
        .await;
    assert!(next(&mut events, WAIT, lockout).await.is_some());
    expect_bye(&phone).await;

    // Another caller is not.
    let mut phone = RawPhone::new(d.sip_addr(), "pin-guess-3").await;
    phone.from_user = "alice".into();
    let (rtp, dest, _) = call(&mut phone, "0 101", "").await;
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events("4321#", 101)
        .await;
    assert_eq!(
        joined(&mut events, WAIT).await,
        Some(("sales".to_owned(), false))
    );
    hang_up(&mut phone).await;
    d.shutdown().await;
}

async fn direct_call(d: &Daemon, id: &str, user: &str, extra: &str) -> RawPhone {
    let mut phone = RawPhone::new(d.sip_addr(), id).await;
    phone.user = user.to_owned();
    call(&mut phone, "0 101", extra).await;
    phone
}

#[tokio::test]
async fn a_trusted_source_names_the_room_directly() {
    let d = daemon(&["rooms.trusted=[\"127.0.0.1\"]"]).await;
    let mut events = d.subscribe();
    let mut phone = direct_call(&d, "direct-header", "4000", "X-Conference-Id: 42\r\n").await;
    assert_eq!(
        joined(&mut events, WAIT).await,
        Some(("42".to_owned(), true))
    );
    hang_up(&mut phone).await;
    let mut phone = direct_call(&d, "direct-uri", "room-77", "").await;
    assert_eq!(
        joined(&mut events, WAIT).await,
        Some(("77".to_owned(), true))
    );
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_source_naming_a_room_is_asked_for_the_pin() {
    let d = daemon(&["rooms.trusted=[\"10.0.0.0/8\"]"]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "direct-untrusted").await;
    phone.user = "room-77".into();
    let (rtp, dest, _) = call(&mut phone, "0 101", "X-Conference-Id: 42\r\n").await;
    assert_eq!(
        joined(&mut events, Duration::from_secs(1)).await,
        None,
        "no room without a PIN"
    );
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events("9876#", 101)
        .await;
    assert_eq!(
        joined(&mut events, WAIT).await,
        Some(("9876".to_owned(), false))
    );
    hang_up(&mut phone).await;
    d.shutdown().await;
}

/// The room and moderator flag of the next member seated.
async fn joined_as(events: &mut Receiver<Event>, wait: Duration) -> Option<(String, bool)> {
    next(events, wait, |e| match e {
        Event::MemberJoined {
            room, moderator, ..
        } => Some((room, moderator)),
        _ => None,
    })
    .await
}

const SALES_MODERATED: &str = "rooms.room=[{id=\"sales\", pin=\"4321\", moderator_pin=\"98765\"}]";

#[tokio::test]
async fn a_trusted_node_seats_a_moderator_it_names_the_room_for() {
    let d = daemon(&["rooms.trusted=[\"127.0.0.1\"]", SALES_MODERATED]).await;
    let mut events = d.subscribe();
    let mut phone = direct_call(
        &d,
        "direct-moderator",
        "room-sales",
        "X-Conference-Id: sales\r\nX-Conference-Moderator: yes\r\n",
    )
    .await;
    assert_eq!(
        joined_as(&mut events, WAIT).await,
        Some(("sales".to_owned(), true))
    );
    hang_up(&mut phone).await;
    // Without the header, an ordinary member.
    let mut phone = direct_call(&d, "direct-member", "room-sales", "").await;
    assert_eq!(
        joined_as(&mut events, WAIT).await,
        Some(("sales".to_owned(), false))
    );
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn x_conference_moderator_from_an_untrusted_source_is_ignored() {
    let d = daemon(&["rooms.trusted=[\"10.0.0.0/8\"]", SALES_MODERATED]).await;
    let mut events = d.subscribe();
    let mut phone = RawPhone::new(d.sip_addr(), "moderator-untrusted").await;
    let (rtp, dest, _) = call(
        &mut phone,
        "0 101",
        "X-Conference-Id: sales\r\nX-Conference-Moderator: yes\r\n",
    )
    .await;
    assert_eq!(
        joined_as(&mut events, Duration::from_secs(1)).await,
        None,
        "no room without a PIN"
    );
    // The member's PIN seats a member, not a moderator.
    Keypad::new(&rtp, dest, Codec::Pcmu)
        .events("4321#", 101)
        .await;
    assert_eq!(
        joined_as(&mut events, WAIT).await,
        Some(("sales".to_owned(), false))
    );
    hang_up(&mut phone).await;
    d.shutdown().await;
}
