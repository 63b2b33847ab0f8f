//! End to end through the control socket with real softphones: baresip A
//! dials in with PIN 4321#; `confgate dial 4321 sip:bob@…` calls baresip B,
//! which answers by itself; `confgate rooms --json` lists both in room 4321;
//! B's recording holds the joined prompt, then A's voice (a tone); `confgate
//! events` saw both joins.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{best_match, envelope, goertzel, read_wav, sine, temp_dir, write_wav};
use common::{daemon, prompt};
use confgate::events::Event;

const A_TONE: f64 = 700.0;

/// Run the CLI against the daemon's control socket; stdout on success.
fn cli(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("confgate runs");
    assert!(
        out.status.success(),
        "confgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialled_phone_joins_the_room_of_a_caller() {
    let d = daemon(&["trunk.allow=[\"*\"]"]).await;
    let socket = d
        .control_endpoints()
        .0
        .expect("a control socket")
        .to_owned();
    let mut events = d.subscribe();
    let dir = temp_dir("e2e-control");
    let log = dir.join("events.jsonl");
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(["events", "--socket"])
        .arg(&socket)
        .stdout(std::fs::File::create(&log).expect("events log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("confgate events");

    // A calls in and keys the PIN.
    let mic_a = dir.join("a.wav");
    write_wav(&mic_a, &sine(8000, A_TONE, 6000.0, 8000 * 40));
    let mut a = Baresip::start("alice", &mic_a, false).await;
    a.dial_answered(&format!("sip:4000@{}", d.sip_addr())).await;
    let joined = |events: &mut tokio::sync::broadcast::Receiver<Event>| {
        let mut events = events.resubscribe();
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Ok(Event::MemberJoined { call, room, .. }) = events.recv().await {
                        return (call, room);
                    }
                }
            })
            .await
            .ok()
        }
    };
    let a_joined = joined(&mut events);
    a.command("sndcode", "4321#").await;
    let (call_a, room) = a_joined.await.expect("A joined");
    assert_eq!(room, "4321");
    // A is muted while B hears the joined prompt, so the prompt is heard clean.
    cli(&socket, &["mute", &call_a]);

    // B answers by itself; its microphone is near silence.
    let mic_b = dir.join("b.wav");
    write_wav(&mic_b, &sine(8000, 300.0, 20.0, 8000 * 40));
    let b = Baresip::start("bob", &mic_b, true).await;
    let b_joined = joined(&mut events);
    let call_b = cli(&socket, &["dial", "4321", &format!("sip:bob@{}", b.sip)])
        .trim()
        .to_owned();
    assert!(!call_b.is_empty(), "dial prints the call id");
    let (joined_b, room_b) = b_joined.await.expect("B joined");
    assert_eq!(
        (joined_b.as_str(), room_b.as_str()),
        (call_b.as_str(), "4321")
    );

    let rooms: serde_json::Value =
        serde_json::from_str(&cli(&socket, &["rooms", "--json"])).expect("rooms --json is JSON");
    let room = rooms
        .as_array()
        .and_then(|r| r.iter().find(|r| r["room"] == "4321"))
        .expect("room 4321 listed");
    let members = room["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{room}");
    let of = |call: &str| {
        members
            .iter()
            .find(|m| m["call"] == call)
            .unwrap_or_else(|| panic!("{call} listed in {room}"))
    };
    assert_eq!(of(&call_a)["direction"], "inbound");
    assert_eq!(of(&call_a)["muted"], true);
    assert_eq!(of(&call_b)["direction"], "outbound");
    assert!(of(&call_b)["to"]
        .as_str()
        .is_some_and(|t| t.starts_with("sip:bob@")));

    // B records the joined prompt and half a second more; then A, unmuted,
    // for three seconds.
    let joined_prompt = prompt("joined");
    let want = b.recorded() + joined_prompt.len() + 4000;
    let done = b.wait_recorded(want, Duration::from_secs(20)).await;
    assert!(done, "B recorded {} of {want} samples", b.recorded());
    cli(&socket, &["unmute", &call_a]);
    let want = b.recorded() + 3 * 8000;
    let done = b.wait_recorded(want, Duration::from_secs(20)).await;
    assert!(done, "B recorded {} of {want} samples", b.recorded());

    let dir_b = b.quit().await;
    a.quit().await;
    // The watcher has written both joins (it prints each event as it comes).
    for _ in 0..100 {
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        if lines.contains(&call_a) && lines.contains(&call_b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.kill().ok();
    watcher.wait().ok();
    d.shutdown().await;

    let heard = read_wav(&Baresip::heard(&dir_b).expect("B's recording"));
    let got = envelope(&heard);
    let want = envelope(&joined_prompt);
    let (corr, lag) = best_match(&got, &want);
    eprintln!(
        "B: joined prompt at {:.2} s, envelope correlation {corr:.3}",
        lag as f64 * 0.02
    );
    assert!(corr > 0.9, "B heard the joined prompt (corr {corr:.3})");
    let after = (lag + want.len()) * 160 + 8000;
    let tail = &heard[after.min(heard.len())..heard.len().saturating_sub(4000)];
    assert!(
        tail.len() >= 8000,
        "B heard {} samples after the prompt",
        tail.len()
    );
    let tone = db(goertzel(tail, 8000, A_TONE));
    let off = db(goertzel(tail, 8000, 1100.0));
    eprintln!("B after the prompt: {A_TONE} Hz {tone:.1} dB, 1100 Hz {off:.1} dB");
    assert!(tone - off > 20.0, "B hears A's tone once A is unmuted");

    let lines = std::fs::read_to_string(&log).expect("events log");
    let joins: Vec<serde_json::Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "member_joined")
        .collect();
    for call in [&call_a, &call_b] {
        assert!(
            joins.iter().any(|e| e["call"] == call.as_str()),
            "confgate events saw {call} join: {lines}"
        );
    }
}
