//! Two nodes sharing a room directory in a real redis-server: a baresip
//! phone keys PIN 2468 on node B, which claims the room; a second phone
//! keys the same PIN on node A, which finds the room held by B and bridges
//! the caller there. B's room lists both (the bridged caller from A), each
//! phone hears the other's tone, and when the bridged caller hangs up, A
//! hangs up its leg to B and B's room is left with its own member.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::time::Duration;

use common::baresip::{free_port, Baresip, Options};
use common::redis::Redis;
use common::signal::{goertzel, sine, temp_dir, write_wav_at};
use confgate::daemon::Daemon;
use confgate::events::Event;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

async fn node(ip: &str, redis: &Redis) -> Daemon {
    let port = free_port();
    let listen = format!("sip.listen={ip}:{port}");
    let url = format!("cluster.redis={}", redis.url());
    let settings = common::settings(&[
        &listen,
        &url,
        "cluster.claim_ttl_secs=5",
        r#"rooms.trusted=["127.0.0.0/8"]"#,
    ]);
    Daemon::start(settings).await.expect("node starts")
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
    let (mut events_a, mut events_b) = (a.subscribe(), b.subscribe());
    let dir = temp_dir("cluster-bridge");

    let mic1 = dir.join("one.wav");
    write_wav_at(&mic1, &sine(8000, 700.0, 6000.0, 8000 * 60), 8000);
    let mut one = Baresip::start_with("one", &mic1, false, &Options::default()).await;
    let (room, _) = one
        .join_room(b.sip_addr(), "2468#", Duration::ZERO, &mut events_b)
        .await;
    assert_eq!(
        room.as_deref(),
        Some("2468"),
        "the first caller opens the room on B"
    );

    let mic2 = dir.join("two.wav");
    write_wav_at(&mic2, &sine(8000, 1000.0, 6000.0, 8000 * 60), 8000);
    let mut two = Baresip::start_with("two", &mic2, false, &Options::default()).await;
    let (room, _) = two
        .join_room(a.sip_addr(), "2468#", Duration::ZERO, &mut events_a)
        .await;
    let room = room.expect("the second caller is seated on A");
    assert!(
        room.starts_with("bridge:"),
        "seated in a bridge room on A: {room}"
    );

    // B's room holds its own caller and the one bridged from A.
    let bridged = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::MemberJoined {
                room, from, direct, ..
            }) = events_b.recv().await
            {
                if room == "2468" {
                    return (from, direct);
                }
            }
        }
    })
    .await
    .expect("the bridge leg joins the room on B");
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
