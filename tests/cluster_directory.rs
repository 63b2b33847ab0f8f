//! The cluster's room directory against a real redis-server: two nodes
//! racing for a room, refreshes, releases, a node that stops, and Redis
//! going away and coming back.

#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::Redis;
use confgate::cluster::{Directory, Owner, DEADLINE};
use confgate::config::ClusterSettings;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(3);

fn node(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Node {
    dir: Arc<Directory>,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A directory for node `port`, once it is up.
async fn start(redis: &Redis, port: u16) -> Node {
    let settings = ClusterSettings {
        redis: redis.url(),
        node: node(port),
        claim_ttl: TTL,
        control: Some(control(port)),
        refer: false,
    };
    let stop = CancellationToken::new();
    let dir = Directory::start(&settings, stop.clone()).expect("directory");
    assert!(
        until(Duration::from_secs(3), || dir.is_up()).await,
        "directory up"
    );
    Node { dir, stop }
}

/// Poll `f` every 20 ms until it holds or `limit` passes.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where node `port` says its control answers (nothing listens there).
fn control(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 9], port + 1000))
}

fn key(room: &str) -> String {
    format!("confgate:room:{room}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_race_for_a_room_and_one_wins() {
    let redis = Redis::start();
    let a = start(&redis, 5161).await;
    let b = start(&redis, 5162).await;
    for round in 0..20 {
        let room = format!("race-{round}");
        let (ra, rb) = tokio::join!(a.dir.claim(&room), b.dir.claim(&room));
        let winner = match (ra, rb) {
            (Owner::Here, Owner::There(w)) => {
                assert_eq!(w, node(5161));
                5161
            }
            (Owner::There(w), Owner::Here) => {
                assert_eq!(w, node(5162));
                5162
            }
            other => panic!("{room}: {other:?}"),
        };
        assert_eq!(
            redis.cli(&["GET", &key(&room)]),
            Some(node(winner).to_string())
        );
        // Asked again, each says the same.
        assert_eq!(a.dir.claim(&room).await == Owner::Here, winner == 5161);
        assert_eq!(b.dir.owner(&room).await, Ok(Some(node(winner))));
    }
    let rooms = a.dir.rooms().await.expect("listing");
    assert_eq!(rooms.len(), 20);
    assert!(rooms.iter().any(|(r, _)| r == "race-0"));
    let [here, there, standalone] = a.dir.counters().claims();
    assert_eq!(here.1 + there.1, 40);
    assert_eq!(standalone.1, 0);
    assert!(a.dir.counters().up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_announce_their_control_and_a_stopped_node_drops_out_within_the_ttl() {
    let redis = Redis::start();
    let a = start(&redis, 5151).await;
    let b = start(&redis, 5152).await;
    let both = vec![(node(5151), control(5151)), (node(5152), control(5152))];
    assert!(
        until(Duration::from_secs(2), || redis
            .cli(&["EXISTS", "confgate:node:127.0.0.1:5152"])
            .as_deref()
            == Some("1"))
        .await,
        "b announced"
    );
    assert_eq!(a.dir.nodes().await, Ok(both));
    assert_eq!(a.dir.control_of(node(5152)).await, Ok(Some(control(5152))));
    assert_eq!(a.dir.control_of(node(5999)).await, Ok(None));
    // Announced again while it lives: still there past the TTL.
    tokio::time::sleep(TTL + Duration::from_millis(1500)).await;
    assert_eq!(b.dir.nodes().await.map(|n| n.len()), Ok(2));
    // A node that stops is gone from the list within the TTL.
    drop(b);
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    assert_eq!(a.dir.nodes().await, Ok(vec![(node(5151), control(5151))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_a_claim_past_its_ttl_and_release_frees_it() {
    let redis = Redis::start();
    let a = start(&redis, 5171).await;
    let b = start(&redis, 5172).await;
    assert_eq!(a.dir.claim("sales").await, Owner::Here);
    tokio::time::sleep(TTL + Duration::from_millis(1500)).await;
    assert_eq!(
        redis.cli(&["GET", &key("sales")]),
        Some(node(5171).to_string())
    );
    assert_eq!(b.dir.claim("sales").await, Owner::There(node(5171)));
    assert_eq!(a.dir.held(), vec!["sales".to_owned()]);

    a.dir.room_closed("sales");
    assert!(
        until(Duration::from_secs(1), || redis
            .cli(&["EXISTS", &key("sales")])
            .as_deref()
            == Some("0"))
        .await,
        "released"
    );
    assert_eq!(b.dir.claim("sales").await, Owner::Here);
    assert!(a.dir.held().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_refreshing_loses_its_rooms_within_the_ttl() {
    let redis = Redis::start();
    let a = start(&redis, 5181).await;
    let b = start(&redis, 5182).await;
    assert_eq!(a.dir.claim("ops").await, Owner::Here);
    let stopped = Instant::now();
    a.stop.cancel();
    assert_eq!(b.dir.claim("ops").await, Owner::There(node(5181)));
    assert!(
        until(TTL + Duration::from_millis(500), || redis
            .cli(&["EXISTS", &key("ops")])
            .as_deref()
            == Some("0"))
        .await,
        "the key expires"
    );
    assert!(stopped.elapsed() <= TTL + Duration::from_millis(500));
    assert_eq!(b.dir.claim("ops").await, Owner::Here);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_taken_over_is_reported_lost() {
    let redis = Redis::start();
    let a = start(&redis, 5191).await;
    assert_eq!(a.dir.claim("board").await, Owner::Here);
    // Another node's value in our key (as after a split): the next refresh
    // finds it and stops holding the room.
    redis.cli(&["SET", &key("board"), &node(5192).to_string(), "PX", "10000"]);
    assert!(
        until(TTL, || !a.dir.lost().is_empty()).await,
        "lost within a refresh interval"
    );
    assert_eq!(a.dir.lost(), vec![("board".to_owned(), Some(node(5192)))]);
    assert_eq!(a.dir.claim("board").await, Owner::There(node(5192)));
    // A closing room that was lost leaves the other node's key alone.
    a.dir.room_closed("board");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        redis.cli(&["GET", &key("board")]),
        Some(node(5192).to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_standalone_then_the_rooms_are_claimed_again() {
    let mut redis = Redis::start();
    let a = start(&redis, 5201).await;
    assert_eq!(a.dir.claim("kept").await, Owner::Here);
    redis.kill();

    let asked = Instant::now();
    assert_eq!(a.dir.claim("during").await, Owner::Standalone);
    assert!(
        asked.elapsed() <= DEADLINE + Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    assert!(!a.dir.is_up());
    assert!(!a.dir.counters().up());
    // Down: answered at once, without waiting for Redis.
    let asked = Instant::now();
    assert_eq!(a.dir.claim("more").await, Owner::Standalone);
    assert!(asked.elapsed() < Duration::from_millis(50));
    assert_eq!(
        a.dir.owner("kept").await,
        Err(confgate::cluster::Unreachable)
    );
    assert!(a.dir.rooms().await.is_err());
    // Closed during the outage: nothing to release, the key expires.
    a.dir.room_closed("more");

    redis.restart();
    assert!(
        until(Duration::from_secs(3), || a.dir.is_up()).await,
        "back up"
    );
    assert!(a.dir.counters().up());
    assert!(
        until(Duration::from_secs(1), || a.dir.held().len() == 2).await,
        "{:?}",
        a.dir.held()
    );
    for room in ["kept", "during"] {
        assert_eq!(
            redis.cli(&["GET", &key(room)]),
            Some(node(5201).to_string()),
            "{room}"
        );
    }
    assert_eq!(redis.cli(&["EXISTS", &key("more")]).as_deref(), Some("0"));
    let [_, _, standalone] = a.dir.counters().claims();
    assert_eq!(standalone.1, 2);
}

/// The metrics endpoint's body (HTTP/1.0, the server closes).
async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_starts_the_directory_and_its_metrics() {
    let standalone = common::daemon(&[]).await;
    assert!(standalone.directory().is_none());
    standalone.shutdown().await;

    let redis = Redis::start();
    let url = format!("cluster.redis={}", redis.url());
    let d = common::daemon(&[
        &url,
        "cluster.node=127.0.0.1:5221",
        "cluster.claim_ttl_secs=3",
        "metrics.listen=127.0.0.1:0",
    ])
    .await;
    let dir = d.directory().expect("cluster.redis set");
    assert_eq!(dir.node(), node(5221));
    assert!(until(Duration::from_secs(3), || dir.is_up()).await);
    assert_eq!(dir.claim("lobby").await, Owner::Here);
    let text = scrape(d.metrics_addr().expect("metrics")).await;
    for line in [
        "confgate_cluster_directory_up 1",
        "confgate_cluster_claims_total{result=\"here\"} 1",
        "confgate_cluster_claims_total{result=\"there\"} 0",
        "confgate_cluster_claims_total{result=\"standalone\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_hangs_costs_a_claim_its_deadline_and_no_more() {
    let redis = Redis::start();
    let a = start(&redis, 5231).await;
    assert_eq!(a.dir.claim("open").await, Owner::Here);
    redis.pause();
    let asked = Instant::now();
    assert_eq!(a.dir.claim("stalled").await, Owner::Standalone);
    let took = asked.elapsed();
    assert!(
        took >= DEADLINE && took <= DEADLINE + Duration::from_millis(150),
        "{took:?}"
    );
    assert!(!a.dir.is_up());
    let asked = Instant::now();
    assert_eq!(a.dir.claim("next").await, Owner::Standalone);
    assert!(asked.elapsed() < Duration::from_millis(50));
    redis.resume();
    assert!(
        until(Duration::from_secs(3), || a.dir.held().len() == 3).await,
        "{:?}",
        a.dir.held()
    );
    assert!(a.dir.counters().up());
}
