//! The control server over real sockets, against a switchboard double that
//! records what it was asked and publishes events when told to.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use confgate::conference::{Control, RoomStatus};
use confgate::config::ControlSettings;
use confgate::control::{
    CommandError, ControlError, ControlServer, DialRequest, Peers, Status, Switchboard, Target,
};
use confgate::events::{Direction, Event};

const TOKEN: &str = "0123456789abcdef-token";

/// The daemon, as far as these tests need one.
struct Board {
    asked: Mutex<Vec<String>>,
    events: broadcast::Sender<Event>,
    rooms: Vec<RoomStatus>,
    /// The other nodes, as a cluster node has them.
    peers: Option<Arc<dyn Peers>>,
}

impl Board {
    fn new(event_capacity: usize) -> Arc<Board> {
        Arc::new(Board {
            asked: Mutex::new(Vec::new()),
            events: broadcast::channel(event_capacity).0,
            rooms: vec![common::sales_room()],
            peers: None,
        })
    }

    fn record(&self, what: String) {
        self.asked.lock().unwrap().push(what);
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    fn publish(&self, event: Event) {
        self.events.send(event).ok();
    }
}

#[async_trait::async_trait]
impl Switchboard for Board {
    async fn dial(&self, req: DialRequest) -> Result<String, CommandError> {
        self.record(format!("dial {req:?}"));
        match req.room.as_str() {
            "closed" => Err(CommandError::Refused {
                rule: "trunk.allow",
                detail: "no rule matches".into(),
            }),
            _ => Ok("out-1".into()),
        }
    }
    async fn hangup(&self, call: &str) -> Result<(), CommandError> {
        self.record(format!("hangup {call}"));
        Err(CommandError::NoSuchCall(call.into()))
    }
    async fn rooms(&self) -> Vec<RoomStatus> {
        self.rooms.clone()
    }
    async fn control(&self, call: &str, control: Control) -> Result<(), CommandError> {
        self.record(format!("control {call} {control:?}"));
        // Only its own members.
        match self
            .rooms
            .iter()
            .any(|r| r.members.iter().any(|m| m.call == call))
        {
            true => Ok(()),
            false => Err(CommandError::NoSuchCall(call.into())),
        }
    }
    async fn say(&self, target: Target, text: String) -> Result<(), CommandError> {
        self.record(format!("say {target:?} {text}"));
        Ok(())
    }
    async fn status(&self) -> Status {
        Status {
            version: "test",
            uptime_secs: 5,
            calls: 1,
            rooms: 1,
            registration: "disabled".into(),
            draining: false,
        }
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
    fn peers(&self) -> Option<Arc<dyn Peers>> {
        self.peers.clone()
    }
}

/// A socket path of its own in the temp dir.
fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "confgate-ctl-{}-{n}-{name}.sock",
        std::process::id()
    ))
}

struct Running {
    server: ControlServer,
    board: Arc<Board>,
    shutdown: CancellationToken,
    path: PathBuf,
}

impl Running {
    async fn start(name: &str, max_clients: usize, tcp: bool, event_capacity: usize) -> Running {
        Running::with_board(name, max_clients, tcp, Board::new(event_capacity)).await
    }

    async fn with_board(name: &str, max_clients: usize, tcp: bool, board: Arc<Board>) -> Running {
        let path = socket_path(name);
        let settings = ControlSettings {
            socket: Some(path.clone()),
            tcp: tcp.then(|| ("127.0.0.1:0".parse().unwrap(), TOKEN.to_owned())),
            token_file: None,
            token: String::new(),
            max_clients,
        };
        let shutdown = CancellationToken::new();
        let server = ControlServer::start(&settings, board.clone(), shutdown.clone())
            .await
            .expect("starts");
        Running {
            server,
            board,
            shutdown,
            path,
        }
    }

    async fn unix(&self) -> Peer {
        Peer::new(UnixStream::connect(&self.path).await.expect("connects"))
    }

