//! Test phones and a daemon on loopback, shared by the integration tests.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // tests run in real time

pub mod baresip;
pub mod callee;
pub mod certs;
pub mod chromium;
pub mod kamailio;
pub mod keypad;
pub mod linphone;
pub mod netns;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod signal;
pub mod uac;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use confgate::config::{Config, Settings};
use confgate::daemon::Daemon;
use confgate::media::codec::Codec;
use confgate::rtp::packet;
use tokio::net::UdpSocket;

/// Prompts rendered once per checkout and shared by every test.
pub fn prompts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prompts")
}

/// A control socket path of its own for each daemon a test process starts.
pub fn control_socket() -> PathBuf {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("confgate-test-{}-{n}.sock", std::process::id()))
}

/// `confgate run` as a child process on SIP address `sip`, with the test
/// defaults and `extra` (`KEY=VALUE` overrides) on top of whatever `cmd`
/// already has (a `--config`, environment); returns once its control
/// socket is there.
pub async fn spawn_daemon(
    mut cmd: std::process::Command,
    sip: &str,
    extra: &[&str],
) -> (std::process::Child, PathBuf) {
    use std::process::Stdio;
    let socket = control_socket();
    let sets = [
        format!("sip.listen={sip}"),
        format!("rtp.port_range={}", rtp_range()),
        format!("prompts.dir={}", prompts_dir().display()),
        "sip.early_media_ms=300".to_owned(),
        format!("control.socket={}", socket.display()),
    ];
    for set in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        cmd.args(["--set", set]);
    }
    let child = cmd
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("confgate runs");
    let by = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(Instant::now() < by, "the control socket did not appear");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, socket)
}

/// A disjoint RTP port range for each daemon a test process starts.
pub fn rtp_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 30000 + (std::process::id() % 200) as u16 * 100 + slot * 20;
    format!("{base}-{}", base + 19)
}

/// Settings for a loopback daemon on an ephemeral SIP port.
pub fn settings(extra: &[&str]) -> Settings {
    let mut ov = vec![
        "sip.listen=127.0.0.1:0".to_owned(),
        format!("rtp.port_range={}", rtp_range()),
        format!("prompts.dir={}", prompts_dir().display()),
        "sip.early_media_ms=300".to_owned(),
        format!("control.socket={}", control_socket().display()),
    ];
    ov.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, &ov).expect("test settings")
}

pub async fn daemon(extra: &[&str]) -> Daemon {
    Daemon::start(settings(extra)).await.expect("daemon starts")
}

/// The welcome prompt as the daemon plays it.
pub fn welcome_prompt() -> Vec<i16> {
    prompt("welcome")
}

/// A rendered prompt as the daemon plays it.
pub fn prompt(name: &str) -> Vec<i16> {
    let mut r =
        hound::WavReader::open(prompts_dir().join(format!("{name}.wav"))).expect("prompt wav");
    assert_eq!(r.spec().sample_rate, 8000);
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// `samples` after a G.711 round trip: what a listener decodes at best.
pub fn through_g711(codec: Codec, samples: &[i16]) -> Vec<i16> {
    let mut enc = vec![0u8; samples.len()];
    let mut dec = vec![0i16; samples.len()];
    let law = codec.g711().expect("a G.711 codec");
    law.encode(samples, &mut enc);
    law.decode(&enc, &mut dec);
    dec
}

/// One RTP packet as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub pt: u8,
    pub pcm: Vec<i16>,
}

/// Collect RTP on `sock` until `quiet` passes without a packet or `max` elapses.
pub async fn collect_rtp(
    sock: &UdpSocket,
    codec: Codec,
    quiet: Duration,
    max: Duration,
) -> Vec<Received> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + max;
    while Instant::now() < end {
        let Ok(Ok((n, _))) = tokio::time::timeout(quiet, sock.recv_from(&mut buf)).await else {
            break;
        };
        let Ok(p) = packet::parse(&buf[..n]) else {
            continue;
        };
        let mut pcm = vec![0i16; p.payload.len()];
        codec
            .g711()
            .expect("a G.711 codec")
            .decode(p.payload, &mut pcm);
        out.push(Received {
            at: Instant::now(),
            seq: p.seq,
            timestamp: p.timestamp,
            marker: p.marker,
            pt: p.pt,
            pcm,
        });
    }
    out
}

