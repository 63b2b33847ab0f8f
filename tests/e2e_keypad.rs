//! Keypad controls and moderators, end to end with baresip phones, each
//! with its own tone as microphone: `*6` mutes a member for the others
//! (and `*6` again brings it back); in a `wait_for_moderator` room the
//! members hear music and not each other until the moderator keys in.

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{goertzel, read_wav, sine, temp_dir, write_wav};
use common::{daemon, expect_event};
use confgate::events::Event;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);
const RATE: usize = 8000;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-12).log10()
}

async fn phone(name: &str, hz: f64) -> Baresip {
    let mic = temp_dir(name).join("tone.wav");
    write_wav(&mic, &sine(8000, hz, 4000.0, RATE * 90));
    Baresip::start(name, &mic, false).await
}

async fn join(
    phone: &mut Baresip,
    uri: &str,
    pin: &str,
    events: &mut broadcast::Receiver<Event>,
) -> String {
    phone.dial_answered(uri).await;
    phone.command("sndcode", &format!("{pin}#")).await;
    expect_event(events, |e| match e {
        Event::MemberJoined { call, .. } => Some(call.clone()),
        _ => None,
    })
    .await
}

/// A span of what `listener` heard: from `settle` after now, `len` long
/// (sample offsets into its recording).
async fn span(listener: &Baresip, settle: Duration, len: Duration) -> (usize, usize) {
    let from = listener.recorded() + (settle.as_secs_f64() * RATE as f64) as usize;
    let to = from + (len.as_secs_f64() * RATE as f64) as usize;
    assert!(
        listener.wait_recorded(to, WAIT).await,
        "recorded {} of {to} samples",
        listener.recorded()
    );
    (from, to)
}