    async fn tcp(&self) -> Peer {
        let addr = self.server.tcp_addr().expect("TCP configured");
        Peer::new(TcpStream::connect(addr).await.expect("connects"))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.stopped().await;
        assert!(
            !self.path.exists(),
            "the socket file is removed on shutdown"
        );
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A client speaking raw lines.
struct Peer(BufReader<Box<dyn Stream>>);

impl Peer {
    fn new(stream: impl Stream + 'static) -> Peer {
        Peer(BufReader::new(Box::new(stream)))
    }

    async fn send(&mut self, line: &str) {
        let w = self.0.get_mut();
        w.write_all(line.as_bytes()).await.unwrap();
        w.write_all(b"\n").await.unwrap();
    }

    /// The next line, or `None` at end of stream.
    async fn line(&mut self) -> Option<Value> {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(5), self.0.read_line(&mut line))
            .await
            .expect("a line within 5 s");
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("the server writes JSON")),
        }
    }

    async fn ask(&mut self, line: &str) -> Value {
        self.send(line).await;
        self.line().await.expect("a response")
    }
}

fn code(response: &Value) -> &str {
    assert_eq!(response["ok"], false, "{response}");
    response["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bad_lines_get_their_code_and_the_connection_answers_on() {
    let run = Running::start("errors", 4, false, 16).await;
    let mut peer = run.unix().await;
    let status = json!({"version":"test","uptime_secs":5,"calls":1,"rooms":1,"registration":"disabled","draining":false});

    assert_eq!(code(&peer.ask("{not json").await), "bad_json");
    assert_eq!(code(&peer.ask("\u{0}\u{7f}[]").await), "bad_json");
    peer.0
        .get_mut()
        .write_all(b"\xff\xfe{\r\n\n")
        .await
        .unwrap();
    assert_eq!(code(&peer.line().await.unwrap()), "bad_json", "not UTF-8");
    assert_eq!(
        code(&peer.ask(r#"{"id":1,"cmd":"reboot"}"#).await),
        "unknown_command"
    );
    let missing = peer.ask(r#"{"id":2,"cmd":"dial","room":"sales"}"#).await;
    assert_eq!(
        (code(&missing), &missing["id"]),
        ("missing_field", &json!(2))
    );
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"to\""),
        "{missing}"
    );
    let bad = peer.ask(r#"{"cmd":"subscribe","events":["lunch"]}"#).await;
    assert_eq!(code(&bad), "bad_argument");

    let long = format!(
        r#"{{"cmd":"say","room":"sales","text":"{}"}}"#,
        "a".repeat(70 * 1024)
    );
    assert_eq!(code(&peer.ask(&long).await), "line_too_long");
    assert!(run.board.asked().is_empty(), "nothing reached the daemon");

    let ok = peer.ask(r#"{"id":7,"cmd":"status"}"#).await;
    assert_eq!(ok, json!({"id":7,"ok":true,"result":status}));
    let ok = peer.ask(r#"{"id":"abc","cmd":"status"}"#).await;
    assert_eq!((&ok["id"], &ok["ok"]), (&json!("abc"), &json!(true)));
    run.stop().await;
}

#[tokio::test]
async fn commands_reach_the_switchboard_and_its_errors_come_back_coded() {
    let run = Running::start("commands", 4, false, 16).await;
    let mut peer = run.unix().await;
    let dial = peer
        .ask(r#"{"id":1,"cmd":"dial","room":"sales","to":"+15551234","from":"desk","timeout":20}"#)
        .await;
    assert_eq!(dial["result"], json!({"call":"out-1"}));
    assert_eq!(
        code(&peer.ask(r#"{"cmd":"dial","room":"closed","to":"1"}"#).await),
        "refused"
    );
    assert_eq!(
        code(&peer.ask(r#"{"cmd":"hangup","call":"x9"}"#).await),
        "no_such_call"
    );
    assert_eq!(
        peer.ask(r#"{"cmd":"kick","call":"in-1"}"#).await["ok"],
        true
    );
    assert_eq!(
        peer.ask(r#"{"cmd":"unmute","call":"in-1"}"#).await["ok"],
        true
    );
    assert_eq!(
        peer.ask(r#"{"cmd":"say","call":"in-1","text":"hi"}"#).await["ok"],
        true
    );
    assert_eq!(
        code(&peer.ask(r#"{"cmd":"room","room":"nope"}"#).await),
        "no_such_room"
    );
    let room = peer.ask(r#"{"cmd":"room","room":"sales"}"#).await;
    assert_eq!(room["result"]["members"][0]["codec"], "PCMU");
    let rooms = peer.ask(r#"{"cmd":"rooms"}"#).await;
    assert_eq!(rooms["result"]["rooms"][0], room["result"]);
    assert_eq!(
        run.board.asked(),
        [
            r#"dial DialRequest { room: "sales", to: "+15551234", from: Some("desk"), timeout: Some(20s), dtmf: None }"#,
            r#"dial DialRequest { room: "closed", to: "1", from: None, timeout: None, dtmf: None }"#,
            "hangup x9",
            "control in-1 Kick",
            "control in-1 Mute(false)",
            r#"say Call("in-1") hi"#,
        ]
    );
    run.stop().await;
}

#[tokio::test]
async fn tcp_clients_must_send_the_token_first() {
    let run = Running::start("tcp", 8, true, 16).await;
    assert_ne!(run.server.tcp_addr().unwrap().port(), 0, "the bound port");

    let mut peer = run.tcp().await;
    assert_eq!(
        code(&peer.ask(r#"{"id":1,"cmd":"status"}"#).await),
        "auth_required"
    );
    assert_eq!(peer.line().await, None, "closed after refusal");

    let mut peer = run.tcp().await;
    let wrong = peer
        .ask(r#"{"id":1,"cmd":"auth","token":"0123456789abcdeX-token"}"#)
        .await;
    assert_eq!((code(&wrong), &wrong["id"]), ("auth_failed", &json!(1)));
    assert_eq!(peer.line().await, None, "closed after a wrong token");

    let mut peer = run.tcp().await;
    let auth = peer
        .ask(&json!({"id":1,"cmd":"auth","token":TOKEN}).to_string())
        .await;
    assert_eq!(auth["ok"], true, "{auth}");
    assert_eq!(peer.ask(r#"{"id":2,"cmd":"status"}"#).await["ok"], true);
    run.stop().await;
}

#[tokio::test]
async fn one_client_past_the_cap_is_refused() {
    let run = Running::start("cap", 2, false, 16).await;
    let mut first = run.unix().await;
    let mut second = run.unix().await;
    assert_eq!(first.ask(r#"{"cmd":"status"}"#).await["ok"], true);
    assert_eq!(second.ask(r#"{"cmd":"status"}"#).await["ok"], true);
    let mut third = run.unix().await;
    assert_eq!(code(&third.line().await.expect("told")), "too_many_clients");
    assert_eq!(third.line().await, None);

    drop(first);
    // The slot frees once the server has seen the close.
    let mut answered = false;
    for _ in 0..50 {
        let mut again = run.unix().await;
        if again.ask(r#"{"cmd":"status"}"#).await["ok"] == true {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a freed slot is reused");
    run.stop().await;
}

#[tokio::test]
async fn the_socket_is_private_and_a_stale_one_is_replaced() {
    let run = Running::start("mode", 2, false, 16).await;
    let mode = std::fs::metadata(&run.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second server on a live socket refuses, naming it.
    let settings = ControlSettings {
        socket: Some(run.path.clone()),
        tcp: None,
        token_file: None,
        token: String::new(),
        max_clients: 1,
    };
    let err = ControlServer::start(&settings, Board::new(4), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::InUse { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*run.path.to_string_lossy()),
        "{err}"
    );
    run.stop().await;

    // Left behind by a daemon that died: replaced.
    let path = socket_path("stale");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let settings = ControlSettings {
        socket: Some(path.clone()),
        tcp: None,
        token_file: None,
        token: String::new(),
        max_clients: 1,
    };
    let shutdown = CancellationToken::new();
    let server = ControlServer::start(&settings, Board::new(4), shutdown.clone())
        .await
        .expect("replaces the stale file");
    let mut peer = Peer::new(UnixStream::connect(&path).await.unwrap());
    assert_eq!(peer.ask(r#"{"cmd":"status"}"#).await["ok"], true);
    shutdown.cancel();
    server.stopped().await;

    // Not a socket: left alone.
    std::fs::write(&path, b"notes").unwrap();
    let err = ControlServer::start(&settings, Board::new(4), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err:?}");
    std::fs::remove_file(&path).unwrap();
}

fn joined(call: &str) -> Event {
    Event::MemberJoined {
        call: call.into(),
        sip_call_id: format!("{call}@pbx"),
        room: "sales".into(),
        from: "alice".into(),
        to: "100".into(),
        direction: Direction::Inbound,
        direct: false,
        moderator: false,
    }
}

#[tokio::test]
async fn subscribers_get_the_events_they_asked_for_between_responses() {
    let run = Running::start("events", 4, false, 16).await;
    let mut peer = run.unix().await;
    let sub = peer
        .ask(r#"{"id":1,"cmd":"subscribe","events":["member_joined"]}"#)
        .await;
    assert_eq!(sub["result"], json!({"events":["member_joined"]}));
    run.board.publish(Event::RoomOpened {
        room: "sales".into(),
    });
    run.board.publish(joined("in-1"));
    run.board.publish(Event::MemberLeft {
        call: "in-1".into(),
        room: "sales".into(),
        reason: "hangup",
    });
    let event = peer.line().await.unwrap();
    assert_eq!(
        event,
        json!({"event":"member_joined","call":"in-1","sip_call_id":"in-1@pbx","room":"sales","from":"alice","to":"100",
               "direction":"inbound","direct":false,"moderator":false})
    );
    // The filtered-out events were not written: the next line is the response.
    let status = peer.ask(r#"{"id":2,"cmd":"status"}"#).await;
    assert_eq!(status["id"], 2);
    run.stop().await;
    assert_eq!(peer.line().await, None, "shutdown closes connections");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_how_many_it_lost() {
    let run = Running::start("lag", 4, false, 4).await;
    let mut peer = run.unix().await;
    assert_eq!(peer.ask(r#"{"cmd":"subscribe"}"#).await["ok"], true);
    // A current-thread runtime: the handler cannot run until we await.
    for n in 0..10 {
        run.board.publish(joined(&format!("c{n}")));
    }
    assert_eq!(
        peer.line().await.unwrap(),
        json!({"event":"events_lost","count":6})
    );
    for n in 6..10 {
        assert_eq!(peer.line().await.unwrap()["call"], format!("c{n}"));
    }
    run.stop().await;
}

async fn confgate(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_confgate"))
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_through_the_socket() {
    let run = Running::start("cli", 4, true, 16).await;
    let p = run.path.to_str().unwrap();

    let out = confgate(&["rooms", "--json", "--socket", p]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        json!([{"room":"sales","locked":false,"members":[{"call":"in-1","sip_call_id":"in-1@pbx","direction":"inbound","from":"alice",
            "to":"100","moderator":false,"muted":false,"deaf":false,"talking":true,"held":false,
            "listen_db":0,"talk_db":0,"codec":"PCMU",
            "lost":2,"late":1,"jitter_ms":1.5,"rtt_ms":null,"remote_lost":null,"remote_jitter_ms":null,"mos":null}]}])
    );
    let out = confgate(&["rooms", "--socket", p]).await;
    let table = text(&out.stdout);
    assert!(
        table.starts_with("ROOM") && table.contains("in-1"),
        "{table}"
    );

    let out = confgate(&["status", "--socket", p]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("registration disabled"),
        "{}",
        text(&out.stdout)
    );

    let addr = run.server.tcp_addr().unwrap().to_string();
    let out = confgate(&[
        "dial",
        "sales",
        "+15551234",
        "--timeout",
        "9",
        "--tcp",
        &addr,
        "--token",
        TOKEN,
    ])
    .await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "out-1\n".to_owned())
    );
    let out = confgate(&["status", "--tcp", &addr, "--token", "wrong-token-0123456"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("confgate: auth_failed: "),
        "{}",
        text(&out.stderr)
    );

    let out = confgate(&["room", "nope", "--socket", p]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("confgate: no_such_room: "),
        "{}",
        text(&out.stderr)
    );
    let out = confgate(&["say", "--call", "in-1", "hello there", "--socket", p]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(run
        .board
        .asked()
        .contains(&r#"say Call("in-1") hello there"#.to_owned()));
    let out = confgate(&["deaf", "in-1", "--socket", p]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(run
        .board
        .asked()
        .contains(&"control in-1 Deaf(true)".to_owned()));

    let missing = socket_path("missing");
    let out = confgate(&["status", "--socket", missing.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );

    events_are_followed(&run, p).await;
    run.stop().await;
}

async fn events_are_followed(run: &Running, socket: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(["events", "member_joined", "--socket", socket])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    });
    for _ in 0..250 {
        if run.board.events.receiver_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.board.publish(Event::RoomOpened {
        room: "sales".into(),
    });
    run.board.publish(joined("in-7"));
    let line = tokio::time::timeout(Duration::from_secs(5), first_line).await;
    child.kill().ok();
    child.wait().ok();
    let line = line.expect("an event line").unwrap().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&event["event"], &event["call"]),
        (&json!("member_joined"), &json!("in-7"))
    );
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // waits in real time for the server to give up
async fn a_client_that_stops_reading_is_cut_off_and_its_slot_freed() {
    let run = Running::start("stuck", 1, false, 16).await;
    let mut stuck = UnixStream::connect(&run.path).await.unwrap();
    // Requests whose answers are never read, until neither side's buffer
    // takes more: the server's writes then wait on this client.
    let burst = br#"{"cmd":"status"}
"#
    .repeat(512);
    let started = std::time::Instant::now();
    while tokio::time::timeout(Duration::from_secs(1), stuck.write_all(&burst))
        .await
        .is_ok_and(|w| w.is_ok())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the buffers never filled"
        );
    }
    // Until the server gives up on it, the one slot is taken.
    let mut other = run.unix().await;
    assert_eq!(code(&other.line().await.expect("told")), "too_many_clients");
    let by = std::time::Instant::now() + Duration::from_secs(20);
    let freed = loop {
        let mut peer = run.unix().await;
        peer.send(r#"{"cmd":"status"}"#).await;
        if peer.line().await.is_some_and(|r| r["ok"] == true) {
            break true;
        }
        if std::time::Instant::now() > by {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(freed, "the stuck client was cut off and its slot reused");
    drop(stuck);
    run.stop().await;
}

/// The cluster as node "a" sees it: "north" lives on node "b"; a third node
/// is announced but does not answer.
struct TwoOthers {
    b: confgate::control::Peer,
    dead: confgate::control::Peer,
}

#[async_trait::async_trait]
impl Peers for TwoOthers {
    fn node(&self) -> &str {
        "10.0.0.1:5060"
    }
    fn token(&self) -> &str {
        TOKEN
    }
    async fn holder(&self, room: &str) -> Option<confgate::control::Peer> {
        (room == "north").then(|| self.b.clone())
    }
    async fn others(&self) -> Vec<confgate::control::Peer> {
        vec![self.b.clone(), self.dead.clone()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_lists_and_acts_on_what_lives_on_the_others() {
    // Node b: room "north" with member b-1, on TCP with the shared token.
    let mut north = common::sales_room();
    north.room = "north".into();
    north.members[0].call = "b-1".into();
    let b = Running::with_board(
        "node-b",
        4,
        true,
        Arc::new(Board {
            asked: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
            rooms: vec![north],
            peers: None,
        }),
    )
    .await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let peers = TwoOthers {
        b: confgate::control::Peer {
            node: "10.0.0.2:5060".into(),
            control: b.server.tcp_addr().unwrap(),
        },
        dead: confgate::control::Peer {
            node: "10.0.0.3:5060".into(),
            control: dead_addr,
        },
    };
    let a = Running::with_board(
        "node-a",
        4,
        false,
        Arc::new(Board {
            asked: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
            rooms: vec![common::sales_room()],
            peers: Some(Arc::new(peers)),
        }),
    )
    .await;
    let mut peer = a.unix().await;

    // Every node's rooms, each with its node; the one that did not answer named.
    let rooms = peer.ask(r#"{"id":1,"cmd":"rooms"}"#).await;
    let listed: Vec<(&str, &str)> = rooms["result"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["room"].as_str().unwrap(), r["node"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("north", "10.0.0.2:5060"), ("sales", "10.0.0.1:5060")],
        "{rooms}"
    );
    assert_eq!(rooms["result"]["unreachable"], json!(["10.0.0.3:5060"]));
    // Asked with "local": this node's alone, as the others ask it.
    let here = peer.ask(r#"{"cmd":"rooms","local":true}"#).await;
    assert_eq!(
        here["result"]["rooms"].as_array().unwrap().len(),
        1,
        "{here}"
    );
    assert!(here["result"].get("unreachable").is_none(), "{here}");
    assert_eq!(
        code(&peer.ask(r#"{"cmd":"rooms","local":1}"#).await),
        "bad_argument"
    );

    // A room elsewhere is read from its node.
    let room = peer.ask(r#"{"id":2,"cmd":"room","room":"north"}"#).await;
    assert_eq!(room["id"], 2);
    assert_eq!(room["result"]["node"], "10.0.0.2:5060", "{room}");
    assert_eq!(room["result"]["members"][0]["call"], "b-1");
    assert_eq!(
        code(&peer.ask(r#"{"cmd":"room","room":"south"}"#).await),
        "no_such_room"
    );

    // A member elsewhere is muted on its node. A call no node that answered
    // has may be on the one that did not: unavailable, naming it.
    let mute = peer.ask(r#"{"id":3,"cmd":"mute","call":"b-1"}"#).await;
    assert_eq!(mute, json!({"id":3,"ok":true,"result":{}}));
    let kick = peer.ask(r#"{"cmd":"kick","call":"zz-9"}"#).await;
    assert_eq!(code(&kick), "unavailable");
    assert!(
        kick["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10.0.0.3:5060"),
        "{kick}"
    );
    // A dial into a room elsewhere is placed by its node; a node's error comes back as it was.
    let dial = peer
        .ask(r#"{"cmd":"dial","room":"north","to":"+15551234"}"#)
        .await;
    assert_eq!(dial["result"], json!({"call":"out-1"}));
    assert_eq!(
        a.board.asked(),
        ["control b-1 Mute(true)", "control zz-9 Kick"],
        "a tried its own calls first and dialled nothing"
    );
    assert_eq!(
        b.board.asked(),
        [
            "control b-1 Mute(true)",
            "control zz-9 Kick",
            r#"dial DialRequest { room: "north", to: "+15551234", from: None, timeout: None, dtmf: None }"#,
        ]
    );
    a.stop().await;
    b.stop().await;
}
