//! The Prometheus endpoint: what a scrape returns, what `promtool` makes
//! of it, and a real Prometheus (Debian's `prometheus`) scraping a daemon
//! while a baresip phone keys its PIN and joins a room.

#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::baresip::{free_port, Baresip};
use common::daemon;
use common::signal::{sine, temp_dir, write_wav};
use confgate::events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.0 exchange (no chunking, the server closes): status and body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(addr, &format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")).await
}

/// The value of the sample `series` (name and labels, as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run scripts/setup --test");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_metrics_and_refuses_the_rest() {
    let d = daemon(&["metrics.listen=127.0.0.1:0"]).await;
    let addr = d.metrics_addr().expect("metrics listening");

    let (status, head, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    // Known series start at 0, before any call.
    for series in [
        "confgate_members",
        "confgate_rooms",
        "confgate_calls_started_total{direction=\"inbound\"}",
        "confgate_calls{direction=\"inbound\",state=\"in_room\"}",
        "confgate_pin_attempts_total{result=\"wrong\"}",
        "confgate_dtmf_digits_total{source=\"inband\"}",
        "confgate_rtp_packets_foreign_total{reason=\"probation\"}",
        "confgate_admission_refusals_total{reason=\"full\"}",
        "confgate_mixer_late_ticks_total",
    ] {
        assert_eq!(sample(&body, series), Some(0.0), "{series} in\n{body}");
    }
    let (ok, said) = promtool_check(&body);
    assert!(ok, "promtool check metrics: {said}");

    let (status, ..) = get(addr, "/").await;
    assert_eq!(status, 404);
    let (status, head, _) = http(addr, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status, 405, "{head}");
    assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
    let (status, ..) = http(addr, "\u{1}\u{2} nonsense\r\n\r\n").await;
    assert_eq!(status, 400, "a request that is not HTTP");
    // The endpoint still answers after all that.
    assert_eq!(get(addr, "/metrics").await.0, 200);
    d.shutdown().await;
}

#[test]
fn a_metrics_address_that_is_not_one_is_named() {
    let err = confgate::config::Config::load(None, &["metrics.listen=localhost".to_owned()])
        .expect_err("not IP:PORT");
    assert!(err.to_string().starts_with("metrics.listen:"), "{err}");
}

