//! A node that dies without a word. Node B runs as its own process
//! (`confgate run`) and holds room 2468; a baresip caller on node A keys the
//! room's PIN and is bridged to B. B is killed with SIGKILL: no BYE, no
//! release. A notices the silence on its leg to B (`rtp.timeout_secs`),
//! ends the bridge and hangs the caller up; B's claim runs out within the
//! TTL; the next caller with the same PIN opens the room on A.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::baresip::{free_port, Baresip, Options};
use common::redis::Redis;
use common::signal::{sine, temp_dir, write_wav_at};
use confgate::daemon::Daemon;
use confgate::events::Event;

const TTL_SECS: u64 = 3;
const RTP_TIMEOUT_SECS: u64 = 3;

/// `confgate run` as a child process: a node that can be killed.
struct Node {
    child: Child,
    socket: PathBuf,
}

impl Node {
    async fn start(sip: &str, redis: &Redis) -> Node {
        let redis = format!("cluster.redis={}", redis.url());
        let ttl = format!("cluster.claim_ttl_secs={TTL_SECS}");
        let (child, socket) = common::spawn_daemon(
            Command::new(env!("CARGO_BIN_EXE_confgate")),
            sip,
            &[&redis, &ttl, r#"rooms.trusted=["127.0.0.0/8"]"#],
        )
        .await;
        Node { child, socket }
    }

    fn members(&self, room: &str) -> usize {
        let (code, out) = common::cli(&self.socket, &["rooms", "--json"]);
        assert_eq!(code, 0, "{out}");
        let rooms: serde_json::Value = serde_json::from_str(&out).expect("rooms JSON");
        rooms
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["room"] == room)
            .and_then(|r| r["members"].as_array().map(Vec::len))
            .unwrap_or(0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_ends_its_bridges_and_its_rooms_form_again_elsewhere() {
    let redis = Redis::start();
    let b_sip = format!("127.0.0.3:{}", free_port());
    let mut b = Node::start(&b_sip, &redis).await;
    let a = Daemon::start(common::settings(&[
        &format!("sip.listen=127.0.0.2:{}", free_port()),
        &format!("cluster.redis={}", redis.url()),
        &format!("cluster.claim_ttl_secs={TTL_SECS}"),
        &format!("rtp.timeout_secs={RTP_TIMEOUT_SECS}"),
        r#"rooms.trusted=["127.0.0.0/8"]"#,
    ]))
    .await
    .expect("node A starts");
    // B holds the room (as if its first member had called there).
    let key = "confgate:room:2468";
    redis.cli(&["SET", key, &b_sip, "PX", "60000"]);

    let mic = temp_dir("cluster-crash").join("tone.wav");
    write_wav_at(&mic, &sine(8000, 900.0, 6000.0, 8000 * 60), 8000);
    let mut events = a.subscribe();
    let mut two = Baresip::start_with("crash-two", &mic, false, &Options::default()).await;
    let (room, _) = two
        .join_room(a.sip_addr(), "2468#", Duration::ZERO, &mut events)
        .await;
    let bridge = room.expect("seated on A");
    assert!(bridge.starts_with("bridge:"), "bridged to B: {bridge}");
    let by = Instant::now() + Duration::from_secs(10);
    while b.members("2468") != 1 {
        assert!(Instant::now() < by, "B seats the bridged caller");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(redis.cli(&["GET", key]).as_deref(), Some(b_sip.as_str()));

    tokio::time::sleep(Duration::from_secs(1)).await;
    // B dies: nothing is said to A or to the caller.
    b.child.kill().expect("SIGKILL");
    b.child.wait().ok();
    let killed = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(RTP_TIMEOUT_SECS + 7), async {
        loop {
            let e = events.recv().await;
            if let Ok(Event::RoomEnded { room, .. } | Event::RoomClosed { room }) = e {
                if room == bridge {
                    return;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "A ends the bridge to the dead node");
    eprintln!("bridge ended {:?} after the kill", killed.elapsed());
    assert!(
        two.wait_event("CALL_CLOSED", Duration::from_secs(5)).await,
        "A hangs the caller up"
    );
    // The claim runs out within the TTL.
    let by = killed + Duration::from_secs(TTL_SECS + 1);
    while redis.cli(&["EXISTS", key]).as_deref() != Some("0") {
        assert!(Instant::now() < by, "B's claim outlived its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next caller with the PIN opens the room on A.
    let mut three = Baresip::start_with("crash-three", &mic, false, &Options::default()).await;
    let (room, _) = three
        .join_room(a.sip_addr(), "2468#", Duration::ZERO, &mut events)
        .await;
    assert_eq!(room.as_deref(), Some("2468"), "the room forms on A");
    assert_eq!(redis.cli(&["GET", key]), Some(a.sip_addr().to_string()));
    three.quit().await;
    two.quit().await;
    a.shutdown().await;
}
