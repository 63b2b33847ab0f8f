//! Bridging with real phones. Two nodes sharing a room directory in a real
//! redis-server: a baresip phone keys PIN 2468 on node B, which claims the
//! room; a second phone keys the same PIN on node A, which finds the room
//! held by B and bridges the caller there. B's room lists both (the bridged
//! caller from A), each phone hears the other's tone, and when the bridged
//! caller hangs up, A hangs up its leg to B and B's room is left with its
//! own member. With Redis gone, calls keep their audio and a new caller's
//! room opens where it called. And `rooms.upstream`: a gatekeeper node
//! checks the PIN and bridges every caller to another conference server.
//! A bridged caller's keys act in the owner's room, and a caller who keyed
//! the moderator PIN on A is a moderator there.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::time::Duration;

use common::baresip::{free_port, Baresip, Options};
use common::redis::Redis;
use common::signal::{goertzel, hears, sine, temp_dir, write_wav_at};
use confgate::daemon::Daemon;
use confgate::events::Event;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

async fn node(ip: &str, redis: &Redis) -> Daemon {
    node_with(ip, redis, &[]).await
}

async fn node_with(ip: &str, redis: &Redis, extra: &[&str]) -> Daemon {
    let url = format!("cluster.redis={}", redis.url());
    let mut args = vec![url.as_str(), "cluster.claim_ttl_secs=5"];
    args.extend_from_slice(extra);
    plain_node(ip, free_port(), &args).await
}

