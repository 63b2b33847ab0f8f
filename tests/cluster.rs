//! The cluster end to end, loopback only: redis-server, Kamailio's
//! dispatcher on 127.0.0.1, three confgate nodes on 127.0.0.2–4 sharing the
//! room directory. Four baresip callers dial Kamailio and key the same PIN;
//! they land on at least two nodes, the room's node lists all four (the
//! others bridged to it), `confgate rooms --json` on every node lists the
//! room with its four members and the node it is on, a `mute` given on
//! another node mutes the member on the room's node, and every caller hears
//! every other's tone. Then
//! the room's node is shut down: its room's claim runs out within the TTL,
//! and new callers with the same PIN form the room again on a node left.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::baresip::free_port;
use common::kamailio::{join, watch, Kamailio};
use common::redis::Redis;
use common::signal::{goertzel, sine, temp_dir, write_wav_at};
use confgate::daemon::Daemon;

const TTL_SECS: u64 = 4;
/// Each caller's tone, Hz.
const TONES: [f64; 4] = [500.0, 800.0, 1200.0, 1700.0];

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_callers_through_kamailio_share_one_room_across_nodes() {
    let redis = Redis::start();
    let url = format!("cluster.redis={}", redis.url());
    let ttl = format!("cluster.claim_ttl_secs={TTL_SECS}");
    let mut nodes = Vec::new();
    for n in 2..=4 {
        let listen = format!("sip.listen=127.0.0.{n}:{}", free_port());
        // Every node's control on TCP, with the token they share.
        let control = format!("control.tcp=127.0.0.{n}:{}", free_port());
        let s = common::settings(&[
            &listen,
            &url,
            &ttl,
            r#"rooms.trusted=["127.0.0.0/8"]"#,
            &control,
            "control.token=cluster-token-0123456789",
        ]);
        nodes.push(Some(Daemon::start(s).await.expect("node starts")));
    }
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(Daemon::sip_addr).collect();
    let mut events = watch(&nodes.iter().flatten().collect::<Vec<_>>());
    let k = Kamailio::start("cluster-room", &addrs, 1, 1000).await;
    let dir = temp_dir("cluster-room");

    let mut callers = Vec::new();
    for (i, tone) in TONES.iter().enumerate() {
        let mic = dir.join(format!("mic{i}.wav"));
        write_wav_at(&mic, &sine(8000, *tone, 5000.0, 8000 * 60), 8000);
        let name = format!("clu{i}");
        callers.push(join(&name, &mic, k.addr, &mut events, &k).await);
    }
    let on: BTreeSet<usize> = callers.iter().map(|c| c.node).collect();
    eprintln!(
        "callers on nodes {:?}",
        callers.iter().map(|c| c.node).collect::<Vec<_>>()
    );
    assert!(on.len() >= 2, "all callers on one node: {on:?}");

    // The room lives where the first caller landed, and lists all four.
    let owner = callers[0].node;
    let listing = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let rooms = nodes[owner].as_ref().unwrap().conference().rooms().await;
            if let Some(r) = rooms.iter().find(|r| r.room == "2468") {
                if r.members.len() == 4 {
                    return r.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the room's node lists four members");
    eprintln!(
        "room 2468 on node {owner}: {:?}",
        listing.members.iter().map(|m| &m.from).collect::<Vec<_>>()
    );

    // One view of the cluster: every node lists the room, on its node, with
    // all four members, and the bridge rooms of the bridged callers.
    let owner_addr = addrs[owner].to_string();
    for (n, d) in nodes.iter().flatten().enumerate() {
        let rooms = common::rooms_json(d);
        let room = rooms
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["room"] == "2468")
            .unwrap_or_else(|| panic!("node {n} lists room 2468: {rooms}"));
        assert_eq!(room["node"], owner_addr.as_str(), "node {n}: {room}");
        assert_eq!(
            room["members"].as_array().map(Vec::len),
            Some(4),
            "node {n}: {room}"
        );
        let bridges = rooms
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["room"].as_str().is_some_and(|r| r.starts_with("bridge:")))
            .count();
        let bridged = callers.iter().filter(|c| c.node != owner).count();
        assert_eq!(bridges, bridged, "node {n} lists every bridge: {rooms}");
    }
    // A mute given on another node reaches the member on the room's node.
    let elsewhere = (0..nodes.len())
        .find(|n| *n != owner)
        .expect("another node");
    let member = listing.members[1].call.clone();
    let socket = nodes[elsewhere]
        .as_ref()
        .unwrap()
        .control_endpoints()
        .0
        .expect("a control socket")
        .to_owned();
    let (code, out) = common::cli(&socket, &["mute", &member]);
    assert_eq!(code, 0, "mute through node {elsewhere}: {out}");
    let rooms = nodes[owner].as_ref().unwrap().conference().rooms().await;
    let muted: Vec<bool> = rooms
        .iter()
        .filter(|r| r.room == "2468")
        .flat_map(|r| r.members.iter().map(|m| m.muted))
        .collect();
    assert_eq!(muted, [false, true, false, false], "{rooms:?}");
    let (code, out) = common::cli(&socket, &["unmute", &member]);
    assert_eq!(code, 0, "unmute through node {elsewhere}: {out}");
    // A call no node has is still no such call.
    let (code, out) = common::cli(&socket, &["mute", "no-such-call"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no_such_call"), "{out}");

    // Every caller hears every other.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let marks: Vec<usize> = callers.iter().map(|c| c.phone.recorded()).collect();
    let mut recordings = Vec::new();
    for c in callers {
        let rec = common::baresip::Baresip::heard(&c.phone.quit().await).expect("a recording");
        recordings.push(rec);
    }
    for (i, rec) in recordings.iter().enumerate() {
        let samples: Vec<i16> = hound::WavReader::open(rec)
            .expect("a recording")
            .samples::<i16>()
            .map_while(Result::ok)
            .collect();
        let mark = marks[i].min(samples.len());
        assert!(mark > 8000 * 3, "caller {i} recorded {mark}");
        let window = &samples[mark - 8000 * 2..mark];
        let floor = db(goertzel(window, 8000, 2300.0));
        for (j, tone) in TONES.iter().enumerate() {
            let level = db(goertzel(window, 8000, *tone));
            eprintln!("caller {i} hears {tone} Hz at {level:.1} dB (floor {floor:.1})");
            if i != j {
                assert!(level - floor > 20.0, "caller {i} does not hear caller {j}");
            } else {
                assert!(level - floor < 20.0, "caller {i} hears itself");
            }
        }
    }

    // The room's node goes: its claim runs out, and the room forms again.
    nodes[owner].take().unwrap().shutdown().await;
    tokio::time::sleep(Duration::from_secs(TTL_SECS + 2)).await;
    let mut again = Vec::new();
    for i in 0..2 {
        let mic = dir.join(format!("mic{i}.wav"));
        let c = join(&format!("cla{i}"), &mic, k.addr, &mut events, &k).await;
        assert_ne!(c.node, owner, "sent to the node that is gone");
        again.push(c);
    }
    let formed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            for (n, d) in nodes.iter().enumerate() {
                let Some(d) = d else { continue };
                let rooms = d.conference().rooms().await;
                if rooms
                    .iter()
                    .any(|r| r.room == "2468" && r.members.len() == 2)
                {
                    return n;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the room forms again with both new callers on one node");
    eprintln!("room 2468 formed again on node {formed}");
    for c in again {
        c.phone.quit().await;
    }
    for d in nodes.into_iter().flatten() {
        d.shutdown().await;
    }
}
