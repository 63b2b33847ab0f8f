//! baresip (Debian's `baresip-core`) as a headless test phone: a WAV file is
//! its microphone, what it hears is recorded, and it is driven over its
//! `ctrl_tcp` socket (netstring-framed JSON).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    pub dir: PathBuf,
    pub sip: SocketAddr,
    token: u32,
    /// Events read while waiting for a command's reply, oldest first.
    events: std::collections::VecDeque<String>,
}

/// A free loopback port (TCP and UDP), found by binding port 0.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An even port whose neighbour is free too, for UDP and TCP (baresip binds
/// SIP on both and TLS on port + 1). bind(0) hands out odd ports, so probe.
fn free_pair() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let p = 21000
            + (std::process::id() % 500) as u16 * 16
            + NEXT.fetch_add(2, Ordering::Relaxed) % 16;
        let free = |port: u16| {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        };
        if free(p) && free(p + 1) {
            return p;
        }
    }
}

/// How a phone is set up beyond the defaults (G.711, plain RTP over UDP).
#[derive(Debug, Clone)]
pub struct Options {
    /// The account's `audio_codecs`, most preferred first.
    pub codecs: String,
    /// Modules loaded beside g711 (`g722.so`, `opus.so`, `srtp.so`, ...).
    pub modules: Vec<&'static str>,
    /// The sample rate of the phone's microphone and speaker.
    pub srate: u32,
    /// More account parameters (`;mediaenc=srtp-mandf`, ...).
    pub account: String,
    /// More config lines.
    pub config: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            codecs: "PCMU,PCMA".into(),
            modules: Vec::new(),
            srate: 8000,
            account: String::new(),
            config: String::new(),
        }
    }
}

impl Baresip {
    /// Start a phone whose microphone is `source_wav` (8 kHz mono 16-bit).
    /// `auto_answer` makes it answer incoming calls by itself.
    pub async fn start(name: &str, source_wav: &Path, auto_answer: bool) -> Baresip {
        Baresip::start_with(name, source_wav, auto_answer, &Options::default()).await
    }

