//! The web endpoint over real sockets: login and sessions, the control
//! WebSocket with and without a session, the join WebSocket against a
//! fake joiner, HTTPS, and the daemon's own endpoint next to its control
//! socket.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use confgate::conference::{Control, RoomStatus};
use confgate::config::{PemFile, WebSettings};
use confgate::control::protocol::{ok_line, rooms_result};
use confgate::control::{CommandError, ControlCounters, DialRequest, Status, Switchboard, Target};
use confgate::events::Event;
use confgate::web::{JoinAsk, JoinRefused, Joined, Joiner, WebServer};

const TOKEN: &str = "0123456789abcdef-web";
const STEP: Duration = Duration::from_secs(5);

/// The daemon, as far as the web endpoint needs one: it records what it
/// was asked and publishes events when told to.
struct Board {
    asked: Mutex<Vec<String>>,
    events: broadcast::Sender<Event>,
    rooms: Vec<RoomStatus>,
}

impl Board {
    fn new() -> Arc<Board> {
        Arc::new(Board {
            asked: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
            rooms: vec![common::sales_room()],
        })
    }

    fn record(&self, what: String) {
        self.asked.lock().unwrap().push(what);
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Switchboard for Board {
    async fn dial(&self, req: DialRequest) -> Result<String, CommandError> {
        self.record(format!("dial {}", req.to));
        Ok("out-1".into())
    }
    async fn hangup(&self, call: &str) -> Result<(), CommandError> {
        self.record(format!("hangup {call}"));
        Ok(())
    }
    async fn rooms(&self) -> Vec<RoomStatus> {
        self.rooms.clone()
    }
    async fn control(&self, call: &str, control: Control) -> Result<(), CommandError> {
        self.record(format!("control {call} {control:?}"));
        Ok(())
    }
    async fn say(&self, target: Target, text: String) -> Result<(), CommandError> {
        self.record(format!("say {target:?} {text}"));
        Ok(())
    }
    async fn lock(&self, room: &str, on: bool) -> Result<(), CommandError> {
        self.record(format!("lock {room} {on}"));
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
}

/// What a member admitted by [`FakeJoiner`] holds on our side.
struct Admitted {
    ask_peer: SocketAddr,
    end: oneshot::Sender<String>,
    leave: oneshot::Receiver<()>,
}

/// PIN 1234 lets anyone into any room, with the answer "v=0 fake".
#[derive(Default)]
struct FakeJoiner {
    admitted: Mutex<Vec<Admitted>>,
}

impl FakeJoiner {
    fn take(&self) -> Admitted {
        self.admitted.lock().unwrap().pop().expect("a member")
    }
}

#[async_trait::async_trait]
impl Joiner for FakeJoiner {
    async fn join(&self, ask: JoinAsk) -> Result<Joined, JoinRefused> {
        if ask.pin != "1234" {
            return Err(JoinRefused::WrongPin);
        }
        if !ask.offer.starts_with("v=0") {
            return Err(JoinRefused::BadOffer("not SDP".into()));
        }
        let (end, ended) = oneshot::channel();
        let (leave_tx, leave) = oneshot::channel();
        let mut admitted = self.admitted.lock().unwrap();
        admitted.push(Admitted {
            ask_peer: ask.peer,
            end,
            leave,
        });
        Ok(Joined {
            call: format!("web-{}-{}", ask.room, admitted.len()),
            answer: "v=0 fake".into(),
            ended,
            leave: leave_tx,
        })
    }
}

struct Running {
    addr: SocketAddr,
    board: Arc<Board>,
    joiner: Arc<FakeJoiner>,
    counters: Arc<ControlCounters>,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(tls: Option<(PemFile, PemFile)>) -> Running {
    let board = Board::new();
    let joiner = Arc::new(FakeJoiner::default());
    let counters = Arc::new(ControlCounters::default());
    let shutdown = CancellationToken::new();
    let settings = WebSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        room_links: false,
        tls,
    };
    let server = WebServer::start(
        &settings,
        TOKEN.into(),
        board.clone(),
        counters.clone(),
        joiner.clone(),
        shutdown.clone(),
    )
    .await
    .expect("web server starts");
    Running {
        addr: server.local_addr(),
        board,
        joiner,
        counters,
        shutdown,
    }
}

/// An HTTP response as read off the wire.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    /// Every value of header `name` (lowercase).
    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    fn header(&self, name: &str) -> String {
        self.headers(name).into_iter().next().unwrap_or_default()
    }

    /// `confgate_session=...` from Set-Cookie, ready for a Cookie header.
    fn session(&self) -> String {
        let cookie = self.header("set-cookie");
        cookie.split(';').next().unwrap_or("").to_owned()
    }
}

/// Send `request` as it is (it should ask for `Connection: close`) and read
/// the whole response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> Reply {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("the response in time")
        .ok();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &str) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(stream, &request).await
}

