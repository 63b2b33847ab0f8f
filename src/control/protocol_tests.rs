use super::*;
use crate::conference::RoomStatus;
use crate::dtmf::Source;
use crate::events::Direction;
use crate::media::codec::Codec;

fn req(line: &str) -> Result<Request, ProtocolError> {
    parse(line.as_bytes()).request
}

fn code(line: &str) -> &'static str {
    match req(line) {
        Ok(r) => panic!("{line} parsed as {r:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn every_command_parses() {
    assert_eq!(
        req(r#"{"cmd":"auth","token":"t0k"}"#),
        Ok(Request::Auth {
            token: "t0k".into()
        })
    );
    assert_eq!(
        req(
            r#"{"cmd":"dial","room":"r1","to":"+15551234","from":"desk","timeout":30,"dtmf":"12*#ab"}"#
        ),
        Ok(Request::Dial(DialRequest {
            room: "r1".into(),
            to: "+15551234".into(),
            from: Some("desk".into()),
            timeout: Some(Duration::from_secs(30)),
            dtmf: Some("12*#AB".into()),
        }))
    );
    assert_eq!(
        req(r#"{"cmd":"dial","room":"r1","to":"sip:a@b"}"#),
        Ok(Request::Dial(DialRequest {
            room: "r1".into(),
            to: "sip:a@b".into(),
            from: None,
            timeout: None,
            dtmf: None,
        }))
    );
    assert_eq!(
        req(r#"{"cmd":"dtmf","call":"c1","digits":"4321#"}"#),
        Ok(Request::Dtmf {
            call: "c1".into(),
            digits: "4321#".into()
        })
    );
    for bad in [
        r#"{"cmd":"dtmf","call":"c1","digits":"12x"}"#,
        r#"{"cmd":"dtmf","call":"c1","digits":5}"#,
        r#"{"cmd":"dial","room":"r1","to":"+1555","dtmf":"1 2"}"#,
    ] {
        assert!(
            matches!(req(bad), Err(ProtocolError::BadArgument { .. })),
            "{bad}: {:?}",
            req(bad)
        );
    }
    let long = format!(
        r#"{{"cmd":"dtmf","call":"c1","digits":"{}"}}"#,
        "1".repeat(33)
    );
    assert!(matches!(req(&long), Err(ProtocolError::BadArgument { .. })));
    assert_eq!(
        req(r#"{"cmd":"dtmf","call":"c1"}"#),
        Err(ProtocolError::MissingField("digits"))
    );
    assert_eq!(
        req(r#"{"cmd":"record","room":"r1"}"#),
        Ok(Request::Record {
            room: "r1".into(),
            on: true
        })
    );
    assert_eq!(
        req(r#"{"cmd":"stop_recording","room":"r1"}"#),
        Ok(Request::Record {
            room: "r1".into(),
            on: false
        })
    );
    assert_eq!(
        req(r#"{"cmd":"hangup","call":"c1"}"#),
        Ok(Request::Hangup { call: "c1".into() })
    );
    assert_eq!(req(r#"{"cmd":"rooms"}"#), Ok(Request::Rooms));
    assert_eq!(
        req(r#"{"cmd":"room","room":"r1"}"#),
        Ok(Request::Room { room: "r1".into() })
    );
    for (cmd, control) in [
        ("mute", Control::Mute(true)),
        ("unmute", Control::Mute(false)),
        ("deaf", Control::Deaf(true)),
        ("undeaf", Control::Deaf(false)),
        ("kick", Control::Kick),
    ] {
        assert_eq!(
            req(&format!(r#"{{"cmd":"{cmd}","call":"c9"}}"#)),
            Ok(Request::Control {
                call: "c9".into(),
                control
            })
        );
    }
    assert_eq!(
        req(r#"{"cmd":"say","room":"r1","text":"hello"}"#),
        Ok(Request::Say {
            target: Target::Room("r1".into()),
            text: "hello".into()
        })
    );
    assert_eq!(
        req(r#"{"cmd":"say","call":"c1","text":"hi"}"#),
        Ok(Request::Say {
            target: Target::Call("c1".into()),
            text: "hi".into()
        })
    );
    assert_eq!(
        req(r#"{"cmd":"subscribe"}"#),
        Ok(Request::Subscribe { events: None })
    );
    assert_eq!(
        req(r#"{"cmd":"subscribe","events":["member_joined","dial_failed","member_joined"]}"#),
        Ok(Request::Subscribe {
            events: Some(vec!["member_joined", "dial_failed"])
        })
    );
    assert_eq!(req(r#"{"cmd":"status"}"#), Ok(Request::Status));
    assert_eq!(req(r#"{"cmd":"drain"}"#), Ok(Request::Drain));
    assert_eq!(
        req(r#"{"cmd":"lock","room":"r1"}"#),
        Ok(Request::Lock {
            room: "r1".into(),
            on: true
        })
    );
    assert_eq!(
        req(r#"{"cmd":"unlock","room":"r1"}"#),
        Ok(Request::Lock {
            room: "r1".into(),
            on: false
        })
    );
    assert_eq!(
        req(r#"{"cmd":"lock"}"#),
        Err(ProtocolError::MissingField("room"))
    );
    assert_eq!(req(r#"{"cmd":"reload"}"#), Ok(Request::Reload));
    assert!(matches!(
        req(r#"{"cmd":"drain","now":true}"#),
        Err(ProtocolError::BadArgument { .. })
    ));
}

#[test]
fn malformed_lines_are_bad_json() {
    for line in [
        "",
        "{",
        "not json",
        "[1,2]",
        "42",
        "\"status\"",
        "{\"cmd\":\"status\"} trailing",
    ] {
        assert_eq!(code(line), "bad_json", "{line:?}");
    }
    assert_eq!(
        parse(&[0xff, 0xfe, b'{']).request.map_err(|e| e.code()),
        Err("bad_json")
    );
}

#[test]
fn unknown_commands_are_named() {
    assert_eq!(
        req(r#"{"cmd":"reboot"}"#),
        Err(ProtocolError::UnknownCommand("reboot".into()))
    );
    assert_eq!(code(r#"{"cmd":"ROOMS"}"#), "unknown_command");
}

#[test]
fn a_missing_field_is_named() {
    assert_eq!(req(r#"{"id":1}"#), Err(ProtocolError::MissingField("cmd")));
    assert_eq!(
        req(r#"{"cmd":"dial","room":"r1"}"#),
        Err(ProtocolError::MissingField("to"))
    );
    assert_eq!(
        req(r#"{"cmd":"dial","to":"+1555"}"#),
        Err(ProtocolError::MissingField("room"))
    );
    assert_eq!(
        req(r#"{"cmd":"kick"}"#),
        Err(ProtocolError::MissingField("call"))
    );
    assert_eq!(
        req(r#"{"cmd":"say","room":"r1"}"#),
        Err(ProtocolError::MissingField("text"))
    );
    assert_eq!(code(r#"{"cmd":"say","text":"x"}"#), "missing_field");
    let e = req(r#"{"cmd":"auth"}"#).unwrap_err();
    assert_eq!(e.code(), "missing_field");
    assert!(e.to_string().contains("token"), "{e}");
}

#[test]
fn unusable_arguments_are_bad_argument_and_name_the_field() {
    let cases = [
        (r#"{"cmd":7}"#, "cmd"),
        (r#"{"cmd":"hangup","call":12}"#, "call"),
        (r#"{"cmd":"hangup","call":"  "}"#, "call"),
        (
            r#"{"cmd":"dial","room":"r","to":"1","timeout":0}"#,
            "timeout",
        ),
        (
            r#"{"cmd":"dial","room":"r","to":"1","timeout":-3}"#,
            "timeout",
        ),
        (
            r#"{"cmd":"dial","room":"r","to":"1","timeout":"30"}"#,
            "timeout",
        ),
        (
            r#"{"cmd":"dial","room":"r","to":"1","timeout":1e9}"#,
            "timeout",
        ),
        (
            r#"{"cmd":"dial","room":"r","to":"1","tmeout":30}"#,
            "tmeout",
        ),
        (r#"{"cmd":"say","room":"r","call":"c","text":"x"}"#, "call"),
        (
            r#"{"cmd":"subscribe","events":["member_joined","lunch"]}"#,
            "events",
        ),
        (r#"{"cmd":"subscribe","events":[]}"#, "events"),
        (r#"{"cmd":"subscribe","events":"member_joined"}"#, "events"),
        (r#"{"cmd":"status","verbose":true}"#, "verbose"),
    ];
    for (line, field) in cases {
        match req(line) {
            Err(ProtocolError::BadArgument { field: f, .. }) => assert_eq!(f, field, "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn the_id_is_echoed_whatever_its_type() {
    assert_eq!(parse(br#"{"id":7,"cmd":"status"}"#).id, json!(7));
    assert_eq!(parse(br#"{"id":"a-1","cmd":"status"}"#).id, json!("a-1"));
    assert_eq!(
        parse(br#"{"id":{"n":[1]},"cmd":"status"}"#).id,
        json!({"n":[1]})
    );
    assert_eq!(parse(br#"{"cmd":"status"}"#).id, Value::Null);
    // An error still echoes the id when the line was JSON.
    let p = parse(br#"{"id":99,"cmd":"nope"}"#);
    assert_eq!(
        (p.id.clone(), p.request.map_err(|e| e.code())),
        (json!(99), Err("unknown_command"))
    );
    let line: Value = serde_json::from_str(&protocol_error_line(
        &json!("x"),
        &ProtocolError::MissingField("call"),
    ))
    .unwrap();
    assert_eq!(
        line,
        json!({"id":"x","ok":false,"error":{"code":"missing_field","message":"missing field \"call\""}})
    );
    assert_eq!(
        ok_line(&json!(3), dial_result("c7")),
        r#"{"id":3,"ok":true,"result":{"call":"c7"}}"#
    );
}

#[test]
fn every_error_has_its_code() {
    let codes: Vec<&str> = [
        ProtocolError::BadJson(String::new()),
        ProtocolError::UnknownCommand(String::new()),
        ProtocolError::MissingField("x"),
        ProtocolError::bad("x", ""),
        ProtocolError::LineTooLong(1),
        ProtocolError::AuthRequired,
        ProtocolError::AuthFailed,
        ProtocolError::TooManyClients(1),
    ]
    .iter()
    .map(ProtocolError::code)
    .collect();
    assert_eq!(
        codes,
        [
            "bad_json",
            "unknown_command",
            "missing_field",
            "bad_argument",
            "line_too_long",
            "auth_required",
            "auth_failed",
            "too_many_clients"
        ]
    );
    let line: Value = serde_json::from_str(&command_error_line(
        &json!(1),
        &CommandError::NoSuchRoom("r".into()),
    ))
    .unwrap();
    assert_eq!(line["error"]["code"], "no_such_room");
}

#[test]
fn the_filter_names_are_the_event_names() {
    let (call, room, to) = (String::new(), String::new(), String::new());
    let events = [
        Event::CallRinging {
            call: call.clone(),
            room: room.clone(),
            to: to.clone(),
        },
        Event::CallAnswered {
            call: call.clone(),
            room: room.clone(),
            to: to.clone(),
        },
        Event::DialFailed {
            call: call.clone(),
            room: room.clone(),
            to: to.clone(),
            status: None,
            reason: String::new(),
        },
        Event::Registration {
            state: "registered",
            detail: None,
        },
        Event::Digit {
            call: call.clone(),
            digit: '1',
            source: Source::Rfc4733,
        },
        Event::PinRejected {
            call: call.clone(),
            failures: 1,
        },
        Event::PinLockout {
            call: call.clone(),
            key: String::new(),
        },
        Event::RoomOpened { room: room.clone() },
        Event::RoomClosed { room: room.clone() },
        Event::RoomLocked { room: room.clone() },
        Event::RoomUnlocked { room: room.clone() },
        Event::MemberJoined {
            call: call.clone(),
            sip_call_id: String::new(),
            room: room.clone(),
            from: String::new(),
            to,
            direction: Direction::Inbound,
            direct: false,
            moderator: false,
        },
        Event::MemberLeft {
            call: call.clone(),
            room: room.clone(),
            reason: "hangup",
        },
        Event::MemberQuality {
            call: call.clone(),
            room: room.clone(),
            mos: 3.21,
            state: crate::events::QualityState::Degraded,
        },
        Event::MemberKey {
            call,
            room: room.clone(),
            action: "mute",
            allowed: true,
        },
        Event::RoomEnded {
            room: room.clone(),
            reason: "moderator_left",
        },
        Event::RecordingStarted {
            room: room.clone(),
            path: "r.wav".into(),
        },
        Event::RecordingStopped {
            room: room.clone(),
            path: "r.wav".into(),
            secs: 1.5,
        },
        Event::RecordingFailed {
            room,
            path: "r.wav".into(),
            secs: 1.5,
            reason: "disk write failed".into(),
        },
        Event::Draining { calls: 2 },
        Event::ConfigReloaded {
            restart_needed: vec!["media.threads"],
        },
        Event::ConfigReloadFailed {
            error: "pin.min_len: bad".into(),
        },
    ];
    let names: Vec<String> = events
        .iter()
        .filter_map(|e| event_line(e, None))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, EVENT_NAMES);
    assert_eq!(events_lost_line(5), r#"{"event":"events_lost","count":5}"#);
}

#[test]
fn rooms_list_every_member_field() {
    let rooms = [RoomStatus {
        room: "r1".into(),
        locked: false,
        members: vec![MemberStatus {
            call: "c1".into(),
            sip_call_id: "a84b4c76e66710@pc33".into(),
            direction: Direction::Outbound,
            from: "desk".into(),
            to: "+1555".into(),
            moderator: true,
            codec: Codec::Pcma,
            talking: true,
            muted: false,
            deaf: true,
            held: false,
            listen_db: -3,
            talk_db: 6,
            lost: 3,
            late: 1,
            jitter_ms: 2.5,
            quality: crate::conference::Quality {
                rtt_ms: Some(41.26),
                remote_lost: Some(0.0391),
                remote_jitter_ms: Some(3.04),
                mos: Some(4.123),
            },
        }],
    }];
    assert_eq!(
        rooms_result(&rooms),
        json!({"rooms":[{"room":"r1","locked":false,"members":[{
            "call":"c1","sip_call_id":"a84b4c76e66710@pc33","direction":"outbound","from":"desk","to":"+1555","moderator":true,"listen_db":-3,"talk_db":6,"muted":false,
            "deaf":true,"talking":true,"held":false,"codec":"PCMA","lost":3,"late":1,"jitter_ms":2.5,
            "rtt_ms":41.3,"remote_lost":0.039,"remote_jitter_ms":3.0,"mos":4.12
        }]}]})
    );
}

#[test]
fn no_input_panics_the_parser() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let seeds: [&[u8]; 4] = [
        br#"{"id":1,"cmd":"dial","room":"r","to":"+1555","from":"x","timeout":30}"#,
        br#"{"cmd":"subscribe","events":["member_joined","digit"]}"#,
        br#"{"cmd":"say","room":"r","call":null,"text":"hi"}"#,
        br#"{"id":[{"a":null}],"cmd":"kick","call":"c"}"#,
    ];
    for round in 0..20_000 {
        let mut line: Vec<u8> = seeds[round % seeds.len()].to_vec();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..line.len());
            match rng.random_range(0..3) {
                0 => line[at] = rng.random(),
                1 => {
                    line.remove(at);
                }
                _ => line.insert(at, b"{}[]\":,0e-.\\"[rng.random_range(0..12)]),
            }
        }
        let _ = parse(&line);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        parse(deep.as_bytes()).request.map_err(|e| e.code()),
        Err("bad_json")
    );
}

#[test]
fn local_keeps_a_request_on_this_node_and_the_fields_are_kept_to_forward() {
    let p = parse(br#"{"id":4,"cmd":"mute","call":"c1","local":true}"#);
    assert!(p.local);
    assert_eq!(p.id, json!(4));
    assert_eq!(
        Value::Object(p.fields),
        json!({"cmd":"mute","call":"c1"}),
        "forwarded without id or local"
    );
    assert!(!parse(br#"{"cmd":"rooms","local":false}"#).local);
    assert!(!parse(br#"{"cmd":"rooms"}"#).local);
    assert_eq!(code(r#"{"cmd":"rooms","local":"yes"}"#), "bad_argument");
}

#[test]
fn events_name_their_node_in_a_cluster() {
    let event = Event::Draining { calls: 2 };
    let (_, alone) = event_line(&event, None).unwrap();
    let alone: Value = serde_json::from_str(&alone).unwrap();
    assert_eq!(alone, json!({"event":"draining","calls":2}));
    let (name, line) = event_line(&event, Some("10.0.0.21:5060")).unwrap();
    assert_eq!(name, "draining");
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        value,
        json!({"event":"draining","calls":2,"node":"10.0.0.21:5060"})
    );
}