async fn plain_node(ip: &str, port: u16, extra: &[&str]) -> Daemon {
    let listen = format!("sip.listen={ip}:{port}");
    let mut args = vec![listen.as_str(), r#"rooms.trusted=["127.0.0.0/8"]"#];
    args.extend_from_slice(extra);
    Daemon::start(common::settings(&args))
        .await
        .expect("node starts")
}

/// A phone playing `freq` Hz, seated with PIN 2468 on `node`; the room.
async fn caller(name: &str, freq: f64, node: &Daemon) -> (Baresip, String) {
    caller_with_pin(name, freq, node, "2468").await
}

/// A phone playing `freq` Hz, seated with `pin` on `node`; the room.
async fn caller_with_pin(name: &str, freq: f64, node: &Daemon, pin: &str) -> (Baresip, String) {
    let mic = temp_dir("cluster-bridge").join(format!("{name}.wav"));
    write_wav_at(&mic, &sine(8000, freq, 6000.0, 8000 * 60), 8000);
    let mut phone = Baresip::start_with(name, &mic, false, &Options::default()).await;
    // Events from now on: the next member seated is this caller.
    let mut events = node.subscribe();
    let (room, _) = phone
        .join_room(
            node.sip_addr(),
            &format!("{pin}#"),
            Duration::ZERO,
            &mut events,
        )
        .await;
    (phone, room.unwrap_or_else(|| panic!("{name} is seated")))
}

/// Waits for a member to be seated in `room` on a node: its From, and
/// whether it named the room directly.
async fn seated(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    room: &str,
) -> (String, bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::MemberJoined {
                room: r,
                from,
                direct,
                ..
            }) = events.recv().await
            {
                if r == room {
                    return (from, direct);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a member is seated in {room}"))
}

fn read(rec: &std::path::Path) -> Vec<i16> {
    hound::WavReader::open(rec)
        .expect("a recording")
        .samples::<i16>()
        .map_while(Result::ok)
        .collect()
}

/// The last seconds but the very end of a phone's recording.
fn tail(rec: &std::path::Path) -> Vec<i16> {
    let samples: Vec<i16> = hound::WavReader::open(rec)
        .expect("a recording")
        .samples::<i16>()
        .map_while(Result::ok)
        .collect();
    assert!(samples.len() > 8000 * 4, "{} samples", samples.len());
    samples[samples.len() - 8000 * 5 / 2..samples.len() - 8000 / 2].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_another_node_is_bridged_to_the_rooms_owner() {
    let redis = Redis::start();
    let b = node("127.0.0.3", &redis).await;
    let a = node("127.0.0.2", &redis).await;
    let mut events_b = b.subscribe();
    let (one, room) = caller("bridge-one", 700.0, &b).await;
    assert_eq!(room, "2468", "the first caller opens the room on B");
    let (two, room) = caller("bridge-two", 1000.0, &a).await;
    assert!(
        room.starts_with("bridge:"),
        "seated in a bridge room on A: {room}"
    );
    // B's room holds its own caller and the one bridged from A.
    seated(&mut events_b, "2468").await;
    let bridged = seated(&mut events_b, "2468").await;
    assert!(bridged.0.contains("127.0.0.2"), "from node A: {bridged:?}");
    assert!(bridged.1, "named by X-Conference-Id from a trusted node");
    let rooms = b.conference().rooms().await;
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(rooms[0].room, "2468");
    assert_eq!(rooms[0].members.len(), 2, "{rooms:?}");

    // Each hears the other.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Where one's recording stands while two is still in.
    let mark = one.recorded();
    let rec_two = Baresip::heard(&two.quit().await).expect("two's recording");
    // The bridged caller hung up: A ends its leg to B.
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::MemberLeft { room, .. }) = events_b.recv().await {
                if room == "2468" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        left.is_ok(),
        "the bridge leg left B's room when the caller hung up"
    );
    assert_eq!(b.conference().rooms().await[0].members.len(), 1);
    let rec_one = Baresip::heard(&one.quit().await).expect("one's recording");
    a.shutdown().await;
    b.shutdown().await;

    let two_heard = tail(&rec_two);
    let (tone, floor) = (
        db(goertzel(&two_heard, 8000, 700.0)),
        db(goertzel(&two_heard, 8000, 2300.0)),
    );
    eprintln!("the bridged caller hears 700 Hz at {tone:.1} dB over {floor:.1} dB");
    assert!(tone - floor > 20.0, "the bridged caller hears the room");
    let samples: Vec<i16> = hound::WavReader::open(&rec_one)
        .expect("one's recording")
        .samples::<i16>()
        .map_while(Result::ok)
        .collect();
    // One's recording while two was in: the seconds before two hung up.
    let mark = mark.min(samples.len());
    assert!(mark > 8000 * 3, "{mark}");
    let window = &samples[mark - 8000 * 5 / 2..mark - 8000 / 2];
    let (tone, floor) = (
        db(goertzel(window, 8000, 1000.0)),
        db(goertzel(window, 8000, 2300.0)),
    );
    eprintln!("the room's caller hears 1 kHz at {tone:.1} dB over {floor:.1} dB");
    assert!(
        tone - floor > 20.0,
        "the room's caller hears the bridged caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_calls_keep_their_audio_and_new_rooms_are_local() {
    let mut redis = Redis::start();
    let b = node("127.0.0.3", &redis).await;
    let a = node("127.0.0.2", &redis).await;
    let mut events_b = b.subscribe();
    let (one, room) = caller("outage-one", 700.0, &b).await;
    assert_eq!(room, "2468");
    let (two, room) = caller("outage-two", 1000.0, &a).await;
    assert!(room.starts_with("bridge:"), "{room}");
    seated(&mut events_b, "2468").await;
    seated(&mut events_b, "2468").await;
    redis.kill();
    // A new caller on A: the directory cannot say, so the room opens on A.
    let (three, room) = caller("outage-three", 1500.0, &a).await;
    assert_eq!(room, "2468", "a local room on A");
    let on_a: Vec<String> = a
        .conference()
        .rooms()
        .await
        .into_iter()
        .map(|r| r.room)
        .collect();
    assert!(on_a.contains(&"2468".to_owned()), "{on_a:?}");
    // The bridged call kept its audio through the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mark = two.recorded();
    let rec = read(&Baresip::heard(&two.quit().await).expect("two's recording"));
    let mark = mark.min(rec.len());
    assert!(mark > 8000 * 3);
    assert!(
        hears(&rec[mark - 8000 * 2..mark], 700.0),
        "the bridged caller still hears B's room"
    );
    three.quit().await;
    one.quit().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gatekeeper_bridges_every_caller_upstream() {
    // The conference server: a plain node that trusts the gatekeeper.
    let port = free_port();
    let server = plain_node("127.0.0.3", port, &[]).await;
    let upstream = format!("rooms.upstream=sip:room-{{room}}@127.0.0.3:{port}");
    let gate = plain_node("127.0.0.2", free_port(), &[&upstream]).await;
    let mut events_server = server.subscribe();
    let (one, room) = caller("gate-one", 700.0, &server).await;
    assert_eq!(room, "2468");
    let (two, room) = caller("gate-two", 1000.0, &gate).await;
    assert!(
        room.starts_with("bridge:"),
        "the gatekeeper mixes nothing itself: {room}"
    );
    seated(&mut events_server, "2468").await;
    seated(&mut events_server, "2468").await;
    let rooms = server.conference().rooms().await;
    assert_eq!(rooms[0].members.len(), 2, "{rooms:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mark = one.recorded();
    let rec_one = read(&Baresip::heard(&one.quit().await).expect("one's recording"));
    let rec_two = read(&Baresip::heard(&two.quit().await).expect("two's recording"));
    let mark = mark.min(rec_one.len());
    assert!(
        hears(&rec_one[mark - 8000 * 2..mark], 1000.0),
        "the server's caller hears the gatekeeper's"
    );
    let n = rec_two.len();
    assert!(n > 8000 * 4);
    assert!(
        hears(&rec_two[n - 8000 * 3..n - 8000], 700.0),
        "the gatekeeper's caller hears the server's room"
    );
    gate.shutdown().await;
    server.shutdown().await;
}

/// The room of the next `member_key` event on a node for `call`, and the
/// action: within 10 s.
async fn keyed(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    call: &str,
) -> Option<(String, &'static str, bool)> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::MemberKey {
                    call: c,
                    room,
                    action,
                    allowed,
                }) if c == call => return Some((room, action, allowed)),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                _ => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// The member of `room` in a node's `rooms --json` whose From has `from`.
fn listed(node: &Daemon, room: &str, from: &str) -> serde_json::Value {
    let rooms = common::rooms_json(node);
    rooms
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["room"] == room)
        .flat_map(|r| r["members"].as_array().cloned().unwrap_or_default())
        .find(|m| m["from"].as_str().is_some_and(|f| f.contains(from)))
        .unwrap_or_else(|| panic!("a member from {from} in {room}: {rooms}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_moderators_keys_act_in_the_rooms_owner() {
    const SALES: &str = r#"rooms.room=[{id="sales", pin="4321", moderator_pin="98765"}]"#;
    let redis = Redis::start();
    let b = node_with("127.0.0.3", &redis, &[SALES]).await;
    let a = node_with("127.0.0.2", &redis, &[SALES]).await;
    let mut events_b = b.subscribe();
    let (one, room) = caller_with_pin("keys-one", 700.0, &b, "4321").await;
    assert_eq!(room, "sales", "the first caller opens the room on B");
    seated(&mut events_b, "sales").await;
    // The second keys the moderator PIN on A, and is bridged to B.
    let mut events_a = a.subscribe();
    let (mut two, room) = caller_with_pin("keys-two", 1000.0, &a, "98765").await;
    assert!(room.starts_with("bridge:"), "{room}");
    let bridged = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::MemberJoined {
                room,
                call,
                from,
                moderator,
                ..
            }) = events_b.recv().await
            {
                if room == "sales" {
                    return (call, from, moderator);
                }
            }
        }
    })
    .await
    .expect("the bridged caller is seated on B");
    assert!(bridged.1.contains("127.0.0.2"), "from node A: {bridged:?}");
    assert!(bridged.2, "a moderator on B as on A: {bridged:?}");
    assert_eq!(listed(&b, "sales", "127.0.0.2")["moderator"], true);
    assert_eq!(listed(&b, "sales", "127.0.0.2")["muted"], false);
    // A moment for the far end to listen: B's leg answered, the media up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // `*6` on A mutes the caller in B's room; A's keypad does nothing.
    two.command("sndcode", "*6").await;
    assert_eq!(
        keyed(&mut events_b, &bridged.0).await,
        Some(("sales".to_owned(), "mute", true)),
        "B's keypad acted on the relayed keys"
    );
    assert_eq!(listed(&b, "sales", "127.0.0.2")["muted"], true);
    // The moderator's `*2` locks B's room.
    two.command("sndcode", "*2").await;
    assert_eq!(
        keyed(&mut events_b, &bridged.0).await,
        Some(("sales".to_owned(), "lock", true))
    );
    let rooms = common::rooms_json(&b);
    assert_eq!(rooms[0]["room"], "sales", "{rooms}");
    assert_eq!(rooms[0]["locked"], true, "{rooms}");
    // Each key acted once: no second mute or lock came after them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(keyed_now(&mut events_b, &bridged.0), None);
    assert_eq!(listed(&b, "sales", "127.0.0.2")["muted"], true);
    // On A nothing was keyed or locked: the bridge room only carried them.
    let mut on_a = Vec::new();
    while let Ok(e) = events_a.try_recv() {
        if let Event::MemberKey { action, .. } = e {
            on_a.push(action);
        }
    }
    assert!(on_a.is_empty(), "keys acted on A: {on_a:?}");
    assert!(
        a.conference().rooms().await.iter().all(|r| !r.locked),
        "the bridge room is not locked"
    );
    two.quit().await;
    one.quit().await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A `member_key` for `call` already received, if any.
fn keyed_now(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    call: &str,
) -> Option<&'static str> {
    while let Ok(e) = events.try_recv() {
        if let Event::MemberKey {
            call: c, action, ..
        } = e
        {
            if c == call {
                return Some(action);
            }
        }
    }
    None
}
