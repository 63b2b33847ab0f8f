//! The call core under a virtual clock: no sockets, no tokio, no sleeps.
#![allow(clippy::disallowed_methods)] // the tests pick the start of their virtual clock

use std::net::IpAddr;

use super::*;
use crate::call::session::LocalMedia;
use crate::dtmf::DtmfMode;
use crate::ivr::directory::Admission;
use crate::ivr::inbound::RoomRefusal;
use crate::ivr::inbound::{Entry, Prompt};
use crate::ivr::keypad::{KeyAction, KeyBindings};
use crate::ivr::pin::PinRules;
use crate::media::codec::Codec;
use std::sync::Arc;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

fn session() -> SdpSession {
    SdpSession::new(LocalMedia {
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        events: true,
        address: IpAddr::from([192, 0, 2, 1]),
        port: 20000,
        session_id: 4000,
        srtp: crate::rtp::sdes::Policy::Optional,
        srtp_key: crate::rtp::srtp::MasterKey::random(),
    })
}

fn sdp(formats: &str, direction: &str) -> Vec<u8> {
    let mut s = String::from(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n",
    );
    s.push_str(&format!("m=audio 4000 RTP/AVP {formats}\r\n"));
    for f in formats.split_whitespace() {
        s.push_str(&match f {
            "0" => "a=rtpmap:0 PCMU/8000\r\n".to_owned(),
            "8" => "a=rtpmap:8 PCMA/8000\r\n".to_owned(),
            pt => format!("a=rtpmap:{pt} telephone-event/8000\r\n"),
        });
    }
    s.push_str(&format!("a={direction}\r\n"));
    s.into_bytes()
}

fn rules() -> PinRules {
    PinRules {
        min_len: 4,
        max_len: 8,
        attempts: 3,
        first_digit: 10 * S,
        inter_digit: 5 * S,
    }
}

fn inbound(offer: &[u8], early: Option<Duration>, t0: Instant) -> Result<Call, Refused> {
    inbound_limited(offer, early, None, t0)
}

fn inbound_limited(
    offer: &[u8],
    early: Option<Duration>,
    max_duration: Option<Duration>,
    t0: Instant,
) -> Result<Call, Refused> {
    Call::inbound(
        InboundCall {
            call: "c1".into(),
            offer,
            timers: Timers {
                early_media: early,
                idle: 300 * S,
                ack: 32 * S,
                name: None,
            },
            entry: Entry::Pin(rules()),
            dtmf: DtmfMode::Auto,
            keys: Arc::new(KeyBindings::default()),
            max_duration,
        },
        session(),
        t0,
    )
}

fn drain(call: &mut Call) -> Vec<Output> {
    std::iter::from_fn(|| call.poll_output()).collect()
}

/// The id of the first non-looped prompt played in `outputs`.
fn prompt_played(outputs: &[Output]) -> Option<(Prompt, u64)> {
    outputs.iter().find_map(|o| match o {
        Output::Media(MediaAction::Play {
            clip: Clip::Prompt(p),
            looped: false,
            id,
        }) => Some((*p, *id)),
        _ => None,
    })
}

fn key(call: &mut Call, digits: &str, at: Instant) {
    for d in digits.chars() {
        call.handle_input(
            Input::Digit {
                digit: d,
                source: Source::Rfc4733,
                at,
            },
            at,
        );
    }
}

/// An answered, acknowledged inbound call at the PIN prompt.
fn at_pin_prompt(t0: Instant) -> (Call, u64) {
    let mut call = inbound(&sdp("0 101", "sendrecv"), None, t0).unwrap();
    drain(&mut call);
    call.handle_input(Input::Acked { body: b"" }, t0);
    let (prompt, id) = prompt_played(&drain(&mut call)).expect("the welcome prompt");
    assert_eq!(prompt, Prompt::Welcome);
    (call, id)
}

