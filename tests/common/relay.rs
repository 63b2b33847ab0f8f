//! A user-space UDP impairment relay for the media path between a test phone
//! and the daemon.
//!
//! One [`Relay`] relays one UDP flow through two loopback sockets: one faces
//! the phone, the other faces the daemon. Packets the phone sends to
//! [`Relay::phone_side`] leave from [`Relay::daemon_side`] towards the
//! upstream (the daemon's RTP or RTCP port); packets the daemon sends to
//! [`Relay::daemon_side`] go back to the last address the phone sent from.
//! The daemon only ever sees the daemon side, so that is the address a test
//! puts in its SDP. What reaches the daemon side is relayed whatever address
//! it came from, so RTCP sent from an unexpected port still gets through.
//!
//! Loss is pseudo-random but reproducible: each direction draws from its own
//! xorshift generator with a fixed seed, so a run that sends the same packets
//! in the same order drops the same ones. Random-looking loss rather than
//! every Nth packet, because the E-model assumes random loss.
//!
//! RTCP runs on the RTP port + 1 unless rtcp-mux is negotiated, so
//! [`Relay::pair`] binds an RTP relay and an RTCP relay whose sockets sit on
//! adjacent ports (even, odd) on both sides. With rtcp-mux one relay carries
//! both.
//!
//! Usage:
//!
//! ```ignore
//! let (rtp, rtcp) = Relay::pair().await;
//! // Offer the daemon the relay's daemon side...
//! let sdp = common::offer(rtp.daemon_side(), "0", "");
//! // ...and once the answer names the daemon's media port, route to it.
//! let daemon_rtp = common::sdp_rtp_addr(&answer).unwrap();
//! rtp.set_upstream(daemon_rtp);
//! rtcp.set_upstream(relay::rtcp_of(daemon_rtp));
//! rtp.set_drop_percent(10);
//! phone.send_to(&packet, rtp.phone_side()).await?;
//! // ...
//! assert!(rtp.dropped() > 0);
//! ```
//!
//! Dropping the relay stops it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest datagram relayed; anything longer is truncated by the receive.
const MAX_DATAGRAM: usize = 2048;

/// Seeds of the two directions' loss generators (any non-zero values).
const SEED_TO_DAEMON: u64 = 0x9E37_79B9_7F4A_7C15;
const SEED_TO_PHONE: u64 = 0xD1B5_4A32_D192_ED03;

/// The port RTCP uses for an RTP address when rtcp-mux is not negotiated.
pub fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

/// Packets seen in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    /// Sent on to the far side.
    pub forwarded: u64,
    /// Dropped on purpose (the impairment).
    pub dropped: u64,
    /// Discarded because there was nowhere to send them yet: no upstream
    /// set, or no packet from the phone seen.
    pub unrouted: u64,
}

/// Packets seen in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Phone to daemon.
    pub to_daemon: Flow,
    /// Daemon to phone.
    pub to_phone: Flow,
}

/// One direction's settings and counters.
struct Lane {
    drop_percent: AtomicU32,
    rng: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    unrouted: AtomicU64,
}

impl Lane {
    fn new(seed: u64) -> Lane {
        Lane {
            drop_percent: AtomicU32::new(0),
            rng: AtomicU64::new(seed),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unrouted: AtomicU64::new(0),
        }
    }

    /// Whether to drop the next packet. Only this lane's receive task draws,
    /// so a plain load and store keep the sequence reproducible.
    fn drop_next(&self) -> bool {
        let p = self.drop_percent.load(Ordering::Relaxed);
        if p == 0 {
            return false;
        }
        // xorshift64*
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        let r = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % 100;
        r < u64::from(p)
    }

    fn seed(&self, seed: u64) {
        // xorshift stays at zero forever; any other value works.
        self.rng.store(
            if seed == 0 { SEED_TO_DAEMON } else { seed },
            Ordering::Relaxed,
        );
    }