async fn login(addr: SocketAddr, token: &str) -> Reply {
    let body = format!("token={}", token.replace('-', "%2D"));
    http(
        addr,
        "POST",
        "/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &body,
    )
    .await
}

type Ws = WebSocketStream<TcpStream>;

async fn websocket(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// The next text message as JSON (pongs and the like skipped).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket open")
            .expect("a message");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

async fn ask(ws: &mut Ws, request: Value) -> Value {
    ws.send(Message::text(request.to_string())).await.unwrap();
    next_json(ws).await
}

/// Whether the server closes the socket soon.
async fn closes(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_logout_ends_it() {
    let run = start(None).await;
    let front = http(run.addr, "GET", "/", "", "").await;
    assert_eq!(front.status, 303, "{}", front.head);
    assert_eq!(front.header("location"), "/login");

    let page = http(run.addr, "GET", "/login", "", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"token\""), "{}", page.body);
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(page.header("cache-control"), "no-store");

    let wrong = login(run.addr, "0123456789abcdef-wrong").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.headers("set-cookie").is_empty());
    assert!(wrong.body.contains("Wrong token") && wrong.body.contains("name=\"token\""));

    let right = login(run.addr, TOKEN).await;
    assert_eq!(right.status, 303, "{}", right.head);
    assert_eq!(right.header("location"), "/");
    let cookie = right.header("set-cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    let id = attributes[0]
        .strip_prefix("confgate_session=")
        .expect("the session cookie");
    assert!(
        id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&wanted), "{cookie}");
    }
    assert!(!attributes.contains(&"Secure"), "plain HTTP: {cookie}");

    let session = right.session();
    let room = http(run.addr, "GET", "/", &format!("Cookie: {session}\r\n"), "").await;
    assert_eq!(room.status, 200);
    assert!(room.body.contains("/room.js"), "{}", room.body);
    assert_eq!(room.header("cache-control"), "no-store");
    // Another login is another session.
    assert_ne!(login(run.addr, TOKEN).await.session(), session);

    let out = http(
        run.addr,
        "POST",
        "/logout",
        &format!("Cookie: {session}\r\n"),
        "",
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = http(run.addr, "GET", "/", &format!("Cookie: {session}\r\n"), "").await;
    assert_eq!(after.status, 303);
    let forged = http(
        run.addr,
        "GET",
        "/",
        "Cookie: confgate_session=00ff\r\n",
        "",
    )
    .await;
    assert_eq!(forged.status, 303);
}

#[tokio::test]
async fn wrong_tokens_are_throttled_per_source() {
    let run = start(None).await;
    for _ in 0..5 {
        assert_eq!(login(run.addr, "0123456789abcdef-nope").await.status, 401);
    }
    // Even the right token waits now.
    let locked = login(run.addr, TOKEN).await;
    assert_eq!(locked.status, 429);
    assert!(locked.headers("set-cookie").is_empty());
}

