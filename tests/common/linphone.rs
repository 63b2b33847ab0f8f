//! Linphone (Debian's `linphone-cli`, liblinphone on belle-sip) as a second
//! headless test phone: `linphonec` reads its commands from standard input,
//! plays a WAV file as its microphone and prints call progress on standard
//! output. Its SIP stack paces things differently from baresip's, which is
//! why it is here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How the phone sends key presses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtmf {
    /// RFC 4733 telephone-events in the RTP stream.
    Rfc4733,
    /// SIP INFO requests with `application/dtmf-relay` bodies.
    Info,
}

pub struct Linphone {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    pub dir: PathBuf,
}

/// A loopback UDP port nobody holds, with room for liblinphone's neighbours.
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

impl Linphone {
    /// Start a phone whose microphone is `mic` (16-bit mono WAV).
    pub async fn start(name: &str, mic: &Path, dtmf: Dtmf) -> Linphone {
        assert!(
            std::process::Command::new("linphonec")
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "linphonec is not installed: run scripts/setup --test"
        );
        let dir =
            std::env::temp_dir().join(format!("confgate-linphone-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(dir.join("home")).expect("linphone dir");
        let sip_port = free_udp_port();
        let rtp_base = 52000 + (sip_port % 100) * 20;
        let (rfc2833, info) = match dtmf {
            Dtmf::Rfc4733 => (1, 0),
            Dtmf::Info => (0, 1),
        };
        // Loopback only; without the [rtp] bind address liblinphone puts the
        // default route's address in its SDP.
        let rc = format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\ndefault_proxy=-1\n\
             use_ipv6=0\nbind_address=127.0.0.1\ncontact=\"{name}\" <sip:{name}@127.0.0.1>\n\
             use_rfc2833={rfc2833}\nuse_info={info}\n\
             [rtp]\nbind_address=127.0.0.1\naudio_rtp_port={rtp_base}-{rtp_end}\n\
             video_rtp_port={vbase}-{vend}\n\
             [video]\ncapture=0\ndisplay=0\nenabled=0\n\
             [sound]\nechocancellation=0\n",
            rtp_end = rtp_base + 9,
            vbase = rtp_base + 10,
            vend = rtp_base + 19,
        );
        // linphonec rewrites its rc file: each run gets a fresh one.
        let rc_path = dir.join("linphonerc");
        std::fs::write(&rc_path, rc).expect("linphonerc");
        // stdbuf: linphonec writes through stdio, block-buffered into a pipe.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("linphonec")
            .arg("-c")
            .arg(&rc_path)
            .env("HOME", dir.join("home"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("linphonec starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let log = dir.join("stdout.log");
        tokio::spawn(async move {
            let mut copy = Vec::new();
            let mut out = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                copy.extend_from_slice(line.as_bytes());
                copy.push(b'\n');
                std::fs::write(&log, &copy).ok();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut phone = Linphone {
            child,
            stdin,
            lines,
            dir,
        };
        // Without IPv6 off the SDP may carry the machine's IPv6 address. It
        // reads commands only once it is up (a second or two); ask until it answers.
        let mut answered = false;
        for _ in 0..10 {
            phone.command("ipv6 disable").await;
            if phone
                .wait_for("ipv6 use disabled", Duration::from_secs(1))
                .await
            {
                answered = true;
                break;
            }
        }
        assert!(answered, "linphonec did not take commands");
        // Its SIP socket comes with the first turn of its main loop.
        let mut bound = false;
        for _ in 0..50 {
            if std::net::UdpSocket::bind(("127.0.0.1", sip_port)).is_err() {
                bound = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(bound, "linphonec never bound 127.0.0.1:{sip_port}");
        phone.command("soundcard use files").await;
        phone.command(&format!("play {}", mic.display())).await;
        phone.command("record heard.wav").await;
        phone
    }

    /// One line of input: a command, or a line of digits to key.
    pub async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("linphonec stdin");
        self.stdin.flush().await.expect("linphonec stdin");
    }

    /// Waits up to `wait` for an output line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str, wait: Duration) -> bool {
        tokio::time::timeout(wait, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// Dials `uri` and waits until the call is connected.
    pub async fn call(&mut self, uri: &str, wait: Duration) -> bool {
        self.command(&format!("call {uri}")).await;
        self.wait_for(" connected.", wait).await
    }

    /// Hangs up, quits and waits for the process (killed if it lingers).
    pub async fn quit(mut self) -> PathBuf {
        self.command("terminate").await;
        self.command("quit").await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await.ok();
        }
        self.dir.clone()
    }
}
