//! DTMF out, end to end between two confgates: the host's confgate dials
//! the other (a bridge that asks for a PIN) and keys the PIN in, as a host
//! joins another bridge: with `dial`'s `dtmf` once it answers, and with
//! the `dtmf` command later; as telephone-events, and as SIP INFO when the
//! far end takes no telephone-event.

mod common;

use common::{daemon, expect_event};
use confgate::control::DialRequest;
use confgate::dtmf::Source;
use confgate::events::Event;
use tokio::sync::broadcast;

fn joined_room(e: &Event) -> Option<String> {
    match e {
        Event::MemberJoined { room, .. } => Some(room.clone()),
        _ => None,
    }
}

/// The keys the far end heard, and how they came, until a call joined a room there.
async fn keys_until_joined(
    events: &mut broadcast::Receiver<Event>,
) -> (String, Vec<Source>, String) {
    // Kept behind a lock: `next` takes a `Fn`.
    let heard = std::sync::Mutex::new((String::new(), Vec::new()));
    let room = expect_event(events, |e| match e {
        Event::Digit { digit, source, .. } => {
            let mut heard = heard.lock().unwrap();
            heard.0.push(*digit);
            if !heard.1.contains(source) {
                heard.1.push(*source);
            }
            None
        }
        other => joined_room(other),
    })
    .await;
    let (keys, sources) = heard.into_inner().unwrap();
    (keys, sources, room)
}

fn dial(to: String, dtmf: Option<&str>) -> DialRequest {
    DialRequest {
        room: "host".into(),
        to,
        from: None,
        timeout: None,
        dtmf: dtmf.map(str::to_owned),
    }
}

async fn keyed_in(far_mode: &str, via: Source) {
    let host = daemon(&["trunk.allow=[\"*\"]"]).await;
    let far = daemon(&[&format!("dtmf.mode=\"{far_mode}\"")]).await;
    let mut far_events = far.subscribe();
    let mut host_events = host.subscribe();
    let bridge = format!("sip:4000@{}", far.sip_addr());

    // `dial` with `dtmf`: keyed once the far end answers.
    let call = host
        .switchboard()
        .dial(dial(bridge.clone(), Some("1357#")))
        .await
        .expect("dialled");
    assert_eq!(expect_event(&mut host_events, joined_room).await, "host");
    let (keys, sources, room) = keys_until_joined(&mut far_events).await;
    assert_eq!(
        (keys.as_str(), room.as_str()),
        ("1357#", "1357"),
        "the far end collected the PIN keyed in"
    );
    assert_eq!(sources, [via], "each key came one way");
    host.switchboard().hangup(&call).await.expect("hung up");

    // The `dtmf` command, on a call already in the room.
    let call = host
        .switchboard()
        .dial(dial(bridge, None))
        .await
        .expect("dialled");
    expect_event(&mut host_events, |e| match e {
        Event::MemberJoined { call: c, .. } if *c == call => Some(()),
        _ => None,
    })
    .await;
    host.switchboard()
        .dtmf(&call, "2468#")
        .await
        .expect("digits taken");
    let (keys, sources, room) = keys_until_joined(&mut far_events).await;
    assert_eq!((keys.as_str(), room.as_str()), ("2468#", "2468"));
    assert_eq!(sources, [via]);
    let err = host.switchboard().dtmf("nobody", "1").await.unwrap_err();
    assert_eq!(err.code(), "no_such_call");
    host.shutdown().await;
    far.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialled_digits_reach_a_far_end_that_collects_them_as_telephone_events() {
    keyed_in("rfc4733", Source::Rfc4733).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialled_digits_go_as_sip_info_to_a_far_end_without_telephone_events() {
    keyed_in("info", Source::Info).await;
}