    fn flow(&self) -> Flow {
        Flow {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            unrouted: self.unrouted.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    /// The daemon's address for this flow.
    upstream: Mutex<Option<SocketAddr>>,
    /// The address the phone last sent from.
    phone: Mutex<Option<SocketAddr>>,
    /// Added to each packet's trip, in microseconds.
    delay_us: AtomicU64,
    to_daemon: Lane,
    to_phone: Lane,
}

fn get(slot: &Mutex<Option<SocketAddr>>) -> Option<SocketAddr> {
    *slot.lock().unwrap_or_else(|e| e.into_inner())
}

fn put(slot: &Mutex<Option<SocketAddr>>, addr: SocketAddr) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
}

/// A packet on its way out, and when it may leave.
struct Queued {
    due: Instant,
    to: SocketAddr,
    data: Vec<u8>,
}

pub struct Relay {
    phone_side: SocketAddr,
    daemon_side: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds two UDP sockets on 127.0.0.1 (ports chosen by the OS) and
    /// relays between them: what arrives on [`Relay::phone_side`] goes to
    /// `upstream` from [`Relay::daemon_side`], and what the daemon sends to
    /// the daemon side goes back to the phone.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let relay = Relay::new().await;
        relay.set_upstream(upstream);
        relay
    }

    /// A relay that does not know the daemon's address yet: what the phone
    /// sends is discarded (counted as unrouted) until
    /// [`Relay::set_upstream`].
    pub async fn new() -> Relay {
        let phone = std::net::UdpSocket::bind("127.0.0.1:0").expect("relay binds its phone side");
        let daemon = std::net::UdpSocket::bind("127.0.0.1:0").expect("relay binds its daemon side");
        Relay::from_sockets(phone, daemon).expect("relay sockets")
    }

    /// An RTP relay and an RTCP relay, neither routed yet, whose phone
    /// sides and daemon sides each sit on adjacent ports: the RTCP relay's
    /// sockets are on the RTP relay's ports + 1, as RTCP without rtcp-mux
    /// expects.
    pub async fn pair() -> (Relay, Relay) {
        let (phone_rtp, phone_rtcp) = bind_adjacent().expect("relay binds adjacent phone ports");
        let (daemon_rtp, daemon_rtcp) = bind_adjacent().expect("relay binds adjacent daemon ports");
        let rtp = Relay::from_sockets(phone_rtp, daemon_rtp).expect("relay sockets");
        let rtcp = Relay::from_sockets(phone_rtcp, daemon_rtcp).expect("relay sockets");
        (rtp, rtcp)
    }

    /// [`Relay::pair`], routed to the daemon's RTP address and the port
    /// after it.
    pub async fn start_pair(rtp_upstream: SocketAddr) -> (Relay, Relay) {
        let (rtp, rtcp) = Relay::pair().await;
        rtp.set_upstream(rtp_upstream);
        rtcp.set_upstream(rtcp_of(rtp_upstream));
        (rtp, rtcp)
    }

