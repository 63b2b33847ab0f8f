//! Running it as a service: `confgate drain` and `confgate reload` (and
//! SIGHUP) against the real binary, with baresip phones in rooms.

#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::baresip::{free_port, Baresip};
use common::raw::RawPhone;
use common::signal::{sine, temp_dir, write_wav};
use common::{offer, rtp_socket};
use confgate::control::{ControlClient, Endpoint};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// `confgate run` as a child process, with its control socket.
struct Running {
    child: Child,
    sip: std::net::SocketAddr,
    socket: PathBuf,
}

impl Running {
    async fn start(config: Option<&Path>) -> Running {
        Running::start_with(config, &[]).await
    }

    async fn start_with(config: Option<&Path>, env: &[(&str, &Path)]) -> Running {
        let sip: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_confgate"));
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, socket) = common::spawn_daemon(cmd, &sip.to_string(), &[]).await;
        Running { child, sip, socket }
    }

    async fn client(&self) -> ControlClient {
        ControlClient::connect(&Endpoint::Unix(self.socket.clone()))
            .await
            .expect("control socket")
    }

    /// A CLI command against this daemon: exit code, stdout, stderr.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_confgate"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("confgate CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The exit status, if it exits within `wait`.
    async fn exited(&mut self, wait: Duration) -> Option<i32> {
        let by = Instant::now() + wait;
        while Instant::now() < by {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The next event named `name` on a subscribed client.
async fn event(events: &mut ControlClient, name: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.next_event().await.expect("events").expect("open");
            if e["event"] == name {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event within {WAIT:?}"))
}

/// A baresip phone that dials `sip` and keys `pin`; returns when it joined.
async fn member(
    sip: std::net::SocketAddr,
    events: &mut ControlClient,
    name: &str,
    pin: &str,
) -> (Baresip, String) {
    let dir = temp_dir(name);
    let mic = dir.join("tone.wav");
    write_wav(&mic, &sine(8000, 600.0, 4000.0, 8000 * 60));
    let mut phone = Baresip::start(name, &mic, false).await;
    phone.dial_answered(&format!("sip:4000@{sip}")).await;
    phone.command("sndcode", &format!("{pin}#")).await;
    let joined = event(events, "member_joined").await;
    (phone, joined["room"].as_str().unwrap_or("").to_owned())
}

fn members_of(rooms: &Value, room: &str) -> Vec<String> {
    rooms["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["room"] == room)
        .flat_map(|r| r["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["call"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_calls_and_exits_after_the_last_member() {
    let mut d = Running::start(None).await;
    let mut events = d.client().await;
    events.request(json!({"cmd": "subscribe"})).await.unwrap();
    let (phone, room) = member(d.sip, &mut events, "drain", "2468").await;
    assert_eq!(room, "2468");

    let (code, out, err) = d.cli(&["drain"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("draining: 1 call"), "{out}");
    assert_eq!(event(&mut events, "draining").await["calls"], 1);

    // A new caller is sent elsewhere, and so is a dispatcher's probe.
    let rtp = rtp_socket().await;
    let mut late = RawPhone::new(d.sip, "drain-late").await;
    late.invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = late.until_final("INVITE", WAIT).await;
    let last = seen.last().expect("an answer");
    assert_eq!(last.code, 503, "{seen:#?}");
    assert!(last.header("Retry-After").is_some(), "{}", last.text);
    late.to_tag = None;
    let options = late.request("OPTIONS", 2, "OPTIONS", "drainopt", "", "");
    late.send_raw(options.as_bytes()).await;
    // Retransmissions of the INVITE's 503 may come first.
    let r = loop {
        let r = late.recv(WAIT).await.expect("an answer to OPTIONS");
        if r.cseq_method() == Some("OPTIONS") {
            break r;
        }
    };
    assert_eq!(r.code, 503, "{}", r.text);
    assert!(r.header("Retry-After").is_some(), "{}", r.text);
    let mut control = d.client().await;
    let dial = control
        .request(json!({"cmd": "dial", "room": "2468", "to": "sip:someone@127.0.0.1"}))
        .await;
    assert!(
        dial.as_ref()
            .is_err_and(|e| e.to_string().starts_with("draining")),
        "{dial:?}"
    );
    let status = control.request(json!({"cmd": "status"})).await.unwrap();
    assert_eq!(status["draining"], true);

    // The member is not touched: still listed, still hearing the room.
    let rooms = control.request(json!({"cmd": "rooms"})).await.unwrap();
    assert_eq!(members_of(&rooms, "2468").len(), 1, "{rooms}");
    let heard = phone.recorded();
    assert!(
        phone.wait_recorded(heard + 8000, WAIT).await,
        "the member's audio goes on while draining"
    );
    assert_eq!(d.exited(Duration::from_millis(500)).await, None);

    // Its hang-up was the last call: the daemon exits 0.
    phone.quit().await;
    assert_eq!(d.exited(Duration::from_secs(20)).await, Some(0));
}

const ROOMS_V1: &str = r#"
[rooms]
open = false
[[rooms.room]]
id = "alpha"
pin = "1111"
"#;

const ROOMS_V2: &str = r#"
[media]
threads = 1
[rooms]
open = false
[[rooms.room]]
id = "alpha"
pin = "1111"
[[rooms.room]]
id = "beta"
pin = "2222"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_room_without_touching_a_call_and_keeps_the_old_on_a_bad_file() {
    let dir = temp_dir("reload");
    let file = dir.join("confgate.toml");
    std::fs::write(&file, ROOMS_V1).unwrap();
    let d = Running::start(Some(&file)).await;
    let mut events = d.client().await;
    events.request(json!({"cmd": "subscribe"})).await.unwrap();
    let (first, room) = member(d.sip, &mut events, "reload-a", "1111").await;
    assert_eq!(room, "alpha");

    // A room with a new PIN, and a key that cannot change live.
    std::fs::write(&file, ROOMS_V2).unwrap();
    let (code, out, err) = d.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reloaded"), "{out}");
    assert!(
        out.contains("media.threads"),
        "a restart is needed for it: {out}"
    );
    let reloaded = event(&mut events, "config_reloaded").await;
    assert_eq!(reloaded["restart_needed"], json!(["media.threads"]));

    let (second, room) = member(d.sip, &mut events, "reload-b", "2222").await;
    assert_eq!(room, "beta", "the new PIN opens the new room");
    let mut control = d.client().await;
    let rooms = control.request(json!({"cmd": "rooms"})).await.unwrap();
    assert_eq!(
        members_of(&rooms, "alpha").len(),
        1,
        "the first call stayed: {rooms}"
    );
    assert_eq!(members_of(&rooms, "beta").len(), 1, "{rooms}");

    // A bad value changes nothing, and the error names the key.
    std::fs::write(&file, format!("{ROOMS_V2}\n[pin]\nmin_len = \"four\"\n")).unwrap();
    let (code, _, err) = d.cli(&["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad_config") && err.contains("pin.min_len"),
        "{err}"
    );
    let failed = event(&mut events, "config_reload_failed").await;
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("pin.min_len")),
        "{failed}"
    );
    let rooms = control.request(json!({"cmd": "rooms"})).await.unwrap();
    assert_eq!(members_of(&rooms, "alpha").len(), 1, "{rooms}");
    assert_eq!(members_of(&rooms, "beta").len(), 1, "{rooms}");

    // SIGHUP reloads too: beta's PIN changes to 3333.
    std::fs::write(&file, ROOMS_V2.replace("2222", "3333")).unwrap();
    let pid = d.child.id();
    assert_eq!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .code(),
        Some(0)
    );
    event(&mut events, "config_reloaded").await;
    let (third, room) = member(d.sip, &mut events, "reload-c", "3333").await;
    assert_eq!(room, "beta");
    for phone in [first, second, third] {
        phone.quit().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_stays_off_command_lines() {
    let dir = temp_dir("token");
    let file = dir.join("token");
    let token = "a-token-of-twenty-chars";
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let tcp = format!("127.0.0.1:{}", free_port());
    let d = common::daemon(&[
        &format!("control.tcp={tcp}"),
        &format!("control.token_file={}", file.display()),
    ])
    .await;
    let addr = tcp.clone();
    let status = move |env: Option<&str>, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_confgate"));
        cmd.args(["status", "--json", "--tcp", &addr]).args(extra);
        cmd.env_remove("CONFGATE_TOKEN");
        if let Some(t) = env {
            cmd.env("CONFGATE_TOKEN", t);
        }
        let out = cmd.output().expect("confgate CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let file_arg = file.display().to_string();
    let (code, out) = tokio::task::spawn_blocking(move || {
        let from_env = status(Some(token), &[]);
        let from_file = status(None, &["--token-file", &file_arg]);
        let wrong = status(Some("not-the-right-token"), &[]);
        let none = status(None, &[]);
        (
            [from_env.0, from_file.0, wrong.0, none.0],
            [from_env.1, from_file.1, wrong.1, none.1],
        )
    })
    .await
    .unwrap();
    assert_eq!(code[0], 0, "CONFGATE_TOKEN: {}", out[0]);
    assert!(out[0].contains("\"version\""), "{}", out[0]);
    assert_eq!(code[1], 0, "--token-file: {}", out[1]);
    assert_eq!(code[2], 1, "a wrong token: {}", out[2]);
    assert!(out[2].contains("auth_failed"), "{}", out[2]);
    assert_eq!(code[3], 64, "no token at all: {}", out[3]);
    assert!(out[3].contains("CONFGATE_TOKEN"), "{}", out[3]);
    // CONFGATE_TOKEN set for the shell does not get in the way of the socket.
    let (path, _) = d.control_endpoints();
    let out = Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(["status", "--socket"])
        .arg(path.expect("a control socket"))
        .env("CONFGATE_TOKEN", token)
        .output()
        .expect("confgate CLI");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.shutdown().await;

    // A token file the daemon cannot read stops it, naming the key; the
    // CLI, which never needs it, is not stopped by it.
    let unreadable = [
        format!("control.tcp={tcp}"),
        "control.token_file=/nonexistent/token".to_owned(),
    ];
    let settings = confgate::config::Config::load(None, &unreadable).expect("loads");
    let err = confgate::daemon::Daemon::start(settings)
        .await
        .err()
        .expect("does not start");
    assert!(err.to_string().contains("control.token_file:"), "{err}");
    let mut args = vec!["check-config".to_owned()];
    for s in &unreadable {
        args.push("--set".into());
        args.push(s.clone());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(&args)
        .output()
        .expect("check-config");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("control.token_file:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_once_sip_and_control_are_up() {
    let dir = temp_dir("notify");
    let path = dir.join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&path).expect("notify socket");
    let mut d = Running::start_with(None, &[("NOTIFY_SOCKET", &path)]).await;
    let next = |wait: Duration| {
        let notify = &notify;
        async move {
            let mut buf = vec![0; 512];
            let n = tokio::time::timeout(wait, notify.recv(&mut buf))
                .await
                .expect("a notification")
                .expect("recv");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    assert_eq!(next(WAIT).await.trim(), "READY=1");
    // Ready means ready: SIP answers and the control socket serves.
    let probe = RawPhone::new(d.sip, "notify-probe").await;
    let options = probe.request("OPTIONS", 1, "OPTIONS", "notifyopt", "", "");
    probe.send_raw(options.as_bytes()).await;
    assert_eq!(probe.recv(WAIT).await.map(|r| r.code), Some(200));
    let status = d.client().await.request(json!({"cmd": "status"})).await;
    assert!(status.is_ok(), "{status:?}");

    let pid = d.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let reloading = next(WAIT).await;
    assert!(
        reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(WAIT).await.trim(), "READY=1");

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(next(WAIT).await.trim(), "STOPPING=1");
    assert_eq!(d.exited(WAIT).await, Some(0));
}