#[test]
fn early_media_then_answer_then_the_pin_prompt() {
    let t0 = Instant::now();
    let mut call = inbound(&sdp("0 101", "sendrecv"), Some(S), t0).unwrap();
    let out = drain(&mut call);
    assert!(matches!(&out[0], Output::Sip(SipAction::Progress(body)) if !body.is_empty()));
    assert!(matches!(
        out[1],
        Output::Media(MediaAction::Play {
            clip: Clip::EarlyMedia,
            looped: true,
            ..
        })
    ));
    assert_eq!(call.poll_timeout(), Some(t0 + S));
    call.handle_timeout(t0 + S);
    let out = drain(&mut call);
    assert_eq!(out[0], Output::Media(MediaAction::Stop));
    let Output::Sip(SipAction::Answer(body)) = &out[1] else {
        panic!("{out:?}")
    };
    assert!(String::from_utf8_lossy(body).contains("telephone-event"));
    call.handle_input(Input::Acked { body: b"" }, t0 + 2 * S);
    assert_eq!(
        prompt_played(&drain(&mut call)).map(|p| p.0),
        Some(Prompt::Welcome)
    );
}

#[test]
fn an_offer_without_a_common_codec_is_refused_with_488() {
    let refused = inbound(&sdp("18", "sendrecv"), None, Instant::now()).unwrap_err();
    assert_eq!(refused.sip_status(), 488);
}

#[test]
fn a_pin_is_checked_then_the_room_joined_and_its_codec_kept() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    key(&mut call, "1357#", t0 + S);
    let out = drain(&mut call);
    // The first digit barges in: the prompt stops before anything else.
    assert!(out.contains(&Output::Media(MediaAction::Stop)), "{out:?}");
    let digits: String = out
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::Digit { digit, .. }) => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "1357#");
    assert!(out.contains(&Output::CheckPin("1357".into())), "{out:?}");
    call.handle_input(
        Input::PinVerdict(Verdict::Room(Admission {
            room: "1357".into(),
            moderator: false,
        })),
        t0 + S,
    );
    let out = drain(&mut call);
    let Some(Output::Room(RoomAction::Join {
        room,
        media,
        moderator: false,
    })) = out.first()
    else {
        panic!("{out:?}")
    };
    assert_eq!((room.as_str(), media.codec), ("1357", Codec::Pcmu));
    call.handle_input(Input::Joined, t0 + S);
    // In the room a re-INVITE that drops PCMU is refused, never followed.
    let reply = call.reoffer(&sdp("8 101", "sendrecv"), false);
    assert_eq!((reply.status, reply.sdp), (488, None));
    assert!(drain(&mut call).is_empty(), "no media change");
    // Hold is followed, in the room's codec.
    let reply = call.reoffer(&sdp("8 0 101", "sendonly"), false);
    assert_eq!(reply.status, 200);
    let out = drain(&mut call);
    assert!(
        matches!(out[..], [Output::Media(MediaAction::Update(m))] if !m.send && m.codec == Codec::Pcmu),
        "{out:?}"
    );
    assert_eq!(call.ended(), None);
    call.handle_input(Input::Bye, t0 + 4 * S);
    assert_eq!(
        call.ended(),
        Some(End {
            reason: "hangup",
            joined: false
        })
    );
    assert!(
        drain(&mut call).is_empty(),
        "their BYE needs no BYE of ours"
    );
}

#[test]
fn a_wrong_pin_is_reported_and_asked_again() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    key(&mut call, "9999#", t0 + S);
    drain(&mut call);
    call.handle_input(Input::PinVerdict(Verdict::Wrong), t0 + S);
    let out = drain(&mut call);
    assert!(out.contains(&Output::Event(Event::PinRejected {
        call: "c1".into(),
        failures: 1
    })));
    assert_eq!(prompt_played(&out).map(|p| p.0), Some(Prompt::InvalidPin));
}

#[test]
fn the_end_of_a_replaced_prompt_is_stale() {
    let t0 = Instant::now();
    let (mut call, welcome) = at_pin_prompt(t0);
    key(&mut call, "12", t0 + S);
    drain(&mut call);
    // The welcome prompt was stopped by the first digit; its end is stale
    // and must not start the first-digit timer or anything else.
    call.handle_input(Input::PlaybackDone(welcome), t0 + S);
    assert!(drain(&mut call).is_empty());
    // The inter-digit timeout still runs: a too-short PIN is asked again.
    let deadline = call.poll_timeout().expect("a timer");
    assert!(deadline <= t0 + S + 5 * S, "{deadline:?}");
    call.handle_timeout(t0 + 6 * S);
    assert_eq!(
        prompt_played(&drain(&mut call)).map(|p| p.0),
        Some(Prompt::InvalidPin)
    );
}

