//! `cluster.refer` with real phones (and a raw one that declines REFER). Two nodes share a room directory in a
//! real redis-server and a control token; node B holds room 2468. A
//! baresip phone keys the room's PIN on node A, which has `cluster.refer`:
//! A sends it a REFER to `sip:room-2468@B` with a ticket, the phone calls
//! B itself, B seats it straight in the room (its own From, no PIN, though
//! B does not trust the phone's address), A hangs up its call and keeps
//! no bridge room, and the phone hears B's room. A ticket that is forged
//! or expired gets a caller the PIN prompt like any other. A phone that
//! declines the REFER is bridged as without `cluster.refer`.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::baresip::{free_port, Baresip, Options};
use common::raw::RawPhone;
use common::redis::Redis;
use common::signal::{hears, sine, temp_dir, write_wav_at};
use confgate::cluster::ticket;
use confgate::daemon::Daemon;
use confgate::events::Event;

const TOKEN: &str = "a-cluster-wide-control-token";

/// A node of the cluster at `ip` that trusts only node A's address (so a
/// phone on 127.0.0.1 is not trusted), with the shared control token.
async fn node(ip: &str, redis: &Redis, extra: &[&str]) -> Daemon {
    let url = format!("cluster.redis={}", redis.url());
    let listen = format!("sip.listen={ip}:{}", free_port());
    let control = format!("control.tcp={ip}:{}", free_port());
    let token = format!("control.token={TOKEN}");
    let mut args = vec![
        listen.as_str(),
        url.as_str(),
        "cluster.claim_ttl_secs=5",
        r#"rooms.trusted=["127.0.0.2/32"]"#,
        control.as_str(),
        token.as_str(),
    ];
    args.extend_from_slice(extra);
    Daemon::start(common::settings(&args))
        .await
        .expect("node starts")
}

async fn phone(name: &str, freq: f64) -> Baresip {
    let mic = temp_dir("cluster-refer").join(format!("{name}.wav"));
    write_wav_at(&mic, &sine(8000, freq, 6000.0, 8000 * 60), 8000);
    Baresip::start_with(name, &mic, false, &Options::default()).await
}

