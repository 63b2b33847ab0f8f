//! Kamailio (Debian's `kamailio`) with contrib/kamailio/kamailio.cfg in front
//! of test nodes: run in the foreground with its own runtime directory, a
//! dispatcher list the test writes, and a free UDP port on 127.0.0.1.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confgate::daemon::Daemon;
use confgate::events::Event;
use tokio::sync::mpsc;

use super::baresip::Baresip;

pub struct Kamailio {
    child: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

/// The contrib configuration the tests run.
pub fn config_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/kamailio/kamailio.cfg")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

impl Kamailio {
    /// Start Kamailio dispatching to `nodes` (dispatcher set 1), probing
    /// every `probe_interval` seconds, giving a node `fr_timer_ms` to answer.
    pub async fn start(
        name: &str,
        nodes: &[SocketAddr],
        probe_interval: u32,
        fr_timer_ms: u32,
    ) -> Kamailio {
        assert!(
            Command::new("kamailio")
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "kamailio is not installed: run scripts/setup --test"
        );
        let dir =
            std::env::temp_dir().join(format!("confgate-kamailio-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("kamailio dir");
        let list: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        let list_path = dir.join("dispatcher.list");
        std::fs::write(&list_path, list).expect("dispatcher list");
        // The port was free a moment ago; if another process took it
        // meanwhile, Kamailio exits and gets another.
        let mut tries = 0;
        loop {
            tries += 1;
            let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
            let log = std::fs::File::create(dir.join("kamailio.log")).expect("log");
            let child = Command::new("kamailio")
                .args(Kamailio::args(&dir, addr, probe_interval, fr_timer_ms))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                // Its own process group: Drop stops it and every child it forked.
                .process_group(0)
                .spawn()
                .expect("kamailio starts");
            let mut k = Kamailio {
                child,
                dir: dir.clone(),
                addr,
            };
            match k.wait_listening().await {
                Ok(()) => return k,
                Err(e) if tries < 3 && e.contains("exited") => continue,
                Err(e) => panic!("{e}:\n{}", k.log()),
            }
        }
    }

    /// The command line (after `kamailio`).
    pub fn args(
        dir: &std::path::Path,
        addr: SocketAddr,
        probe_interval: u32,
        fr_timer_ms: u32,
    ) -> Vec<String> {
        vec![
            "-f".into(),
            config_path().display().to_string(),
            "-DD".into(),
            "-E".into(),
            "-Y".into(),
            dir.display().to_string(),
            "-P".into(),
            dir.join("kamailio.pid").display().to_string(),
            "-w".into(),
            dir.display().to_string(),
            "-m".into(),
            "32".into(),
            "-M".into(),
            "8".into(),
            "-n".into(),
            "1".into(),
            "-A".into(),
            format!("LISTEN=udp:{addr}"),
            "-A".into(),
            format!("DSLIST=\"{}\"", dir.join("dispatcher.list").display()),
            "-A".into(),
            format!("PROBE_INTERVAL={probe_interval}"),
            "-A".into(),
            format!("FR_TIMER={fr_timer_ms}"),
        ]
    }

    /// Until Kamailio answers an OPTIONS to itself with 200 (10 s at most).
    async fn wait_listening(&mut self) -> Result<(), String> {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("probe socket");
        let me = sock.local_addr().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("kamailio exited ({status})"));
            }
            n += 1;
            let options = format!(
                "OPTIONS sip:{k} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bK-up-{n};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:test@{me}>;tag=up{n}\r\n\
                 To: <sip:{k}>\r\n\
                 Call-ID: kamailio-up-{n}@{me}\r\n\
                 CSeq: {n} OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n",
                k = self.addr
            );
            sock.send_to(options.as_bytes(), self.addr).await.ok();
            let mut buf = [0u8; 4096];
            if let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await
            {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return Ok(());
                }
            }
        }
        Err("kamailio never answered OPTIONS".into())
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// Waits up to `wait` for a log line containing `needle`; true if seen.
    pub async fn wait_log(&self, needle: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signals the process group this value spawned.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever is left of the group.
        unsafe { libc::kill(group, libc::SIGKILL) };
        self.child.wait().ok();
    }
}

/// Every node's events, tagged with the node's index.
pub fn watch(nodes: &[&Daemon]) -> mpsc::UnboundedReceiver<(usize, Event)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (i, d) in nodes.iter().enumerate() {
        let mut events = d.subscribe();
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if tx.send((i, e)).is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    rx
}

/// A caller in a room on some node.
pub struct Caller {
    pub phone: Baresip,
    pub node: usize,
    pub call: String,
}

/// `name` dials room number 4000 at Kamailio, keys 2468#; the node it
/// landed on and the call, once a node reports it joined room 2468.
pub async fn join(
    name: &str,
    mic: &std::path::Path,
    kamailio: SocketAddr,
    events: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    k: &Kamailio,
) -> Caller {
    let mut phone = Baresip::start(name, mic, false).await;
    let reply = phone.command("dial", &format!("sip:4000@{kamailio}")).await;
    assert!(reply.contains("\"ok\":true"), "dial: {reply}");
    let established = phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .await;
    assert!(
        established,
        "{name}'s call through Kamailio was not answered; kamailio log:\n{}",
        k.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = phone.command("sndcode", "2468#").await;
    assert!(reply.contains("\"ok\":true"), "sndcode: {reply}");
    let joined = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some((node, e)) = events.recv().await {
            if let Event::MemberJoined {
                call, room, from, ..
            } = e
            {
                if from.contains(name) {
                    return (node, call, room);
                }
            }
        }
        panic!("the nodes' events ended")
    })
    .await;
    let (node, call, room) = joined.unwrap_or_else(|_| panic!("{name} joined no room"));
    // In the room, or (in a cluster) in the bridge to its node.
    assert!(
        room == "2468" || room.starts_with("bridge:"),
        "{name}: {room}"
    );
    Caller { phone, node, call }
}