#[test]
fn digits_heard_two_ways_count_once() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    key(&mut call, "4", t0 + S);
    assert_eq!(
        call.info(
            "application/dtmf-relay",
            b"Signal=4\r\nDuration=160\r\n",
            t0 + S
        ),
        200
    );
    let digits = drain(&mut call)
        .iter()
        .filter(|o| matches!(o, Output::Event(Event::Digit { .. })))
        .count();
    assert_eq!(digits, 1);
    assert_eq!(call.digit_counters().duplicates, 1);
}

#[test]
fn info_bodies_get_their_status() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    assert_eq!(call.info("application/dtmf", b"7", t0), 200);
    assert_eq!(call.info("application/dtmf-relay", b"", t0), 200);
    assert_eq!(
        call.info("application/dtmf-relay", b"Signal=Z\r\n", t0),
        400
    );
    assert_eq!(call.info("text/plain", b"hello", t0), 415);
    assert_eq!(call.info("application/dtmf", b"\xff\xfe", t0), 400);
}

#[test]
fn late_offer_gets_our_offer_and_reads_the_answer_in_the_ack() {
    let t0 = Instant::now();
    let mut call = inbound(b"", Some(S), t0).unwrap();
    let out = drain(&mut call);
    // No early media without an answer out: 180, then the 200 with our offer.
    assert_eq!(out[0], Output::Sip(SipAction::Ringing));
    let Output::Sip(SipAction::Answer(offer)) = &out[2] else {
        panic!("{out:?}")
    };
    let offer = String::from_utf8_lossy(offer);
    assert!(offer.contains("PCMU") && offer.contains("PCMA"), "{offer}");
    assert_eq!(call.media().remote, None);
    call.handle_input(
        Input::Acked {
            body: &sdp("8 101", "sendrecv"),
        },
        t0 + S,
    );
    let out = drain(&mut call);
    let Output::Media(MediaAction::Update(media)) = out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(media.codec, Codec::Pcma);
    assert_eq!(media.remote, Some("198.51.100.2:4000".parse().unwrap()));
    assert_eq!(prompt_played(&out).map(|p| p.0), Some(Prompt::Welcome));
}

#[test]
fn an_unusable_answer_in_the_ack_ends_the_call_with_bye() {
    let t0 = Instant::now();
    let mut call = inbound(b"", None, t0).unwrap();
    drain(&mut call);
    call.handle_input(Input::Acked { body: b"garbage" }, t0 + S);
    assert_eq!(drain(&mut call), [Output::Sip(SipAction::Bye)]);
    assert_eq!(call.ended().map(|e| e.reason), Some("bad_answer"));
}

#[test]
fn no_ack_ends_the_call_after_64_t1() {
    let t0 = Instant::now();
    let mut call = inbound(&sdp("0", "sendrecv"), None, t0).unwrap();
    drain(&mut call);
    assert_eq!(call.poll_timeout(), Some(t0 + 32 * S));
    call.handle_timeout(t0 + 31 * S);
    assert_eq!(call.ended(), None);
    call.handle_timeout(t0 + 32 * S);
    assert_eq!(call.ended().map(|e| e.reason), Some("no_ack"));
    assert!(
        drain(&mut call).is_empty(),
        "the stack already gave up on the 200"
    );
}

#[test]
fn an_offerless_reinvite_gets_our_offer_and_an_update_a_plain_200() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    let reply = call.reoffer(b"", false);
    assert_eq!(reply.status, 200);
    let offer = String::from_utf8_lossy(reply.sdp.as_deref().unwrap_or_default()).into_owned();
    assert!(offer.contains("m=audio 20000"), "{offer}");
    assert_eq!(
        call.reoffer(b"", true),
        Reply {
            status: 200,
            sdp: None
        }
    );
}

#[test]
fn a_kick_or_control_hangup_says_bye_once_answered_and_503_before() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    call.handle_input(Input::Hangup, t0 + S);
    assert_eq!(drain(&mut call), [Output::Sip(SipAction::Bye)]);
    assert_eq!(call.ended().map(|e| e.reason), Some("control_hangup"));

    let mut early = inbound(&sdp("0", "sendrecv"), Some(S), t0).unwrap();
    drain(&mut early);
    early.handle_input(Input::Shutdown, t0);
    assert_eq!(drain(&mut early), [Output::Sip(SipAction::Reject(503))]);
}