    fn from_sockets(phone: std::net::UdpSocket, daemon: std::net::UdpSocket) -> io::Result<Relay> {
        phone.set_nonblocking(true)?;
        daemon.set_nonblocking(true)?;
        let phone = Arc::new(UdpSocket::from_std(phone)?);
        let daemon = Arc::new(UdpSocket::from_std(daemon)?);
        let phone_side = phone.local_addr()?;
        let daemon_side = daemon.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(None),
            phone: Mutex::new(None),
            delay_us: AtomicU64::new(0),
            to_daemon: Lane::new(SEED_TO_DAEMON),
            to_phone: Lane::new(SEED_TO_PHONE),
        });
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(receive(phone.clone(), shared.clone(), Dir::ToDaemon, up_tx)),
            tokio::spawn(transmit(
                daemon.clone(),
                shared.clone(),
                Dir::ToDaemon,
                up_rx,
            )),
            tokio::spawn(receive(daemon, shared.clone(), Dir::ToPhone, down_tx)),
            tokio::spawn(transmit(phone, shared.clone(), Dir::ToPhone, down_rx)),
        ];
        Ok(Relay {
            phone_side,
            daemon_side,
            shared,
            tasks,
        })
    }

    /// Where the phone sends.
    pub fn phone_side(&self) -> SocketAddr {
        self.phone_side
    }

    /// Where the daemon's packets come from and where it must send: the
    /// address for the phone's SDP.
    pub fn daemon_side(&self) -> SocketAddr {
        self.daemon_side
    }

    /// Route the phone's packets to `upstream` from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        put(&self.shared.upstream, upstream);
    }

    /// The address the phone's packets go to, once known.
    pub fn upstream(&self) -> Option<SocketAddr> {
        get(&self.shared.upstream)
    }

    /// The address the phone last sent from, if it has sent anything.
    pub fn phone(&self) -> Option<SocketAddr> {
        get(&self.shared.phone)
    }

    /// Drop `percent` (0 to 100; more counts as 100) of the packets in
    /// both directions.
    pub fn set_drop_percent(&self, percent: u32) {
        self.set_drop_percents(percent, percent);
    }

    /// Drop shares of the packets per direction, each 0 to 100.
    pub fn set_drop_percents(&self, to_daemon: u32, to_phone: u32) {
        self.shared
            .to_daemon
            .drop_percent
            .store(to_daemon.min(100), Ordering::Relaxed);
        self.shared
            .to_phone
            .drop_percent
            .store(to_phone.min(100), Ordering::Relaxed);
    }

    /// Restart both directions' loss patterns from `seed` (the directions
    /// still differ from each other).
    pub fn set_seed(&self, seed: u64) {
        self.shared.to_daemon.seed(seed);
        self.shared
            .to_phone
            .seed(seed.rotate_left(32) ^ SEED_TO_PHONE);
    }

    /// Hold every packet this long before sending it on, in both
    /// directions: the round trip grows by twice `delay`. Order is kept.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::Relaxed);
    }

    /// Packets sent on, both directions together.
    pub fn forwarded(&self) -> u64 {
        let c = self.counts();
        c.to_daemon.forwarded + c.to_phone.forwarded
    }

    /// Packets dropped on purpose, both directions together.
    pub fn dropped(&self) -> u64 {
        let c = self.counts();
        c.to_daemon.dropped + c.to_phone.dropped
    }

    /// Per-direction counters.
    pub fn counts(&self) -> Counts {
        Counts {
            to_daemon: self.shared.to_daemon.flow(),
            to_phone: self.shared.to_phone.flow(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone, Copy)]
enum Dir {
    ToDaemon,
    ToPhone,
}

impl Dir {
    fn lane(self, shared: &Shared) -> &Lane {
        match self {
            Dir::ToDaemon => &shared.to_daemon,
            Dir::ToPhone => &shared.to_phone,
        }
    }
}

/// Reads one side's socket, applies the loss and queues what survives.
async fn receive(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    dir: Dir,
    queue: mpsc::UnboundedSender<Queued>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors from an earlier send surface here; they are no
            // reason to stop. Pause briefly in case an error repeats.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let to = match dir {
            Dir::ToDaemon => {
                put(&shared.phone, from);
                get(&shared.upstream)
            }
            Dir::ToPhone => get(&shared.phone),
        };
        let lane = dir.lane(&shared);
        let Some(to) = to else {
            lane.unrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if lane.drop_next() {
            lane.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let delay = Duration::from_micros(shared.delay_us.load(Ordering::Relaxed));
        let packet = Queued {
            due: Instant::now() + delay,
            to,
            data: buf[..n].to_vec(),
        };
        if queue.send(packet).is_err() {
            return;
        }
    }
}

/// Sends queued packets from the other side's socket when they are due.
async fn transmit(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    dir: Dir,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) {
    while let Some(p) = queue.recv().await {
        if p.due > Instant::now() {
            tokio::time::sleep_until(p.due).await;
        }
        if sock.send_to(&p.data, p.to).await.is_ok() {
            dir.lane(&shared).forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Two UDP sockets on 127.0.0.1 on adjacent ports, the first even.
fn bind_adjacent() -> io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
    let mut last_err = io::Error::new(io::ErrorKind::AddrInUse, "no adjacent ports free");
    for _ in 0..64 {
        let a = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        // The OS never hands out port 0, so port - 1 cannot underflow, and
        // an even port is at most 65534.
        let other = if port % 2 == 0 { port + 1 } else { port - 1 };
        match std::net::UdpSocket::bind(("127.0.0.1", other)) {
            Ok(b) if port % 2 == 0 => return Ok((a, b)),
            Ok(b) => return Ok((b, a)),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}