#[tokio::test]
async fn without_a_session_every_request_is_unauthorized_and_nothing_runs() {
    let run = start(None).await;
    for headers in [vec![], vec![("cookie", "confgate_session=deadbeef")]] {
        let mut ws = websocket(run.addr, "/ws", &headers)
            .await
            .expect("accepted");
        for (id, request) in [
            (json!(1), json!({"id": 1, "cmd": "kick", "call": "in-1"})),
            (
                json!("two"),
                json!({"id": "two", "cmd": "lock", "room": "sales"}),
            ),
            (json!(3), json!({"id": 3, "cmd": "rooms"})),
            (
                json!(4),
                json!({"id": 4, "cmd": "dial", "room": "sales", "to": "+1555"}),
            ),
            (json!(null), json!({"cmd": "status"})),
        ] {
            let reply = ask(&mut ws, request).await;
            assert_eq!(
                reply,
                json!({"id": id, "ok": false, "error": {"code": "unauthorized", "message": "log in first"}})
            );
        }
        ws.send(Message::text("not json")).await.unwrap();
        assert_eq!(next_json(&mut ws).await["error"]["code"], "unauthorized");
        ws.close(None).await.ok();
    }
    assert!(run.board.asked().is_empty(), "{:?}", run.board.asked());
    assert!(
        run.counters.errors().contains(&("unauthorized", 12)),
        "{:?}",
        run.counters.errors()
    );
}

#[tokio::test]
async fn with_a_session_the_socket_speaks_the_control_protocol() {
    let run = start(None).await;
    let session = login(run.addr, TOKEN).await.session();
    let mut ws = websocket(run.addr, "/ws", &[("cookie", &session)])
        .await
        .expect("accepted");
    let rooms = ask(&mut ws, json!({"id": 1, "cmd": "rooms"})).await;
    let expected: Value =
        serde_json::from_str(&ok_line(&json!(1), rooms_result(&run.board.rooms))).unwrap();
    assert_eq!(rooms, expected);
    let status = ask(&mut ws, json!({"id": 2, "cmd": "status"})).await;
    assert_eq!(status["result"]["version"], "test");
    let muted = ask(&mut ws, json!({"id": 3, "cmd": "mute", "call": "in-1"})).await;
    assert_eq!(muted, json!({"id": 3, "ok": true, "result": {}}));
    assert_eq!(
        run.board.asked(),
        vec!["control in-1 Mute(true)".to_owned()]
    );
    let bad = ask(&mut ws, json!({"id": 4, "cmd": "nope"})).await;
    assert_eq!(bad["error"]["code"], "unknown_command");

    // Subscribed: events arrive as messages of their own.
    let sub = ask(
        &mut ws,
        json!({"id": 5, "cmd": "subscribe", "events": ["room_locked"]}),
    )
    .await;
    assert_eq!(sub["ok"], true);
    run.board
        .events
        .send(Event::RoomLocked {
            room: "sales".into(),
        })
        .unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "room_locked", "room": "sales"})
    );

    // Binary is not a request; a ping gets its pong; the socket goes on.
    ws.send(Message::binary(b"{}".to_vec())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], "bad_json");
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(STEP, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"hi".to_vec().into()));
    assert_eq!(
        ask(&mut ws, json!({"id": 6, "cmd": "rooms"})).await["id"],
        6
    );
    assert!(run.counters.accepted() >= 1);
    assert_eq!(run.counters.open(), 1);
    ws.close(None).await.unwrap();
    assert!(closes(&mut ws).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run.counters.open(), 0);

    // A logout closes the sockets of its session.
    let mut ws = websocket(run.addr, "/ws", &[("cookie", &session)])
        .await
        .expect("accepted");
    assert_eq!(
        ask(&mut ws, json!({"id": 7, "cmd": "rooms"})).await["ok"],
        true
    );
    let out = http(
        run.addr,
        "POST",
        "/logout",
        &format!("Cookie: {session}\r\n"),
        "",
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(closes(&mut ws).await);
}