/// A Prometheus server of its own, scraping `target` every second.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    async fn start(target: SocketAddr) -> Prometheus {
        let dir = temp_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: confgate\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is not installed: run scripts/setup --test");
        let p = Prometheus { child, addr };
        let by = Instant::now() + Duration::from_secs(30);
        while Instant::now() < by {
            if TcpStream::connect(addr).await.is_ok() && get(addr, "/-/ready").await.0 == 200 {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("prometheus not ready in 30 s (log in {})", dir.display());
    }

    /// The value of an instant query's first result, if it has one.
    async fn query(&self, expr: &str) -> Option<f64> {
        let q: String = expr
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = get(self.addr, &format!("/api/v1/query?query={q}")).await;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Wait until `expr` reads a value `want` accepts; the last value read.
    async fn wait_for(&self, expr: &str, want: impl Fn(f64) -> bool) -> Option<f64> {
        let by = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        while Instant::now() < by {
            last = self.query(expr).await;
            if last.is_some_and(&want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_call_joining_a_room() {
    let d = daemon(&["metrics.listen=127.0.0.1:0"]).await;
    let target = d.metrics_addr().expect("metrics listening");
    let prometheus = Prometheus::start(target).await;
    assert_eq!(
        prometheus
            .wait_for("up{job=\"confgate\"}", |v| v == 1.0)
            .await,
        Some(1.0),
        "prometheus scrapes confgate"
    );
    assert_eq!(prometheus.query("confgate_members").await, Some(0.0));

    let mut events = d.subscribe();
    let dir = temp_dir("metrics");
    let mic = dir.join("tone.wav");
    write_wav(&mic, &sine(8000, 700.0, 4000.0, 8000 * 40));
    let mut phone = Baresip::start("metrics", &mic, false).await;
    phone
        .dial_answered(&format!("sip:4000@{}", d.sip_addr()))
        .await;
    phone.command("sndcode", "2468#").await;
    let joined = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(Event::MemberJoined { room, .. }) = events.recv().await {
                return room;
            }
        }
    })
    .await;
    assert_eq!(joined.ok().as_deref(), Some("2468"), "the phone joined");

    assert_eq!(
        prometheus.wait_for("confgate_members", |v| v == 1.0).await,
        Some(1.0),
        "prometheus reads one member"
    );
    let q = |e: &'static str| prometheus.query(e);
    assert_eq!(
        q("confgate_calls_started_total{direction=\"inbound\"}").await,
        Some(1.0)
    );
    // Seated in the room (members) a moment before the call hears so.
    assert_eq!(
        prometheus
            .wait_for(
                "confgate_calls{direction=\"inbound\",state=\"in_room\"}",
                |v| v == 1.0
            )
            .await,
        Some(1.0)
    );
    assert_eq!(q("confgate_rooms").await, Some(1.0));
    assert_eq!(
        q("confgate_pin_attempts_total{result=\"accepted\"}").await,
        Some(1.0)
    );
    assert_eq!(
        q("confgate_call_setup_total{status=\"200\"}").await,
        Some(1.0)
    );
    assert_eq!(
        q("sum(confgate_dtmf_digits_total)").await,
        Some(5.0),
        "four digits and #"
    );
    assert!(
        prometheus
            .wait_for("confgate_rtp_packets_received_total", |v| v > 50.0)
            .await
            .is_some_and(|v| v > 50.0),
        "the phone's RTP is counted"
    );

    // Our own scrape, as promtool lints it, with the call in the room.
    let (status, _, body) = get(target, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        sample(&body, "confgate_mixer_tick_duration_seconds_count").is_some_and(|n| n > 50.0),
        "the media thread's ticks are timed:\n{body}"
    );
    let (ok, said) = promtool_check(&body);
    assert!(ok, "promtool check metrics: {said}");

    phone.quit().await;
    assert_eq!(
        prometheus.wait_for("confgate_members", |v| v == 0.0).await,
        Some(0.0),
        "the member left"
    );
    assert_eq!(
        prometheus
            .wait_for(
                "sum(confgate_calls_ended_total{direction=\"inbound\"})",
                |v| v == 1.0
            )
            .await,
        Some(1.0)
    );
    assert_eq!(
        prometheus
            .wait_for("sum(confgate_calls{direction=\"inbound\"})", |v| v == 0.0)
            .await,
        Some(0.0)
    );
    drop(prometheus);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_bad_offers_and_control_errors_are_counted() {
    use common::raw::RawPhone;
    use common::{offer, rtp_socket};
    let wait = Duration::from_secs(5);
    let d = daemon(&["metrics.listen=127.0.0.1:0", "sip.allow=[\"127.0.0.2\"]"]).await;
    let addr = d.metrics_addr().expect("metrics listening");
    let rtp = rtp_socket().await;

    let mut stranger = RawPhone::new(d.sip_addr(), "metrics-403").await;
    stranger
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = stranger.until_final("INVITE", wait).await;
    assert_eq!(seen.last().map(|r| r.code), Some(403), "{seen:#?}");

    let mut trunk = RawPhone::new(d.sip_addr(), "metrics-488").await;
    trunk.sock = tokio::net::UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind");
    // G.729 only: nothing confgate speaks.
    trunk
        .invite(&offer(rtp.local_addr().unwrap(), "18", ""))
        .await;
    let seen = trunk.until_final("INVITE", wait).await;
    assert_eq!(seen.last().map(|r| r.code), Some(488), "{seen:#?}");

    let (path, _) = d.control_endpoints();
    let mut control = tokio::net::UnixStream::connect(path.expect("a control socket"))
        .await
        .expect("connect");
    control.write_all(b"{not json\n").await.expect("write");
    let mut reply = vec![0; 512];
    let n = control.read(&mut reply).await.expect("an error line");
    assert!(String::from_utf8_lossy(&reply[..n]).contains("bad_json"));

    let (_, _, body) = get(addr, "/metrics").await;
    for (series, want) in [
        (
            "confgate_admission_refusals_total{reason=\"not_allowed\"}",
            1.0,
        ),
        ("confgate_call_setup_total{status=\"488\"}", 1.0),
        ("confgate_control_errors_total{code=\"bad_json\"}", 1.0),
        ("confgate_control_connections", 1.0),
        ("confgate_control_connections_accepted_total", 1.0),
    ] {
        assert_eq!(sample(&body, series), Some(want), "{series} in\n{body}");
    }
    drop(control);
    d.shutdown().await;
}