    /// Start a phone set up by `opts`.
    pub async fn start_with(
        name: &str,
        source_wav: &Path,
        auto_answer: bool,
        opts: &Options,
    ) -> Baresip {
        assert!(
            Command::new("baresip")
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "baresip is not installed: run scripts/setup --test"
        );
        let dir =
            std::env::temp_dir().join(format!("confgate-baresip-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(dir.join("rec")).expect("baresip dir");
        // baresip also binds TCP on the SIP port and TLS on port + 1.
        let sip_port = free_pair();
        let ctrl_port = free_port();
        let rtp_base = 50000 + (sip_port % 100) * 50;
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             call_local_timeout 120\n\
             call_max_calls 4\n\
             audio_path /usr/share/baresip\n\
             audio_source aufile,{src}\n\
             audio_player aubridge,sink_{sip_port}\n\
             audio_alert aubridge,alert_{sip_port}\n\
             ausrc_srate {srate}\nauplay_srate {srate}\nausrc_channels 1\nauplay_channels 1\n\
             ausrc_format s16\nauplay_format s16\nauenc_format s16\naudec_format s16\n\
             audio_buffer 20-160\n\
             rtp_ports {rtp_base}-{rtp_end}\n\
             rtcp_mux no\n\
             jitter_buffer_delay 5-10\n\
             net_interface 127.0.0.1\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n{modules}module aufile.so\nmodule aubridge.so\nmodule sndfile.so\n\
             module_tmp uuid.so\nmodule_tmp account.so\n\
             module_app menu.so\nmodule_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
             snd_path {rec}\n\
             ringback_disabled yes\n\
             statmode_default off\n{extra}",
            src = source_wav.display(),
            srate = opts.srate,
            modules = opts
                .modules
                .iter()
                .map(|m| format!("module {m}\n"))
                .collect::<String>(),
            extra = opts.config,
            rtp_end = rtp_base + 49,
            rec = dir.join("rec").display(),
        );
        std::fs::write(dir.join("config"), config).expect("config");
        let answer = if auto_answer { "auto" } else { "manual" };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@127.0.0.1:{sip_port}>;regint=0;audio_codecs={};answermode={answer}{}\n",
                opts.codecs, opts.account
            ),
        )
        .expect("accounts");
        std::fs::write(dir.join("contacts"), "").expect("contacts");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            match TcpStream::connect(("127.0.0.1", ctrl_port)).await {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("baresip ctrl_tcp never listened: {e}"),
            }
        };
        Baresip {
            child,
            ctrl,
            dir,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            token: 0,
            events: Default::default(),
        }
    }

    /// Send a menu command (`dial`, `hangup`, `sndcode`, `quit`, ...); returns the reply JSON text.
    pub async fn command(&mut self, command: &str, params: &str) -> String {
        self.token += 1;
        let msg = format!(
            "{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"{}\"}}",
            self.token
        );
        let frame = format!("{}:{msg},", msg.len());
        self.ctrl
            .write_all(frame.as_bytes())
            .await
            .expect("ctrl write");
        let want = format!("\"token\":\"{}\"", self.token);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), self.read_netstring()).await {
                Ok(Some(m)) if m.contains("\"response\":true") && m.contains(&want) => return m,
                Ok(Some(m)) if m.contains("\"event\":true") => self.events.push_back(m),
                Ok(Some(_)) => continue, // an older reply
                _ => break,
            }
        }
        String::new()
    }

    /// Dials `uri` and waits (up to 10 s) until the call is established.
    pub async fn dial_answered(&mut self, uri: &str) {
        let reply = self.command("dial", uri).await;
        assert!(reply.contains("\"ok\":true"), "dial: {reply}");
        let answered = self
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .await;
        assert!(answered, "{uri} did not answer");
    }

    /// Dials room number 4000 at `daemon`, waits `before_keys`, keys `keys`
    /// and waits (10 s) for the `member_joined` event: the room joined, if
    /// any, and the source of every digit the daemon reported meanwhile.
    pub async fn join_room(
        &mut self,
        daemon: SocketAddr,
        keys: &str,
        before_keys: Duration,
        events: &mut tokio::sync::broadcast::Receiver<confgate::events::Event>,
    ) -> (Option<String>, Vec<confgate::dtmf::Source>) {
        use confgate::events::Event;
        self.dial_answered(&format!("sip:4000@{daemon}")).await;
        tokio::time::sleep(before_keys).await;
        self.command("sndcode", keys).await;
        let mut sources = Vec::new();
        let joined = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(Event::MemberJoined { room, .. }) => return room,
                    Ok(Event::Digit { source, .. }) => sources.push(source),
                    _ => {}
                }
            }
        })
        .await;
        (joined.ok(), sources)
    }

    /// Waits up to `wait` for an event of `kind` (`CALL_ESTABLISHED`,
    /// `CALL_CLOSED`, ...), seen since the last wait or arriving now.
    pub async fn wait_event(&mut self, kind: &str, wait: Duration) -> bool {
        self.wait_event_where(kind, wait, |_| true).await.is_some()
    }

    /// The first event of `kind` that `pick` accepts within `wait`, as JSON;
    /// events looked at and not accepted are gone.
    pub async fn wait_event_where(
        &mut self,
        kind: &str,
        wait: Duration,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let wanted = |m: &str| {
            let v: serde_json::Value = serde_json::from_str(m).ok()?;
            (v["event"] == true && v["type"] == kind && pick(&v)).then_some(v)
        };
        while let Some(e) = self.events.pop_front() {
            if let Some(v) = wanted(&e) {
                return Some(v);
            }
        }
        tokio::time::timeout(wait, async {
            while let Some(m) = self.read_netstring().await {
                if let Some(v) = wanted(&m) {
                    return Some(v);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Samples of what the phone heard recorded so far (8 kHz mono 16-bit).
    pub fn recorded(&self) -> usize {
        Baresip::heard(&self.dir)
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| (m.len() as usize).saturating_sub(44) / 2)
    }

    /// Waits, up to `wait`, until the phone has recorded `samples` in all:
    /// on a loaded machine real time and the phone's time part.
    pub async fn wait_recorded(&self, samples: usize, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while self.recorded() < samples {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    async fn read_netstring(&mut self) -> Option<String> {
        let mut len = Vec::new();
        loop {
            let b = self.ctrl.read_u8().await.ok()?;
            if b == b':' {
                break;
            }
            len.push(b);
        }
        let n: usize = std::str::from_utf8(&len).ok()?.parse().ok()?;
        let mut body = vec![0u8; n + 1];
        self.ctrl.read_exact(&mut body).await.ok()?;
        body.pop();
        String::from_utf8(body).ok()
    }

    /// Quit and wait for the process; kill it if it lingers.
    pub async fn quit(mut self) -> PathBuf {
        self.command("hangup", "").await;
        self.command("quit", "").await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.dir.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child.kill().ok();
        self.child.wait().ok();
        self.dir.clone()
    }

    /// The recording of what this phone heard (`dump-*-dec.wav`).
    pub fn heard(dir: &Path) -> Option<PathBuf> {
        std::fs::read_dir(dir.join("rec"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-dec.wav"))
            })
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