#[test]
fn media_that_cannot_start_ends_the_call_at_once() {
    let t0 = Instant::now();
    // Inbound: the media starts before anything is sent; 503.
    let mut call = inbound(&sdp("0", "sendrecv"), Some(S), t0).unwrap();
    call.handle_input(Input::MediaFailed, t0);
    assert!(drain(&mut call).contains(&Output::Sip(SipAction::Reject(503))));
    assert_eq!(call.ended().map(|e| e.reason), Some("media_failed"));

    // Outbound: the media starts at the answer; BYE.
    let mut call = answered_outbound(t0);
    call.handle_input(Input::MediaFailed, t0);
    assert_eq!(drain(&mut call)[0], Output::Sip(SipAction::Bye));
    assert_eq!(call.ended().map(|e| e.reason), Some("media_failed"));
}

fn outbound(t0: Instant) -> (Call, Vec<u8>) {
    let mut session = session();
    let offer = session.offer();
    let call = Call::outbound(
        OutboundCall {
            call: "o1".into(),
            room: "sales".into(),
            to: "sip:bob@198.51.100.2".into(),
            ring_timeout: 30 * S,
            dtmf: DtmfMode::Auto,
            keys: Arc::new(KeyBindings::default()),
            key_in: Some("4321#".into()),
            max_duration: None,
        },
        session,
        t0,
    );
    (call, offer)
}

/// An outbound call answered with PCMU, its outputs so far drained.
fn answered_outbound(t0: Instant) -> Call {
    let (mut call, _) = outbound(t0);
    call.handle_input(
        Input::Answered {
            sdp: &sdp("0", "sendrecv"),
        },
        t0,
    );
    drain(&mut call);
    call
}

#[test]
fn an_outbound_call_rings_is_answered_joins_and_keeps_its_codec() {
    let t0 = Instant::now();
    let (mut call, offer) = outbound(t0);
    assert!(String::from_utf8_lossy(&offer).contains("PCMA"));
    call.handle_input(Input::Progress, t0);
    call.handle_input(Input::Progress, t0);
    let out = drain(&mut call);
    assert_eq!(out.len(), 1, "one ringing event: {out:?}");
    assert!(matches!(out[0], Output::Event(Event::CallRinging { .. })));
    call.handle_input(
        Input::Answered {
            sdp: &sdp("8 101", "sendrecv"),
        },
        t0 + S,
    );
    let out = drain(&mut call);
    assert!(matches!(out[0], Output::Media(MediaAction::Start(m)) if m.codec == Codec::Pcma));
    assert!(matches!(out[1], Output::Event(Event::CallAnswered { .. })));
    assert!(
        matches!(&out[2], Output::Room(RoomAction::Join { room, .. }) if room == "sales"),
        "{out:?}"
    );
    call.handle_input(Input::Joined, t0 + S);
    // RFC 3261 §14.2: a re-INVITE without SDP gets an offer, in the room's codec only.
    let reply = call.reoffer(b"", false);
    let offer = String::from_utf8_lossy(reply.sdp.as_deref().unwrap_or_default()).into_owned();
    assert!(offer.contains("PCMA") && !offer.contains("PCMU"), "{offer}");
    assert_eq!(call.reoffer(&sdp("0", "sendrecv"), false).status, 488);
    call.handle_input(Input::Bye, t0 + 3 * S);
    assert_eq!(
        call.ended(),
        Some(End {
            reason: "hangup",
            joined: true
        })
    );
}

#[test]
fn an_answer_with_a_codec_we_did_not_offer_is_hung_up() {
    let t0 = Instant::now();
    let (mut call, _) = outbound(t0);
    call.handle_input(
        Input::Answered {
            sdp: &sdp("18", "sendrecv"),
        },
        t0,
    );
    let out = drain(&mut call);
    assert!(out.contains(&Output::Sip(SipAction::Bye)), "{out:?}");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::DialFailed { reason, .. }) if reason == "no_common_codec"
    )));
}

#[test]
fn no_answer_is_cancelled_at_the_ring_timeout_and_failed_once() {
    let t0 = Instant::now();
    let (mut call, _) = outbound(t0);
    assert_eq!(call.poll_timeout(), Some(t0 + 30 * S));
    call.handle_timeout(t0 + 30 * S);
    assert_eq!(drain(&mut call), [Output::Sip(SipAction::Cancel)]);
    // A second shutdown or hangup while cancelling sends nothing more.
    call.handle_input(Input::Shutdown, t0 + 30 * S);
    call.handle_input(Input::Shutdown, t0 + 30 * S);
    assert!(drain(&mut call).is_empty());
    call.handle_input(Input::DialFailed { status: Some(487) }, t0 + 31 * S);
    let failed: Vec<_> = drain(&mut call)
        .into_iter()
        .filter(|o| matches!(o, Output::Event(Event::DialFailed { .. })))
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(matches!(
        &failed[0],
        Output::Event(Event::DialFailed { status: Some(487), reason, .. }) if reason == "no_answer"
    ));
}