/// Index of the packet that starts `prompt` (first frame with sound), if any.
pub fn find_prompt_start(packets: &[Received], expected: &[i16]) -> Option<(usize, usize)> {
    let first_frame = expected
        .chunks(160)
        .position(|f| f.iter().any(|&s| s.abs() > 64))?;
    let frame = &expected[first_frame * 160..(first_frame + 1) * 160];
    packets
        .iter()
        .position(|p| p.pcm == frame)
        .map(|i| (i, first_frame))
}

/// An SDP offer for a phone whose RTP socket is `rtp`.
pub fn offer(rtp: SocketAddr, formats: &str, extra: &str) -> String {
    let mut rtpmap = String::new();
    for f in formats.split(' ') {
        match f {
            "0" => rtpmap.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            "8" => rtpmap.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "18" => rtpmap.push_str("a=rtpmap:18 G729/8000\r\n"),
            "101" => rtpmap.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"),
            _ => {}
        }
    }
    format!(
        "v=0\r\no=phone 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n{rtpmap}a=ptime:20\r\n{extra}",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

pub async fn rtp_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("rtp socket")
}

/// Where an SDP body says to send RTP (its c= address and audio port).
pub fn sdp_rtp_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

/// The next event that `pick` accepts within `wait`.
pub async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<confgate::events::Event>,
    wait: std::time::Duration,
    mut pick: impl FnMut(confgate::events::Event) -> Option<T>,
) -> Option<T> {
    use tokio::sync::broadcast::error::RecvError;
    tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .ok()
}

/// Digit events, with their sources, until the call joins a room (or `wait`
/// passes); and the room.
pub async fn digits_until_join(
    events: &mut tokio::sync::broadcast::Receiver<confgate::events::Event>,
    wait: Duration,
) -> (Vec<(char, confgate::dtmf::Source)>, Option<String>) {
    use confgate::events::Event;
    let mut digits = Vec::new();
    let room = next_event(events, wait, |e| match e {
        Event::Digit { digit, source, .. } => {
            digits.push((digit, source));
            None
        }
        Event::MemberJoined { room, .. } => Some(room),
        _ => None,
    })
    .await;
    (digits, room)
}

/// `digits`, each from `source`.
pub fn sourced(
    digits: &str,
    source: confgate::dtmf::Source,
) -> Vec<(char, confgate::dtmf::Source)> {
    digits.chars().map(|d| (d, source)).collect()
}

/// The next event `pick` accepts; fails the test after 20 s.
pub async fn expect_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<confgate::events::Event>,
    pick: impl Fn(&confgate::events::Event) -> Option<T>,
) -> T {
    next_event(events, std::time::Duration::from_secs(20), |e| pick(&e))
        .await
        .expect("the event within 20 s")
}

/// Run the `confgate` CLI against the control socket: its exit code and
/// what it printed (stdout, then stderr).
pub fn cli(socket: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("confgate CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `confgate rooms --json` against the daemon's control socket, parsed.
pub fn rooms_json(d: &Daemon) -> serde_json::Value {
    let socket = d
        .control_endpoints()
        .0
        .expect("a control socket")
        .to_owned();
    let (code, out) = cli(&socket, &["rooms", "--json"]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rooms JSON: {e}: {out}"))
}

/// The one room the switchboard doubles list: "sales", with one member.
pub fn sales_room() -> confgate::conference::RoomStatus {
    use confgate::conference::{MemberStatus, RoomStatus};
    RoomStatus {
        room: "sales".into(),
        locked: false,
        members: vec![MemberStatus {
            call: "in-1".into(),
            sip_call_id: "in-1@pbx".into(),
            direction: confgate::events::Direction::Inbound,
            from: "alice".into(),
            to: "100".into(),
            moderator: false,
            codec: Codec::Pcmu,
            talking: true,
            muted: false,
            deaf: false,
            held: false,
            listen_db: 0,
            talk_db: 0,
            lost: 2,
            late: 1,
            jitter_ms: 1.5,
            quality: Default::default(),
        }],
    }
}