#[tokio::test]
async fn another_sites_page_may_not_open_a_socket() {
    let run = start(None).await;
    let session = login(run.addr, TOKEN).await.session();
    for path in ["/ws", "/join/ws"] {
        let refused = websocket(
            run.addr,
            path,
            &[("cookie", &session), ("origin", "http://evil.example")],
        )
        .await;
        match refused {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 403, "{path}"),
            other => panic!("{path}: {:?}", other.map(|_| ())),
        }
        let port = format!("http://127.0.0.1:{}", run.addr.port() + 1);
        let refused = websocket(run.addr, path, &[("origin", &port)]).await;
        assert!(
            matches!(refused, Err(WsError::Http(r)) if r.status() == 403),
            "{path}"
        );
        let ours = format!("http://{}", run.addr);
        websocket(run.addr, path, &[("cookie", &session), ("origin", &ours)])
            .await
            .expect("the page's own origin");
    }
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_malformed_requests() {
    let run = start(None).await;
    assert_eq!(http(run.addr, "GET", "/nope", "", "").await.status, 404);
    let delete = http(run.addr, "DELETE", "/", "", "").await;
    assert_eq!(delete.status, 405);
    assert_eq!(delete.header("allow"), "GET, HEAD");
    assert_eq!(http(run.addr, "PUT", "/login", "", "").await.status, 405);
    assert_eq!(http(run.addr, "GET", "/logout", "", "").await.status, 405);
    // Not a WebSocket handshake.
    assert_eq!(http(run.addr, "GET", "/ws", "", "").await.status, 400);
    let garbage = exchange(
        TcpStream::connect(run.addr).await.unwrap(),
        "NOT HTTP\r\n\r\n",
    )
    .await;
    assert_eq!(garbage.status, 400);
    let big = format!("token={}", "x".repeat(5000));
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    assert_eq!(
        http(run.addr, "POST", "/login", form, &big).await.status,
        413
    );
    let join = http(run.addr, "GET", "/join?room=alpha", "", "").await;
    assert_eq!(join.status, 200);
    assert!(join.body.contains("/join.js"));
    let script = http(run.addr, "GET", "/join.js", "", "").await;
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").starts_with("text/javascript"));
}

#[tokio::test]
async fn the_join_socket_admits_refuses_and_lets_go() {
    let run = start(None).await;
    let mut ws = websocket(run.addr, "/join/ws", &[])
        .await
        .expect("accepted");
    ws.send(Message::text("{\"join\":")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], "bad_json");
    let join = |pin: &str| json!({"join": {"room": "alpha", "pin": pin, "sdp": "v=0 offer"}});
    let wrong = ask(&mut ws, join("9999")).await;
    assert_eq!(
        wrong,
        json!({"error": {"code": "wrong_pin", "message": "wrong PIN"}})
    );
    // Still open: try again.
    let joined = ask(&mut ws, join("1234")).await;
    assert_eq!(
        joined,
        json!({"joined": {"call": "web-alpha-1", "sdp": "v=0 fake"}})
    );
    assert_eq!(
        ask(&mut ws, join("1234")).await["error"]["code"],
        "already_joined"
    );
    let member = run.joiner.take();
    assert!(member.ask_peer.ip().is_loopback());
    // Ended from our side: told why, then closed.
    member.end.send("kicked".into()).unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"ended": {"reason": "kicked"}})
    );
    assert!(closes(&mut ws).await);

    // The page goes: the member leaves.
    let mut ws = websocket(run.addr, "/join/ws", &[])
        .await
        .expect("accepted");
    assert!(ask(&mut ws, join("1234")).await.get("joined").is_some());
    let member = run.joiner.take();
    ws.close(None).await.unwrap();
    tokio::time::timeout(STEP, member.leave)
        .await
        .expect("left in time")
        .ok();
    // Dropped without a close frame: the same.
    let mut ws = websocket(run.addr, "/join/ws", &[])
        .await
        .expect("accepted");
    assert!(ask(&mut ws, join("1234")).await.get("joined").is_some());
    let member = run.joiner.take();
    drop(ws);
    tokio::time::timeout(STEP, member.leave)
        .await
        .expect("left in time")
        .ok();
}