/// The next member seated in `room`: its From and whether it came in
/// without a PIN; `None` if none within `wait`.
async fn seated(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    room: &str,
    wait: Duration,
) -> Option<(String, bool)> {
    tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(Event::MemberJoined {
                    room: r,
                    from,
                    direct,
                    ..
                }) if r == room => return Some((from, direct)),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                _ => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Every recording of what a phone heard (one per call), as samples.
fn recordings(dir: &std::path::Path) -> Vec<Vec<i16>> {
    let Ok(entries) = std::fs::read_dir(dir.join("rec")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-dec.wav"))
        })
        .filter_map(|p| hound::WavReader::open(p).ok())
        .map(|r| r.into_samples::<i16>().map_while(Result::ok).collect())
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_moves_to_the_rooms_node_with_refer() {
    let redis = Redis::start();
    let b = node("127.0.0.3", &redis, &[]).await;
    let a = node("127.0.0.2", &redis, &["cluster.refer=true"]).await;
    let mut events_b = b.subscribe();
    let mut events_a = a.subscribe();
    // The room opens on B with its first caller.
    let mut one = phone("refer-one", 700.0).await;
    let (room, _) = one
        .join_room(b.sip_addr(), "2468#", Duration::ZERO, &mut events_b)
        .await;
    assert_eq!(room.as_deref(), Some("2468"));

    // The second keys the PIN on A: it is moved, not bridged.
    let mut two = phone("refer-two", 1000.0).await;
    two.dial_answered(&format!("sip:4000@{}", a.sip_addr()))
        .await;
    two.command("sndcode", "2468#").await;
    let moved = seated(&mut events_b, "2468", Duration::from_secs(20))
        .await
        .expect("the caller reaches B's room");
    assert!(moved.1, "seated by its ticket, without a PIN: {moved:?}");
    assert!(
        !moved.0.contains("127.0.0.2"),
        "the caller's own call, not A's bridge: {moved:?}"
    );
    let rooms = b.conference().rooms().await;
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(rooms[0].members.len(), 2, "{rooms:?}");
    // A hangs its call up and never opened a bridge room.
    let mut a_rooms = a.conference().rooms().await;
    for _ in 0..50 {
        if a_rooms.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        a_rooms = a.conference().rooms().await;
    }
    assert!(a_rooms.is_empty(), "no room left on A: {a_rooms:?}");
    while let Ok(e) = events_a.try_recv() {
        if let Event::MemberJoined { room, .. } = e {
            panic!("A seated the caller in {room}");
        }
    }

    // The moved caller hears B's room.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let dir = two.quit().await;
    one.quit().await;
    a.shutdown().await;
    b.shutdown().await;
    let heard = recordings(&dir);
    assert!(!heard.is_empty(), "two's recordings");
    assert!(
        heard
            .iter()
            .filter(|r| r.len() > 8000 * 3)
            .any(|r| hears(&r[r.len() - 8000 * 5 / 2..r.len() - 8000 / 2], 700.0)),
        "the moved caller hears B's room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_admits_without_a_pin_and_a_bad_one_gets_the_pin_prompt() {
    let redis = Redis::start();
    let b = node("127.0.0.3", &redis, &[]).await;
    let mut events = b.subscribe();
    let uri = |t: &str| {
        format!(
            "sip:room-2468@{};x-conference-ticket={}",
            b.sip_addr(),
            ticket::escape(t)
        )
    };
    let key = ticket::Key::from_token(TOKEN);

    // Forged (another token), expired, for another room, garbage: asked
    // for the PIN; the caller is seated only once it keys it.
    let other = ticket::Key::from_token("not-the-cluster-token-at-all");
    for (name, bad) in [
        ("refer-forged", ticket::sign("2468", now() + 30, &other)),
        ("refer-expired", ticket::sign("2468", now() - 5, &key)),
        ("refer-garbage", "2468~garbage".to_owned()),
    ] {
        let mut p = phone(name, 700.0).await;
        p.dial_answered(&uri(&bad)).await;
        assert_eq!(
            seated(&mut events, "2468", Duration::from_secs(2)).await,
            None,
            "{name}: not seated without a PIN"
        );
        p.command("sndcode", "2468#").await;
        let (_, direct) = seated(&mut events, "2468", Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{name}: seated with the PIN"));
        assert!(!direct, "{name}: by its PIN");
        p.quit().await;
    }

    // A good ticket: straight in, from an address B does not trust.
    let mut p = phone("refer-good", 700.0).await;
    p.dial_answered(&uri(&ticket::sign("2468", now() + 30, &key)))
        .await;
    let (_, direct) = seated(&mut events, "2468", Duration::from_secs(5))
        .await
        .expect("seated by its ticket");
    assert!(direct);
    p.quit().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_declines_the_refer_is_bridged() {
    let redis = Redis::start();
    let b = node("127.0.0.3", &redis, &[]).await;
    let a = node("127.0.0.2", &redis, &["cluster.refer=true"]).await;
    let mut events_b = b.subscribe();
    let mut one = phone("refer-stays-one", 700.0).await;
    let (room, _) = one
        .join_room(b.sip_addr(), "2468#", Duration::ZERO, &mut events_b)
        .await;
    assert_eq!(room.as_deref(), Some("2468"));

    // A phone that keys its PIN by INFO and declines every REFER.
    let mut raw = RawPhone::new(a.sip_addr(), "declines-refer").await;
    let rtp = common::rtp_socket().await;
    let sdp = common::offer(rtp.local_addr().expect("rtp addr"), "0", "");
    raw.invite(&sdp).await;
    let answered = raw.until_final("INVITE", Duration::from_secs(10)).await;
    assert_eq!(answered.last().map(|r| r.code), Some(200), "{answered:#?}");
    raw.ack(None).await;
    for digit in "2468#".chars() {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        raw.in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", &body)
            .await;
        raw.until_final("INFO", Duration::from_secs(5)).await;
    }
    let refer = declined_refer(&raw, Duration::from_secs(10))
        .await
        .expect("A sends a REFER");
    let refer_to = refer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("refer-to:"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        refer_to.contains("room-2468@127.0.0.3") && refer_to.contains("x-conference-ticket="),
        "{refer_to}"
    );
    // Bridged: B seats A's leg, from A.
    let (from, _) = seated(&mut events_b, "2468", Duration::from_secs(10))
        .await
        .expect("the bridge leg reaches B's room");
    assert!(from.contains("127.0.0.2"), "from node A: {from}");
    let on_a = a.conference().rooms().await;
    assert!(
        on_a.iter().any(|r| r.room.starts_with("bridge:")),
        "a bridge room on A: {on_a:?}"
    );
    raw.in_dialog("BYE", "", "").await;
    one.quit().await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Waits for a REFER from the node and answers it 603 Declined (other
/// requests 200); the REFER's text.
async fn declined_refer(raw: &RawPhone, wait: Duration) -> Option<String> {
    let is_refer = |t: &str| t.starts_with("REFER ");
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = raw
            .recv_request_with(left, |t| {
                if is_refer(t) {
                    "603 Declined"
                } else {
                    "200 OK"
                }
            })
            .await?;
        if is_refer(&text) {
            return Some(text);
        }
    }
}