#[test]
fn a_full_or_locked_room_refuses_an_answered_outbound_call_with_bye() {
    let t0 = Instant::now();
    for (why, want) in [
        (RoomRefusal::Full, "room_full"),
        (RoomRefusal::Locked, "room_locked"),
    ] {
        let mut call = answered_outbound(t0);
        call.handle_input(Input::RoomRefused(why), t0);
        let out = drain(&mut call);
        assert_eq!(out[0], Output::Sip(SipAction::Bye));
        assert!(matches!(
            &out[1],
            Output::Event(Event::DialFailed { reason, .. }) if reason == want
        ));
    }
}

#[test]
fn a_dialog_gone_without_a_word_ends_the_call_in_any_state() {
    let t0 = Instant::now();
    let (mut ringing, _) = outbound(t0);
    ringing.handle_input(Input::DialogEnded, t0);
    assert_eq!(ringing.ended().map(|e| e.reason), Some("unreachable"));
    let (mut joined, _) = outbound(t0);
    joined.handle_input(
        Input::Answered {
            sdp: &sdp("0", "sendrecv"),
        },
        t0,
    );
    joined.handle_input(Input::Joined, t0);
    joined.handle_input(Input::DialogEnded, t0);
    assert_eq!(
        joined.ended(),
        Some(End {
            reason: "hangup",
            joined: true
        })
    );
    let (mut inbound_call, _) = at_pin_prompt(t0);
    inbound_call.handle_input(Input::DialogEnded, t0);
    assert!(inbound_call.ended().is_some());
}

/// Joined room "sales" with the moderator PIN at `t0 + 1 s`, outputs drained.
fn in_room_as_moderator(t0: Instant) -> Call {
    let (mut call, _) = at_pin_prompt(t0);
    key(&mut call, "98765#", t0 + S);
    drain(&mut call);
    call.handle_input(
        Input::PinVerdict(Verdict::Room(Admission {
            room: "sales".into(),
            moderator: true,
        })),
        t0 + S,
    );
    let out = drain(&mut call);
    assert!(
        matches!(&out[..], [Output::Room(RoomAction::Join { room, moderator: true, .. })] if room == "sales"),
        "{out:?}"
    );
    call.handle_input(Input::Joined, t0 + S);
    drain(&mut call);
    call
}

fn room_keys(out: &[Output]) -> Vec<KeyAction> {
    out.iter()
        .filter_map(|o| match o {
            Output::Room(RoomAction::Key(a)) => Some(*a),
            _ => None,
        })
        .collect()
}

#[test]
fn in_a_room_star_sequences_are_controls_and_stray_digits_nothing() {
    let t0 = Instant::now();
    let mut call = in_room_as_moderator(t0);
    key(&mut call, "*", t0 + 2 * S);
    key(&mut call, "6", t0 + 3 * S);
    let out = drain(&mut call);
    assert_eq!(room_keys(&out), [KeyAction::Mute]);
    // Each press is still reported as a digit.
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Event(Event::Digit { .. })))
            .count(),
        2
    );
    // A lone 6, and a 6 too long after its star, do nothing.
    key(&mut call, "6", t0 + 10 * S);
    key(&mut call, "*", t0 + 11 * S);
    key(&mut call, "6", t0 + 15 * S);
    assert!(room_keys(&drain(&mut call)).is_empty());
    // Moderator keys reach the room, which decides who may use them.
    key(&mut call, "*", t0 + 20 * S);
    key(&mut call, "2", t0 + 21 * S);
    assert_eq!(room_keys(&drain(&mut call)), [KeyAction::Lock]);
    assert_eq!(call.ended(), None);
}

