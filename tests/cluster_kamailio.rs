//! Three confgate nodes behind Kamailio's dispatcher (contrib/kamailio):
//! baresip callers dial Kamailio and are spread round-robin over the nodes;
//! a node shut down, then a node draining (OPTIONS 503), stops getting new
//! calls once a probe sees it; in-dialog requests (the callers' BYEs) go
//! through Kamailio, which record-routes.
//!
//! These nodes share no directory, so callers on different nodes are in
//! different rooms of the same number: only the distribution and each
//! caller's own call are checked here (`tests/cluster.rs` adds Redis).
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::kamailio::{join, watch, Caller, Kamailio};
use common::signal::{temp_dir, write_wav};
use confgate::daemon::Daemon;
use confgate::events::Event;

/// Seconds between Kamailio's OPTIONS probes of the nodes.
const PROBE_INTERVAL: u32 = 1;
/// Milliseconds a node has to answer before Kamailio tries the next.
const FR_TIMER_MS: u32 = 1000;

/// A faint noise floor, so the microphone is never digital silence.
fn hiss(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| ((i as u64 * 7919) % 17) as i16 - 8)
        .collect()
}

/// The caller hears its node (the room's mix) for another half second.
async fn hears(c: &Caller, what: &str) {
    let heard = c.phone.recorded();
    assert!(
        c.phone
            .wait_recorded(heard + 4000, Duration::from_secs(5))
            .await,
        "{what}: the caller on node {} hears nothing",
        c.node
    );
}

fn node_down(node: SocketAddr) -> String {
    format!("node down: sip:{node}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_spreads_callers_and_routes_around_dead_and_draining_nodes() {
    let started = Instant::now();
    let mut nodes = Vec::new();
    for n in 2..=4 {
        let s = common::settings(&[&format!("sip.listen=127.0.0.{n}:0")]);
        nodes.push(Some(Daemon::start(s).await.expect("node starts")));
    }
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(Daemon::sip_addr).collect();
    let mut events = watch(&nodes.iter().flatten().collect::<Vec<_>>());
    let k = Kamailio::start("cluster", &addrs, PROBE_INTERVAL, FR_TIMER_MS).await;
    let dir = temp_dir("cluster-kamailio");
    let mic = dir.join("mic.wav");
    write_wav(&mic, &hiss(8000 * 90));

    // Four callers, round-robin: on at least two (here three) nodes, each
    // in room 2468 on its node and hearing it.
    let mut callers = Vec::new();
    for name in ["kama", "kamb", "kamc", "kamd"] {
        callers.push(join(name, &mic, k.addr, &mut events, &k).await);
    }
    let on: std::collections::BTreeSet<usize> = callers.iter().map(|c| c.node).collect();
    assert!(on.len() >= 2, "all callers on one node: {on:?}");
    eprintln!(
        "callers on nodes {:?}",
        callers.iter().map(|c| c.node).collect::<Vec<_>>()
    );
    for c in &callers {
        hears(c, "spread").await;
    }

    // Node 3 (index 2) shuts down: a probe marks it down, and new callers
    // land on the other two, none refused.
    let t = Instant::now();
    nodes[2].take().unwrap().shutdown().await;
    let shut = t.elapsed();
    let wait = Duration::from_secs(u64::from(PROBE_INTERVAL) + 2)
        + Duration::from_millis(FR_TIMER_MS.into());
    assert!(
        k.wait_log(&node_down(addrs[2]), wait).await,
        "Kamailio never marked the dead node down:\n{}",
        k.log()
    );
    let dead_after = t.elapsed();
    eprintln!("dead node marked down {dead_after:?} after shutdown began ({shut:?} to shut down)");
    for c in callers.iter_mut().filter(|c| c.node == 2) {
        // The node hung up on them (its BYE came through Kamailio).
        assert!(
            c.phone
                .wait_event("CALL_CLOSED", Duration::from_secs(5))
                .await,
            "the dead node's caller was not hung up on"
        );
    }
    callers.retain(|c| c.node != 2);
    let mut late = Vec::new();
    for name in ["kame", "kamf"] {
        let c = join(name, &mic, k.addr, &mut events, &k).await;
        assert_ne!(c.node, 2, "{name} was sent to the dead node");
        late.push(c);
    }
    callers.extend(late);
    assert!(
        !k.log().contains("failed (timeout or 5xx)"),
        "a call was sent to the dead node after the probe:\n{}",
        k.log()
    );

    // Node 2 (index 1) drains: its OPTIONS answer turns 503, a probe marks
    // it down, new callers all go to node 1; its calls stay up.
    let t = Instant::now();
    let draining = nodes[1]
        .as_ref()
        .unwrap()
        .switchboard()
        .drain()
        .await
        .expect("drain");
    assert!(draining.calls >= 1, "{draining:?}");
    assert!(
        k.wait_log(&node_down(addrs[1]), wait).await,
        "Kamailio never marked the draining node down:\n{}",
        k.log()
    );
    let drain_after = t.elapsed();
    eprintln!("draining node marked down {drain_after:?} after drain");
    for name in ["kamg", "kamh"] {
        let c = join(name, &mic, k.addr, &mut events, &k).await;
        assert_eq!(c.node, 0, "{name} was not sent to the one node left");
        callers.push(c);
    }
    for c in callers.iter().filter(|c| c.node == 1) {
        hears(c, "draining").await;
    }
    assert!(
        !k.log().contains("failed (timeout or 5xx)"),
        "a call was sent to the draining node after the probe:\n{}",
        k.log()
    );

    // A caller hangs up: its BYE goes through Kamailio (record-routed) to
    // its node, and the member leaves.
    let c = callers.remove(0);
    let before = k.log().matches("in-dialog BYE").count();
    let (node, call) = (c.node, c.call.clone());
    c.phone.quit().await;
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some((n, e)) = events.recv().await {
            if let Event::MemberLeft { call: left, .. } = e {
                if n == node && left == call {
                    return;
                }
            }
        }
    })
    .await;
    assert!(left.is_ok(), "the member did not leave:\n{}", k.log());
    assert!(
        k.log().matches("in-dialog BYE").count() > before,
        "the BYE did not go through Kamailio:\n{}",
        k.log()
    );

    for c in callers {
        c.phone.quit().await;
    }
    for d in nodes.into_iter().flatten() {
        d.shutdown().await;
    }
    eprintln!("cluster test took {:?}", started.elapsed());
}