/// Level of `hz` in `heard[from..to]`, dB.
fn level(heard: &[i16], (from, to): (usize, usize), hz: f64) -> f64 {
    db(goertzel(
        &heard[from.min(heard.len())..to.min(heard.len())],
        8000,
        hz,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_six_mutes_a_member_for_the_others_and_star_six_again_unmutes() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    let (talker_hz, other_hz) = (500.0, 900.0);
    let mut talker = phone("key-talker", talker_hz).await;
    let talker_call = join(&mut talker, &uri, "2468", &mut events).await;
    let mut listener = phone("key-listener", other_hz).await;
    join(&mut listener, &uri, "2468", &mut events).await;

    // The prompts the listener hears on joining play out first.
    let settle = Duration::from_secs(4);
    let before = span(&listener, settle, Duration::from_secs(2)).await;

    let key = |e: &Event| match e {
        Event::MemberKey {
            call,
            action,
            allowed,
            ..
        } if *call == talker_call => Some((*action, *allowed)),
        _ => None,
    };
    talker.command("sndcode", "*6").await;
    assert_eq!(expect_event(&mut events, key).await, ("mute", true));
    let rooms = d.switchboard().rooms().await;
    let member = rooms
        .iter()
        .flat_map(|r| &r.members)
        .find(|m| m.call == talker_call)
        .expect("the talker listed");
    assert!(member.muted, "{member:?}");
    let muted = span(&listener, Duration::from_secs(1), Duration::from_secs(2)).await;

    talker.command("sndcode", "*6").await;
    assert_eq!(expect_event(&mut events, key).await, ("mute", true));
    let after = span(&listener, Duration::from_secs(1), Duration::from_secs(2)).await;

    let heard_dir = listener.quit().await;
    talker.quit().await;
    d.shutdown().await;
    let heard = read_wav(&Baresip::heard(&heard_dir).expect("a recording"));
    let (b, m, a) = (
        level(&heard, before, talker_hz),
        level(&heard, muted, talker_hz),
        level(&heard, after, talker_hz),
    );
    eprintln!("talker's tone at the listener: before {b:.1} dB, muted {m:.1} dB, after {a:.1} dB");
    assert!(b - m > 30.0, "muted: {m:.1} dB against {b:.1} dB before");
    assert!(
        (a - b).abs() < 3.0,
        "unmuted: {a:.1} dB against {b:.1} dB before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hear_music_not_each_other_until_the_moderator_joins() {
    let d = daemon(&[
        "rooms.room=[{id=\"board\", pin=\"1111\", moderator_pin=\"9999\", wait_for_moderator=true}]",
    ])
    .await;
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    // Away from the music's notes (523, 659, 784 Hz and their harmonics).
    let (a_hz, b_hz, host_hz) = (400.0, 900.0, 1700.0);
    let mut a = phone("wait-a", a_hz).await;
    join(&mut a, &uri, "1111", &mut events).await;
    let mut b = phone("wait-b", b_hz).await;
    join(&mut b, &uri, "1111", &mut events).await;
    let waiting = span(&b, Duration::from_secs(6), Duration::from_secs(2)).await;

    let mut host = phone("wait-host", host_hz).await;
    host.dial_answered(&uri).await;
    host.command("sndcode", "9999#").await;
    let moderator = expect_event(&mut events, |e| match e {
        Event::MemberJoined { moderator, .. } => Some(*moderator),
        _ => None,
    })
    .await;
    assert!(moderator, "joined as the moderator");
    let rooms = d.switchboard().rooms().await;
    let board = rooms.iter().find(|r| r.room == "board").expect("the room");
    assert_eq!(
        board.members.iter().filter(|m| m.moderator).count(),
        1,
        "{board:?}"
    );
    let together = span(&b, Duration::from_secs(5), Duration::from_secs(2)).await;

    let heard_dir = b.quit().await;
    a.quit().await;
    host.quit().await;
    d.shutdown().await;
    let heard = read_wav(&Baresip::heard(&heard_dir).expect("a recording"));
    let music = |s| level(&heard, s, 659.26).max(level(&heard, s, 783.99));
    let (a_wait, a_then) = (level(&heard, waiting, a_hz), level(&heard, together, a_hz));
    let (m_wait, m_then) = (music(waiting), music(together));
    let host_then = level(&heard, together, host_hz);
    eprintln!(
        "at b: a {a_wait:.1} -> {a_then:.1} dB, music {m_wait:.1} -> {m_then:.1} dB, host then {host_then:.1} dB"
    );
    assert!(a_then - a_wait > 30.0, "waiting, b did not hear a");
    assert!(
        m_wait - m_then > 20.0,
        "b heard the music while waiting, then not"
    );
    assert!(host_then > a_wait + 30.0, "b hears the moderator");
}

/// Level of the loudest 40 ms of `hz` in `x` (10 ms steps), dB.
fn loudest(x: &[i16], hz: f64) -> f64 {
    (0..x.len().saturating_sub(320))
        .step_by(80)
        .map(|i| db(goertzel(&x[i..i + 320], 8000, hz)))
        .fold(f64::MIN, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_tones_heard_in_band_are_kept_out_of_the_mix() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    // The presser keys its PIN as tones (a phone that sends events has its
    // tones ignored once events flow), talks (a tone), is quiet, keys *0
    // as tones in its audio, is quiet again, then talks on.
    let press = common::keypad::tones("*0", 120, 120);
    let mut mic = vec![0i16; RATE];
    mic.extend(common::keypad::tones("2468#", 100, 100));
    mic.extend(sine(8000, 500.0, 4000.0, RATE * 10));
    mic.extend(std::iter::repeat_n(0, RATE));
    mic.extend(&press);
    mic.extend(std::iter::repeat_n(0, RATE * 2));
    mic.extend(sine(8000, 500.0, 4000.0, RATE * 20));
    let mic_path = temp_dir("key-inband").join("mic.wav");
    write_wav(&mic_path, &mic);
    let mut presser = Baresip::start("key-inband", &mic_path, false).await;
    presser.dial_answered(&uri).await;
    let presser_call = expect_event(&mut events, |e| match e {
        Event::MemberJoined { call, .. } => Some(call.clone()),
        _ => None,
    })
    .await;
    let mut listener = phone("key-inband-listener", 900.0).await;
    join(&mut listener, &uri, "2468", &mut events).await;

    let (action, source_ok) = tokio::time::timeout(WAIT, async {
        let mut inband = false;
        loop {
            match events.recv().await {
                Ok(Event::Digit { call, source, .. }) if call == presser_call => {
                    inband |= source == confgate::dtmf::Source::Inband;
                }
                Ok(Event::MemberKey { call, action, .. }) if call == presser_call => {
                    return (action, inband)
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the keyed tones were heard");
    assert_eq!(action, "count");
    assert!(source_ok, "the keys came in-band");
    // What the listener heard around the press: from 1.5 s before the
    // action to 1 s after.
    let mark = listener.recorded();
    let (from, to) = (mark.saturating_sub(RATE * 3 / 2), mark + RATE);
    assert!(listener.wait_recorded(to, WAIT).await);
    let heard_dir = listener.quit().await;
    presser.quit().await;
    d.shutdown().await;
    let heard = read_wav(&Baresip::heard(&heard_dir).expect("a recording"));
    let around = &heard[from.min(heard.len())..to.min(heard.len())];
    for hz in [941.0, 1209.0, 1336.0] {
        let (pressed, leaked) = (loudest(&press, hz), loudest(around, hz));
        eprintln!("{hz} Hz: pressed {pressed:.1} dB, heard {leaked:.1} dB");
        assert!(
            pressed - leaked >= 30.0,
            "{hz} Hz heard at {leaked:.1} dB, the press at {pressed:.1} dB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_ends_when_its_last_moderator_leaves_or_its_time_is_up() {
    let d = daemon(&[
        "rooms.room=[{id=\"board\", pin=\"1111\", moderator_pin=\"9999\", end_with_moderator=true}]",
    ])
    .await;
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    let mut member = phone("end-member", 400.0).await;
    let member_call = join(&mut member, &uri, "1111", &mut events).await;
    let mut host = phone("end-host", 900.0).await;
    join(&mut host, &uri, "9999", &mut events).await;
    host.command("hangup", "").await;
    let ended = expect_event(&mut events, |e| match e {
        Event::RoomEnded { room, reason } => Some((room.clone(), *reason)),
        _ => None,
    })
    .await;
    assert_eq!(ended, ("board".to_owned(), "moderator_left"));
    let left = expect_event(&mut events, |e| match e {
        Event::MemberLeft { call, reason, .. } if *call == member_call => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(left, "room_ended");
    assert!(
        member.wait_event("CALL_CLOSED", WAIT).await,
        "the member was hung up after the conference-ended prompt"
    );
    member.quit().await;
    host.quit().await;
    d.shutdown().await;

    // rooms.max_duration_secs: the room ends by itself.
    let d = daemon(&["rooms.max_duration_secs=3"]).await;
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    let mut alone = phone("end-time", 400.0).await;
    join(&mut alone, &uri, "2468", &mut events).await;
    let ended = expect_event(&mut events, |e| match e {
        Event::RoomEnded { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(ended, "max_duration");
    assert!(alone.wait_event("CALL_CLOSED", WAIT).await, "hung up");
    alone.quit().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_names_the_others_hear_a_leaver_say_its_name_then_has_left() {
    let d = daemon(&["rooms.announce_names=true"]).await;
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    let (stay_hz, leave_hz) = (700.0, 450.0);
    let mut stays = phone("name-stays", stay_hz).await;
    join(&mut stays, &uri, "2468", &mut events).await;
    let mut leaves = phone("name-leaves", leave_hz).await;
    let leaver = join(&mut leaves, &uri, "2468", &mut events).await;
    // Both in: the leaver goes after a while.
    span(&stays, Duration::from_secs(3), Duration::from_secs(1)).await;
    leaves.command("hangup", "").await;
    expect_event(&mut events, |e| match e {
        Event::MemberLeft { call, .. } if *call == leaver => Some(()),
        _ => None,
    })
    .await;
    // From the moment it left: its name (2 s of what it said: its tone), then the prompt.
    let name = span(
        &stays,
        Duration::from_millis(400),
        Duration::from_millis(1200),
    )
    .await;
    let after = span(&stays, Duration::from_millis(600), Duration::from_secs(2)).await;
    let heard_dir = stays.quit().await;
    leaves.quit().await;
    d.shutdown().await;
    let heard = read_wav(&Baresip::heard(&heard_dir).expect("a recording"));
    let said = level(&heard, name, leave_hz);
    eprintln!("the leaver's tone after it left: {said:.1} dB");
    assert!(said > 50.0, "its name was played ({said:.1} dB)");
    let want = common::signal::envelope(&common::prompt("has_left"));
    let got =
        common::signal::envelope(&heard[after.0.saturating_sub(8000)..after.1.min(heard.len())]);
    let (corr, _) = common::signal::best_match(&got, &want[..want.len() * 8 / 10]);
    eprintln!("has_left envelope correlation {corr:.3}");
    assert!(corr > 0.8, "then \"has left\" (correlation {corr:.3})");
}