#[tokio::test]
async fn https_serves_the_login_page_and_a_secure_cookie() {
    let dir = std::env::temp_dir().join(format!("confgate-web-pki-{}", std::process::id()));
    let pki = common::certs::make(&dir, "web");
    let read = |path: &std::path::Path| PemFile {
        path: path.to_owned(),
        pem: std::fs::read(path).unwrap(),
    };
    let run = start(Some((read(&pki.cert), read(&pki.key)))).await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = run.addr;
    let tls = |connector: tokio_rustls::TlsConnector| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.expect("TLS handshake")
    };
    let page = exchange(
        tls(connector.clone()).await,
        &format!(
            "GET /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            run.addr
        ),
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"token\""));
    let body = format!("token={TOKEN}");
    let right = exchange(
        tls(connector.clone()).await,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            run.addr,
            body.len()
        ),
    )
    .await;
    assert_eq!(right.status, 303);
    assert!(
        right.header("set-cookie").ends_with("; Secure"),
        "{}",
        right.head
    );
    // Plain HTTP to the HTTPS port gets nowhere.
    let plain = http(run.addr, "GET", "/login", "", "").await;
    assert_ne!(plain.status, 200);
}

/// One request line on the daemon's control socket, its response.
async fn control_line(stream: &mut BufReader<UnixStream>, request: &str) -> Value {
    stream
        .get_mut()
        .write_all(format!("{request}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(STEP, stream.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn the_daemon_serves_the_web_next_to_its_control_socket() {
    let token = format!("control.token={TOKEN}");
    let daemon = common::daemon(&["web.listen=127.0.0.1:0", &token]).await;
    let addr = daemon.web_addr().expect("web on");
    let socket = daemon
        .control_endpoints()
        .0
        .expect("unix socket")
        .to_owned();
    let mut control = BufReader::new(UnixStream::connect(&socket).await.unwrap());
    let session = login(addr, TOKEN).await.session();
    let mut ws = websocket(addr, "/ws", &[("cookie", &session)])
        .await
        .unwrap();

    let request = r#"{"id":7,"cmd":"rooms"}"#;
    let on_socket = control_line(&mut control, request).await;
    let on_web = ask(&mut ws, serde_json::from_str(request).unwrap()).await;
    assert_eq!(on_web, on_socket);
    let request = r#"{"id":8,"cmd":"status"}"#;
    let mut on_socket = control_line(&mut control, request).await;
    let mut on_web = ask(&mut ws, serde_json::from_str(request).unwrap()).await;
    for v in [&mut on_socket, &mut on_web] {
        v["result"]["uptime_secs"] = json!(0);
    }
    assert_eq!(on_web, on_socket);

    // Events stream to the page: a reload from the control socket.
    let sub = ask(
        &mut ws,
        json!({"id": 9, "cmd": "subscribe", "events": ["config_reloaded"]}),
    )
    .await;
    assert_eq!(sub["ok"], true);
    let reloaded = control_line(&mut control, r#"{"id":10,"cmd":"reload"}"#).await;
    assert_eq!(reloaded["ok"], true, "{reloaded}");
    assert_eq!(next_json(&mut ws).await["event"], "config_reloaded");

    // The daemon's joiner checks the PIN, then the offer: a PIN of another
    // room is wrong, and the right one with an offer that is not SDP is
    // refused as such.
    let mut join = websocket(addr, "/join/ws", &[]).await.unwrap();
    let refused = ask(
        &mut join,
        json!({"join": {"room": "alpha", "pin": "1234", "sdp": "v=0"}}),
    )
    .await;
    assert_eq!(refused["error"]["code"], "wrong_pin", "{refused}");
    let refused = ask(
        &mut join,
        json!({"join": {"room": "1234", "pin": "1234", "sdp": "v=0"}}),
    )
    .await;
    assert_eq!(refused["error"]["code"], "bad_offer", "{refused}");
    drop((ws, join, control));
    daemon.shutdown().await;
}