#[test]
fn leaving_from_the_keypad_says_goodbye_then_hangs_up() {
    let t0 = Instant::now();
    let mut call = in_room_as_moderator(t0);
    key(&mut call, "*", t0 + 2 * S);
    key(&mut call, "8", t0 + 2 * S + S / 2);
    assert_eq!(room_keys(&drain(&mut call)), [KeyAction::Leave]);
    // The room let the member go.
    call.handle_input(Input::Left, t0 + 3 * S);
    let (prompt, id) = prompt_played(&drain(&mut call)).expect("goodbye");
    assert_eq!(prompt, Prompt::Goodbye);
    assert_eq!(call.ended(), None);
    call.handle_input(Input::PlaybackDone(id), t0 + 4 * S);
    assert_eq!(drain(&mut call), [Output::Sip(SipAction::Bye)]);
    assert_eq!(call.ended().map(|e| e.reason), Some("left"));
}

#[test]
fn a_room_that_ends_plays_its_prompt_then_hangs_up() {
    let t0 = Instant::now();
    let mut call = in_room_as_moderator(t0);
    call.handle_input(Input::RoomEnded, t0 + 3 * S);
    let (prompt, id) = prompt_played(&drain(&mut call)).expect("conference ended");
    assert_eq!(prompt, Prompt::ConferenceEnded);
    call.handle_input(Input::PlaybackDone(id), t0 + 4 * S);
    assert_eq!(drain(&mut call), [Output::Sip(SipAction::Bye)]);
    assert_eq!(call.ended().map(|e| e.reason), Some("room_ended"));
}

#[test]
fn digits_go_as_events_where_negotiated_and_a_dialled_call_keys_its_own_in() {
    let t0 = Instant::now();
    // Before the answer there is nothing to carry them.
    let (mut call, _) = outbound(t0);
    assert!(!call.send_digits("1", 0));
    // Answered without telephone-event: its digits go as INFO, once it is in the room.
    let mut call = answered_outbound(t0);
    call.handle_input(Input::Joined, t0 + S);
    let out = drain(&mut call);
    assert!(
        out.contains(&Output::SendDigits {
            digits: "4321#".into(),
            path: DigitPath::Info
        }),
        "{out:?}"
    );
    // Answered with it: events, after a second for the far end to listen.
    let (mut call, _) = outbound(t0);
    call.handle_input(
        Input::Answered {
            sdp: &sdp("0 101", "sendrecv"),
        },
        t0,
    );
    drain(&mut call);
    call.handle_input(Input::Joined, t0 + S);
    assert!(drain(&mut call).contains(&Output::SendDigits {
        digits: "4321#".into(),
        path: DigitPath::Rtp { lead_frames: 50 }
    }),);
    assert!(call.send_digits("9", 0));
    assert_eq!(
        drain(&mut call),
        [Output::SendDigits {
            digits: "9".into(),
            path: DigitPath::Rtp { lead_frames: 0 }
        }]
    );
}

fn relayed(out: &[Output]) -> String {
    out.iter()
        .filter_map(|o| match o {
            Output::Room(RoomAction::Relay(d)) => Some(*d),
            _ => None,
        })
        .collect()
}

#[test]
fn in_a_bridge_room_every_key_is_relayed_once_and_none_acted_on_here() {
    let t0 = Instant::now();
    let (mut call, _) = at_pin_prompt(t0);
    key(&mut call, "98765#", t0 + S);
    call.handle_input(
        Input::PinVerdict(Verdict::Room(Admission {
            room: "sales".into(),
            moderator: true,
        })),
        t0 + S,
    );
    drain(&mut call);
    call.handle_input(Input::JoinedBridge, t0 + S);
    drain(&mut call);
    // `*2` (lock) as events, heard as tones too and sent as INFO: each
    // key goes across once, and the bridge room is not locked here.
    let at = t0 + 2 * S;
    for (i, d) in "*2".chars().enumerate() {
        let at = at + S / 2 * i as u32;
        for source in [Source::Rfc4733, Source::Inband] {
            call.handle_input(
                Input::Digit {
                    digit: d,
                    source,
                    at,
                },
                at,
            );
        }
        let body = format!("Signal={d}\r\nDuration=160\r\n");
        assert_eq!(
            call.info("application/dtmf-relay", body.as_bytes(), at),
            200
        );
    }
    let out = drain(&mut call);
    assert_eq!(relayed(&out), "*2", "{out:?}");
    assert!(room_keys(&out).is_empty(), "{out:?}");
    // Each press is still reported here as a digit.
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Event(Event::Digit { .. })))
            .count(),
        2
    );
    // A stray key goes too: the far end's keypad makes the sequences.
    key(&mut call, "6", t0 + 10 * S);
    assert_eq!(relayed(&drain(&mut call)), "6");
    assert_eq!(call.ended(), None);
}

