//! A locked room, end to end: two baresip phones in a room, `confgate
//! lock`, a third caller who keys the PIN hears "this conference is
//! locked" and is hung up; `confgate unlock` lets it in.

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{best_match, envelope, read_wav, sine, temp_dir, write_wav};
use common::{cli, daemon, expect_event};
use confgate::events::Event;

const WAIT: Duration = Duration::from_secs(20);

async fn caller(name: &str, hz: f64) -> Baresip {
    let mic = temp_dir(name).join("tone.wav");
    write_wav(&mic, &sine(8000, hz, 4000.0, 8000 * 60));
    Baresip::start(name, &mic, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_room_refuses_a_caller_with_the_locked_prompt_until_unlocked() {
    let d = daemon(&[]).await;
    let socket = d
        .control_endpoints()
        .0
        .expect("a control socket")
        .to_owned();
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    let joined = |e: &Event| match e {
        Event::MemberJoined { call, room, .. } => Some((call.clone(), room.clone())),
        _ => None,
    };
    let mut members = Vec::new();
    for (k, hz) in [(0, 500.0), (1, 900.0)] {
        let mut phone = caller(&format!("lock{k}"), hz).await;
        phone.dial_answered(&uri).await;
        phone.command("sndcode", "2468#").await;
        assert_eq!(expect_event(&mut events, joined).await.1, "2468");
        members.push(phone);
    }

    let (code, out) = cli(&socket, &["lock", "2468"]);
    assert_eq!(code, 0, "{out}");
    expect_event(&mut events, |e| {
        matches!(e, Event::RoomLocked { room } if room == "2468").then_some(())
    })
    .await;
    let rooms = d.switchboard().rooms().await;
    assert!(
        rooms.iter().any(|r| r.room == "2468" && r.locked),
        "{rooms:?}"
    );
    let (code, out) = cli(&socket, &["lock", "nowhere"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no_such_room"), "{out}");

    // The third caller keys the right PIN and is turned away.
    let mut third = caller("lock2", 1300.0).await;
    third.dial_answered(&uri).await;
    third.command("sndcode", "2468#").await;
    assert!(
        third.wait_event("CALL_CLOSED", WAIT).await,
        "confgate hung up on the third caller"
    );
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, Event::MemberJoined { .. }),
            "joined while locked: {e:?}"
        );
    }
    let dir = third.quit().await;
    let heard = read_wav(&Baresip::heard(&dir).expect("a recording"));
    // The hang-up follows the prompt's last frame, and baresip's recording
    // stops a few frames short of what it was still playing: the prompt's
    // first 90 % is matched.
    let mut want = envelope(&common::prompt("conference_locked"));
    want.truncate(want.len() * 9 / 10);
    let (corr, lag) = best_match(&envelope(&heard), &want);
    eprintln!(
        "recorded {:.2} s; the locked prompt found at {:.2} s, envelope correlation {corr:.3}",
        heard.len() as f64 / 8000.0,
        lag as f64 * 0.02
    );
    assert!(
        corr > 0.9,
        "it heard the locked prompt (envelope correlation {corr:.3})"
    );
    assert_eq!(
        d.switchboard()
            .rooms()
            .await
            .iter()
            .find(|r| r.room == "2468")
            .map(|r| r.members.len()),
        Some(2)
    );

    // A dial into the locked room is refused at once.
    let dial = d
        .switchboard()
        .dial(confgate::control::DialRequest {
            room: "2468".into(),
            to: "sip:someone@127.0.0.1".into(),
            from: None,
            timeout: None,
            dtmf: None,
        })
        .await;
    assert_eq!(dial.map_err(|e| e.code()), Err("room_locked"));

    let (code, out) = cli(&socket, &["unlock", "2468"]);
    assert_eq!(code, 0, "{out}");
    let mut again = caller("lock3", 1300.0).await;
    again.dial_answered(&uri).await;
    again.command("sndcode", "2468#").await;
    assert_eq!(expect_event(&mut events, joined).await.1, "2468");
    for phone in members.into_iter().chain([again]) {
        phone.quit().await;
    }
    d.shutdown().await;
}