/// A header's value in a SIP message, if present.
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_keeps_callers_from_naming_rooms_and_record_routes() {
    // A stand-in node on 127.0.0.5 that answers probes and shows what it got.
    let node = tokio::net::UdpSocket::bind("127.0.0.5:0").await.unwrap();
    let node_addr = node.local_addr().unwrap();
    let k = Kamailio::start("xconf", &[node_addr], PROBE_INTERVAL, FR_TIMER_MS).await;
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:4000@{k} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-xconf-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:mallory@{me}>;tag=x1\r\n\
         To: <sip:4000@{k}>\r\n\
         Call-ID: xconf-1@{me}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:mallory@{me}>\r\n\
         X-Conference-Id: 9999\r\n\
         X-Conference-Moderator: yes\r\n\
         Content-Length: 0\r\n\r\n",
        k = k.addr
    );
    caller.send_to(invite.as_bytes(), k.addr).await.unwrap();
    let got = to_node(&node, &k).await;
    assert!(header(&got, "X-Conference-Id").is_none(), "{got}");
    assert!(header(&got, "X-Conference-Moderator").is_none(), "{got}");
    let rr = header(&got, "Record-Route").unwrap_or_else(|| panic!("no Record-Route: {got}"));
    assert!(rr.contains(&k.addr.to_string()), "{rr}");
    assert!(
        k.log().contains("X-Conference-Id from 127.0.0.1"),
        "{}",
        k.log()
    );

    // A caller may not name a room in the Request-URI either.
    let direct = invite
        .replace("sip:4000@", "sip:room-42@")
        .replace("xconf-1", "xconf-3");
    caller.send_to(direct.as_bytes(), k.addr).await.unwrap();
    // (After the first INVITE's 100 Trying.)
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = caller.recv_from(&mut buf).await.unwrap();
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.contains("xconf-3") {
                return m;
            }
        }
    })
    .await
    .expect("an answer to the room-naming INVITE");
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");

    // A node's own request (a node bridging a caller to another) keeps it.
    let bridged = invite
        .replace(&me.to_string(), &node_addr.to_string())
        .replace("xconf-1", "xconf-2");
    node.send_to(bridged.as_bytes(), k.addr).await.unwrap();
    let got = to_node(&node, &k).await;
    assert_eq!(header(&got, "X-Conference-Id"), Some("9999"), "{got}");
    assert_eq!(header(&got, "X-Conference-Moderator"), Some("yes"), "{got}");
}

/// The next INVITE Kamailio relays to the stand-in `node`, which answers
/// probes meanwhile.
async fn to_node(node: &tokio::net::UdpSocket, k: &Kamailio) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 8192];
        loop {
            let (n, from) = node.recv_from(&mut buf).await.unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.starts_with("OPTIONS ") {
                let reply = format!(
                    "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=n1\r\n\
                     Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                    header(&msg, "Via").unwrap_or_default(),
                    header(&msg, "From").unwrap_or_default(),
                    header(&msg, "To").unwrap_or_default(),
                    header(&msg, "Call-ID").unwrap_or_default(),
                    header(&msg, "CSeq").unwrap_or_default(),
                );
                node.send_to(reply.as_bytes(), from).await.ok();
            } else if msg.starts_with("INVITE ") {
                return msg;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the INVITE never reached the node:\n{}", k.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_fails_over_before_a_probe_has_seen_the_node() {
    // Probes far apart: only the failure route can route around a node
    // nobody listens on (timeout) and a draining one (503).
    let live = Daemon::start(common::settings(&["sip.listen=127.0.0.2:0"]))
        .await
        .expect("node starts");
    let draining = Daemon::start(common::settings(&["sip.listen=127.0.0.3:0"]))
        .await
        .expect("node starts");
    draining.switchboard().drain().await.expect("drain");
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.6:0").unwrap();
        s.local_addr().unwrap()
    };
    let mut events = watch(&[&live, &draining]);
    let k = Kamailio::start(
        "failover",
        &[dead, draining.sip_addr(), live.sip_addr()],
        60,
        FR_TIMER_MS,
    )
    .await;
    let dir = temp_dir("cluster-kamailio-failover");
    let mic = dir.join("mic.wav");
    write_wav(&mic, &hiss(8000 * 30));
    let mut callers = Vec::new();
    for name in ["kamfa", "kamfb", "kamfc"] {
        let t = Instant::now();
        let c = join(name, &mic, k.addr, &mut events, &k).await;
        eprintln!("{name} in its room {:?} after dialing", t.elapsed());
        assert_eq!(c.node, 0, "{name} landed on the draining node");
        callers.push(c);
    }
    let log = k.log();
    assert!(log.contains(&format!("{dead} failed")), "{log}");
    assert!(
        log.contains(&format!("{} failed", draining.sip_addr())),
        "{log}"
    );
    for c in callers {
        c.phone.quit().await;
    }
    live.shutdown().await;
    draining.shutdown().await;
}