#[test]
fn a_bridge_leg_keys_what_is_relayed_to_it_once_in_its_room() {
    let t0 = Instant::now();
    // Relayed before the far end answered: kept, after its own keys.
    let (mut call, _) = outbound(t0);
    call.relay_digits("*");
    call.handle_input(
        Input::Answered {
            sdp: &sdp("0 101", "sendrecv"),
        },
        t0,
    );
    call.relay_digits("6");
    assert!(
        !drain(&mut call)
            .iter()
            .any(|o| matches!(o, Output::SendDigits { .. })),
        "nothing keyed before the room"
    );
    call.handle_input(Input::Joined, t0 + S);
    let sent: Vec<Output> = drain(&mut call)
        .into_iter()
        .filter(|o| matches!(o, Output::SendDigits { .. }))
        .collect();
    assert_eq!(
        sent,
        [Output::SendDigits {
            digits: "4321#*6".into(),
            path: DigitPath::Rtp { lead_frames: 50 }
        }]
    );
    // In the room: at once, one press at a time.
    call.relay_digits("2");
    assert_eq!(
        drain(&mut call),
        [Output::SendDigits {
            digits: "2".into(),
            path: DigitPath::Rtp { lead_frames: 0 }
        }]
    );
    // Kept presses are bounded; a call that ended keys nothing.
    let (mut call, _) = outbound(t0);
    for _ in 0..100 {
        call.relay_digits("1");
    }
    call.handle_input(
        Input::Answered {
            sdp: &sdp("0 101", "sendrecv"),
        },
        t0,
    );
    call.handle_input(Input::Joined, t0 + S);
    let keyed = drain(&mut call).into_iter().find_map(|o| match o {
        Output::SendDigits { digits, .. } => Some(digits),
        _ => None,
    });
    assert_eq!(keyed.map(|d| d.len()), Some(32));
    call.handle_input(Input::Bye, t0 + 2 * S);
    drain(&mut call);
    call.relay_digits("3");
    assert!(drain(&mut call).is_empty());
}

#[test]
fn a_call_at_its_time_limit_is_warned_then_let_out_of_its_room_with_goodbye() {
    let t0 = Instant::now();
    let mut call = inbound_limited(&sdp("0 101", "sendrecv"), None, Some(300 * S), t0).unwrap();
    drain(&mut call);
    call.handle_input(Input::Acked { body: b"" }, t0);
    drain(&mut call);
    call.handle_input(
        Input::PinVerdict(Verdict::Room(Admission {
            room: "sales".into(),
            moderator: false,
        })),
        t0 + S,
    );
    drain(&mut call);
    call.handle_input(Input::Joined, t0 + S);
    drain(&mut call);
    // Answered at t0: warned at 4 min, ended at 5.
    assert_eq!(call.poll_timeout(), Some(t0 + 240 * S));
    call.handle_timeout(t0 + 240 * S);
    assert_eq!(
        drain(&mut call),
        [Output::Room(RoomAction::Say(Prompt::TimeWarning))]
    );
    assert_eq!(call.poll_timeout(), Some(t0 + 300 * S));
    call.handle_timeout(t0 + 300 * S);
    assert_eq!(
        drain(&mut call),
        [Output::Room(RoomAction::Leave("max_duration"))]
    );
    call.handle_input(Input::Left, t0 + 300 * S);
    let (prompt, id) = prompt_played(&drain(&mut call)).expect("goodbye");
    assert_eq!(prompt, Prompt::Goodbye);
    call.handle_input(Input::PlaybackDone(id), t0 + 302 * S);
    assert_eq!(drain(&mut call), [Output::Sip(SipAction::Bye)]);
    assert_eq!(call.ended().map(|e| e.reason), Some("max_duration"));
}

#[test]
fn a_call_at_its_time_limit_before_any_room_is_hung_up() {
    let t0 = Instant::now();
    let mut call = inbound_limited(&sdp("0 101", "sendrecv"), None, Some(120 * S), t0).unwrap();
    drain(&mut call);
    call.handle_input(Input::Acked { body: b"" }, t0);
    drain(&mut call);
    // Still keying its PIN: no warning in a room, and the end is a BYE.
    call.handle_timeout(t0 + 60 * S);
    call.handle_timeout(t0 + 120 * S);
    assert!(drain(&mut call).contains(&Output::Sip(SipAction::Bye)));
    assert_eq!(call.ended().map(|e| e.reason), Some("max_duration"));
}
