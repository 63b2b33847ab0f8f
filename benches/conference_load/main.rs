//! Load run: simulated phones send real RTP over loopback into conference
//! rooms, and the daemon's CPU per member per tick, late mixer ticks,
//! packets delivered and the time a frame spends inside confgate are
//! reported, one row per scenario.
//!
//! `cargo bench --bench conference_load` runs every row:
//! - `rooms10`: rooms of 10 with 2 talking, at 500, 1,000, 2,000 and 4,000 members;
//! - `big`: one room of 1,000 members, 3 talking;
//! - `pairs`: 1,000 rooms of 2, one talking in each;
//! - `silent`: 1,000 members in rooms of 10 where nobody talks;
//! - `halfopus`, `opus`, `g722`: rooms of 10 with 2 talking, as `rooms10`
//!   (whose phones speak PCMU), but with every second member on Opus (the
//!   rest PCMU; 200 members), every member on Opus (100), every member on
//!   G.722 (250): sizes two cores can keep up with, as an Opus member costs
//!   about ten G.711 ones. The daemon accepts all four codecs; each phone
//!   offers just its own (Opus as `opus/48000/2`, payload type 111) and
//!   replays payloads encoded once beforehand from a continuous signal;
//! - `bridged`: rooms of 10 with 2 talking (250 members) on a second node:
//!   the phones call node A (127.0.0.2, RTP ports 20000-29999), whose
//!   `rooms.upstream = "sip:room-{room}@B"` bridges every caller to node B
//!   (127.0.0.3, ports 30000-39999), which trusts A and mixes the rooms.
//!   No Redis. A holds two legs per caller (the phone's and the one to B)
//!   in a two-member bridge room; B seats each leg in its room of 10.
//!   Two 20 s runs on the 2-vCPU test machine: 40–47 µs per bridged member
//!   per tick on A and 18–21 µs on B, against 16–19 µs per member in the
//!   same runs' `rooms10:250`, 100 % of packets delivered (README,
//!   Performance).
//!
//! `CONFGATE_LOAD_SCENARIOS=rooms10:4000,big` picks rows (`rooms10` alone
//! runs all its sizes) and `CONFGATE_LOAD_SECS=10` the measured time per row
//! (default 20 s, after a 5 s warm-up).
//!
//! The daemon runs in this process: its SIP and control on a 2-thread tokio
//! runtime, its media on `confgate-media-*` threads (one per core). Its CPU
//! is the CPU time of this process less the phones': they run on threads of
//! their own and their CPU is reported apart. The phones stand for a trunk's media
//! gateways: each of their sockets carries up to [`CALLS_PER_SOCKET`] calls,
//! sent with one `sendmmsg` and read with `recvmmsg`, so that the phones cost
//! less than the daemon they load. Every packet the daemon sends is counted.
//! Calls join by `X-Conference-Id` from a trusted address, with their INVITEs
//! pipelined.
//!
//! In the `bridged` row both nodes run here, each on a tokio runtime of its
//! own (`node-a`, `node-b`, 2 workers each) with its own media threads, one
//! per core each, taken by their thread ids as they appear while the node
//! starts. A line per node gives its CPU (the scheduler's run time of those
//! threads, from `/proc/self/task/*/schedstat`) per bridged member per tick,
//! its late ticks, losses and in-daemon time, and the rooms and members it
//! lists; the row's own figures are both nodes together, and what the
//! phones receive is the mix that came back from B through A. SIPp (below)
//! is not run in that row.
//!
//! `CONFGATE_LOAD_SIPP=RATE:CALLS` adds call set-up while the members mix:
//!
//! ```text
//! CONFGATE_LOAD_SCENARIOS=rooms10:2000 CONFGATE_LOAD_SIPP=500:10000 cargo bench --bench conference_load
//! ```
//!
//! At the start of each row's measured window SIPp (`sipp`, Debian package
//! `sip-tester`) places CALLS calls at RATE calls/s from 127.0.0.1 with
//! `benches/conference_load/sipp_setup.xml`: INVITE, 200, ACK, 1 s in a
//! room of its own (`X-Conference-Id: sippN`), BYE. A line under the row gives the calls
//! placed, answered and failed, the set-up time INVITE to 200 (p50, p99 and
//! max, from SIPp's `-trace_rtt` file), the rate achieved, SIPp's CPU and the
//! calls confgate saw join and leave on BYE; a second line names failures,
//! unexpected answers and retransmissions when there are any, and where
//! SIPp's files were kept (`$TMPDIR/confgate-load-sipp-PID-ROW`, removed
//! when all went well). A window shorter than CALLS/RATE + 4 s is lengthened
//! to that; a longer one has set-up calls only in its first CALLS/RATE + 1 s.
//! The row's daemon figures then include the SIP work for those calls and
//! the prompts played to them, and SIPp (in its own process, not counted in
//! `cpu %`) competes with the daemon for the cores. SIPp 3.6 times calls on
//! CLOCK_MONOTONIC_COARSE, in kernel ticks (4 ms at HZ=250), so a set-up
//! quicker than a tick may read 0 ms. Without `sipp` the row runs without
//! set-up calls and says so.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confgate::config::Config;
use confgate::daemon::Daemon;
use confgate::events::Event;
use confgate::media::codec::{Codec, Encoder, OpusParams, MAX_PAYLOAD};

mod sipp;
use sipp::*;

/// Calls sharing one phone socket.
const CALLS_PER_SOCKET: usize = 50;
/// Threads the phones run on.
const PHONE_THREADS: usize = 2;
/// INVITEs outstanding at once while the calls are set up.
const INVITE_WINDOW: usize = 64;
/// How long an INVITE waits for an answer before it is sent again.
const INVITE_RESEND: Duration = Duration::from_millis(500);
const WARM_UP: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(20);

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    members: usize,
    room_size: usize,
    talkers: usize,
    mix: Mix,
    /// The phones call a node that bridges each of them to a second node,
    /// which mixes the rooms.
    bridged: bool,
}

/// The codecs the phones of a row speak.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    Pcmu,
    HalfOpus,
    Opus,
    G722,
}

impl Mix {
    /// The codec of call `n`.
    fn codec(self, n: usize) -> Codec {
        match self {
            Mix::Pcmu => Codec::Pcmu,
            Mix::HalfOpus if n % 2 == 1 => Codec::Opus,
            Mix::HalfOpus => Codec::Pcmu,
            Mix::Opus => Codec::Opus,
            Mix::G722 => Codec::G722,
        }
    }
}

/// The codecs phones speak; a [`Line`] holds its index here.
const PHONE_CODECS: [Codec; 3] = [Codec::Pcmu, Codec::Opus, Codec::G722];
/// The payload type phones offer Opus at.
const OPUS_PT: u8 = 111;
/// Frames in a phone's pre-encoded sequences (1 s), replayed in a loop.
const SEQ: usize = 50;

const ROOMS10: [usize; 4] = [500, 1000, 2000, 4000];

fn scenarios(spec: Option<&str>) -> Vec<Scenario> {
    let rooms10 = |members| Scenario {
        name: "rooms of 10, 2 talking",
        members,
        room_size: 10,
        talkers: 2,
        mix: Mix::Pcmu,
        bridged: false,
    };
    let mixed = |name, members, mix| Scenario {
        name,
        members,
        room_size: 10,
        talkers: 2,
        mix,
        bridged: false,
    };
    let half_opus = mixed("rooms of 10, half Opus", 200, Mix::HalfOpus);
    let opus = mixed("rooms of 10, all Opus", 100, Mix::Opus);
    let g722 = mixed("rooms of 10, all G.722", 250, Mix::G722);
    let big = Scenario {
        name: "one room of 1000, 3 talking",
        members: 1000,
        room_size: 1000,
        talkers: 3,
        mix: Mix::Pcmu,
        bridged: false,
    };
    let pairs = Scenario {
        name: "1000 rooms of 2, 1 talking",
        members: 2000,
        room_size: 2,
        talkers: 1,
        mix: Mix::Pcmu,
        bridged: false,
    };
    let silent = Scenario {
        name: "rooms of 10, nobody talking",
        members: 1000,
        room_size: 10,
        talkers: 0,
        mix: Mix::Pcmu,
        bridged: false,
    };
    let bridged = Scenario {
        name: "rooms of 10, bridged A to B",
        bridged: true,
        ..rooms10(250)
    };
    let Some(spec) = spec else {
        let mut all: Vec<Scenario> = ROOMS10.iter().map(|&n| rooms10(n)).collect();
        all.extend([half_opus, opus, g722, big, pairs, silent, bridged]);
        return all;
    };
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, size) = match item.split_once(':') {
            Some((n, s)) => (n, s.parse::<usize>().ok()),
            None => (item, None),
        };
        let with = |s: Scenario| Scenario {
            members: size.unwrap_or(s.members),
            ..s
        };
        match name {
            "rooms10" => match size {
                Some(n) => out.push(rooms10(n)),
                None => out.extend(ROOMS10.iter().map(|&n| rooms10(n))),
            },
            "big" => out.push(with(big)),
            "pairs" => out.push(with(pairs)),
            "silent" => out.push(with(silent)),
            "halfopus" => out.push(with(half_opus)),
            "opus" => out.push(with(opus)),
            "g722" => out.push(with(g722)),
            "bridged" => out.push(with(bridged)),
            other => panic!(
                "CONFGATE_LOAD_SCENARIOS: unknown row {other:?} (rooms10, halfopus, opus, g722, big, pairs, silent, bridged)"
            ),
        }
    }
    out
}

/// Lift the soft limit on open files to the hard one: each call holds an
/// RTP and an RTCP socket.
fn raise_file_limit(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read one plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_max < needed {
            // Root may raise the hard limit too.
            lim.rlim_max = needed;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            eprintln!(
                "could not raise the open-file limit to {needed}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// CPU seconds used so far by this process (`RUSAGE_SELF`, threads that
/// have ended included) or by the calling thread (`RUSAGE_THREAD`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: rusage is plain data; getrusage fills the one we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// One call as the phones hold it.
struct Line {
    dest: SocketAddrV4,
    talker: bool,
    ssrc: u32,
    /// Its codec, an index into [`PHONE_CODECS`].
    voice: usize,
}

/// A phone socket and the calls it carries.
struct Trunk {
    socket: UdpSocket,
    lines: Vec<Line>,
}

fn sdp(port: u16, codec: Codec) -> String {
    let pt = payload_type(codec);
    let name = codec.encoding_name();
    let clock = codec.clock_rate();
    let channels = codec
        .sdp_channels()
        .map_or(String::new(), |c| format!("/{c}"));
    format!(
        "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/{clock}{channels}\r\n\
         a=rtpmap:101 telephone-event/{clock}\r\na=ptime:20\r\n"
    )
}

fn payload_type(codec: Codec) -> u8 {
    codec.static_payload_type().unwrap_or(OPUS_PT)
}

fn request(
    method: &str,
    n: usize,
    server: SocketAddr,
    local: SocketAddr,
    to_tag: &str,
    extra: &str,
    body: &str,
) -> String {
    let branch = format!("{}{n}", &method[..1]);
    format!(
        "{method} sip:conf@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:load{n}@{local}>;tag=f{n}\r\n\
         To: <sip:conf@{server}>{to_tag}\r\nCall-ID: load-{n}\r\n\
         CSeq: 1 {method}\r\nContact: <sip:load{n}@{local}>\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The call number, To tag and media address of a 200 to one of our INVITEs.
fn answer(text: &str) -> Option<(usize, String, SocketAddrV4)> {
    if !text.starts_with("SIP/2.0 200") {
        return None;
    }
    let n = text
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: load-"))?
        .trim()
        .parse()
        .ok()?;
    let to_tag = text
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split_once(";tag="))
        .map(|(_, t)| format!(";tag={}", t.trim()))
        .unwrap_or_default();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    Some((n, to_tag, SocketAddrV4::new(ip, port)))
}

/// The call number and status of a response to one of our requests.
fn response(text: &str) -> Option<(usize, u16)> {
    let status = text
        .strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let n = text
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: load-"))?
        .trim()
        .parse()
        .ok()?;
    Some((n, status))
}

/// The phones' SIP socket once the calls are set up, and the ACK sent for
/// each call answered: a 200 the daemon sends again (the ACK was lost) is
/// ACKed again, as a phone would, until the row ends.
struct Signalling {
    sip: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    acks: HashMap<usize, String>,
}

/// Answer every 200 that comes to `sig` until `stop_at` with its ACK;
/// returns the calls answered only now, which the phones do not carry.
fn keep_acking(mut sig: Signalling, stop_at: Instant) -> usize {
    let mut late = 0;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < stop_at {
        let Ok((len, _)) = sig.sip.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]);
        let Some((n, to_tag, _)) = answer(&text) else {
            continue;
        };
        let ack = sig.acks.entry(n).or_insert_with(|| {
            late += 1;
            request("ACK", n, sig.server, sig.local, &to_tag, "", "")
        });
        sig.sip.send_to(ack.as_bytes(), sig.server).ok();
    }
    late
}

/// An INVITE not answered yet: when it was first and last sent, and
/// whether a provisional answer came (which stops its resending).
struct Pending {
    first: Instant,
    last: Instant,
    proceeding: bool,
    invite: String,
}

/// Set up every call, [`INVITE_WINDOW`] at a time, sending an INVITE again
/// each [`INVITE_RESEND`] until something answers it (for 5 s); returns the
/// trunks with the calls that were answered, and the SIP side.
fn dial(s: &Scenario, server: SocketAddr) -> (Vec<Trunk>, Signalling) {
    let sip = UdpSocket::bind("127.0.0.1:0").expect("sip socket");
    sip.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let local = sip.local_addr().expect("sip address");
    let mut trunks: Vec<Trunk> = (0..s.members.div_ceil(CALLS_PER_SOCKET))
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("phone socket");
            socket.set_nonblocking(true).expect("nonblocking");
            Trunk {
                socket,
                lines: Vec::new(),
            }
        })
        .collect();
    let ports: Vec<u16> = trunks
        .iter()
        .map(|t| t.socket.local_addr().expect("phone address").port())
        .collect();
    let mut next = 0;
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    let mut acks: HashMap<usize, String> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    while next < s.members || !pending.is_empty() {
        while next < s.members && pending.len() < INVITE_WINDOW {
            let n = next;
            let extra = format!(
                "X-Conference-Id: room{}\r\nContent-Type: application/sdp\r\n",
                n / s.room_size
            );
            let body = sdp(ports[n / CALLS_PER_SOCKET], s.mix.codec(n));
            let invite = request("INVITE", n, server, local, "", &extra, &body);
            sip.send_to(invite.as_bytes(), server).ok();
            let now = Instant::now();
            pending.insert(
                n,
                Pending {
                    first: now,
                    last: now,
                    proceeding: false,
                    invite,
                },
            );
            next += 1;
        }
        for p in pending.values_mut() {
            if !p.proceeding && p.last.elapsed() >= INVITE_RESEND {
                sip.send_to(p.invite.as_bytes(), server).ok();
                p.last = Instant::now();
            }
        }
        pending.retain(|_, p| p.first.elapsed() < Duration::from_secs(5));
        let Ok((len, _)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]);
        let Some((n, status)) = response(&text) else {
            continue;
        };
        if status < 200 {
            if let Some(p) = pending.get_mut(&n) {
                p.proceeding = true;
            }
            continue;
        }
        let Some((n, to_tag, media)) = answer(&text) else {
            // Refused: not one of the row's calls.
            pending.remove(&n);
            continue;
        };
        // A 200 again: our ACK was lost.
        if let Some(ack) = acks.get(&n) {
            sip.send_to(ack.as_bytes(), server).ok();
            continue;
        }
        // A call answered after its 5 s is taken all the same.
        pending.remove(&n);
        let ack = request("ACK", n, server, local, &to_tag, "", "");
        sip.send_to(ack.as_bytes(), server).ok();
        acks.insert(n, ack);
        trunks[n / CALLS_PER_SOCKET].lines.push(Line {
            dest: media,
            talker: n % s.room_size < s.talkers,
            ssrc: 0x1000_0000 + n as u32,
            voice: PHONE_CODECS
                .iter()
                .position(|&c| c == s.mix.codec(n))
                .expect("a phone codec"),
        });
    }
    let sig = Signalling {
        sip,
        local,
        server,
        acks,
    };
    (trunks, sig)
}

/// What phones of one codec send: its payload type, RTP clock per frame,
/// and [`SEQ`] payloads each of speech (a 400 Hz sine) and of -60 dBFS noise,
/// each sequence encoded from one continuous signal.
struct Voice {
    pt: u8,
    frame_ts: u32,
    talk: Vec<Vec<u8>>,
    quiet: Vec<Vec<u8>>,
}

fn voice(codec: Codec) -> Voice {
    let rate = f64::from(codec.sample_rate());
    let n = codec.frame_samples();
    let sequence = |signal: &mut dyn FnMut(usize) -> i16| {
        let mut enc = Encoder::new(codec, OpusParams::default()).expect("encoder");
        let mut pcm = vec![0i16; n];
        (0..SEQ)
            .map(|f| {
                for (i, s) in pcm.iter_mut().enumerate() {
                    *s = signal(f * n + i);
                }
                let mut out = Vec::new();
                enc.encode(&pcm, &mut out).expect("encode");
                out
            })
            .collect::<Vec<_>>()
    };
    let talk = sequence(&mut |i| {
        (5000.0 * (std::f64::consts::TAU * 400.0 * i as f64 / rate).sin()) as i16
    });
    let mut x: u32 = 7;
    let quiet = sequence(&mut |_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        ((x >> 16) as i16) >> 10
    });
    Voice {
        pt: payload_type(codec),
        frame_ts: codec.frame_ts(),
        talk,
        quiet,
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// What one phone thread counted while measuring.
#[derive(Default)]
struct Counts {
    sent: u64,
    send_errors: u64,
    received: u64,
    expected: u64,
    /// This thread's CPU seconds over the measured window.
    cpu: f64,
}

/// Send a frame on every line of `trunks` each 20 ms until `stop_at`, and
/// read everything sent back.
fn phones(trunks: Vec<Trunk>, measure: (Instant, Instant), stop_at: Instant) -> Counts {
    let voices: Vec<Voice> = PHONE_CODECS.iter().map(|&c| voice(c)).collect();
    let mut counts = Counts::default();
    let most = trunks.iter().map(|t| t.lines.len()).max().unwrap_or(0);
    let mut packets = vec![[0u8; 12 + MAX_PAYLOAD]; most];
    let mut addrs: Vec<Vec<libc::sockaddr_in>> = trunks
        .iter()
        .map(|t| t.lines.iter().map(|l| sockaddr(l.dest)).collect())
        .collect();
    let mut iovs = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        most.max(64)
    ];
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; most.max(64)];
    let mut rx = vec![[0u8; 512]; 64];
    let start = Instant::now();
    let mut tick = 0u64;
    let mut cpu_from = None;
    while Instant::now() < stop_at {
        let due = start + TICK * tick as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = Instant::now();
        let measuring = now >= measure.0 && now < measure.1;
        match (measuring, cpu_from) {
            (true, None) => cpu_from = Some(cpu_seconds(libc::RUSAGE_THREAD)),
            (false, Some(from)) if counts.cpu == 0.0 => {
                counts.cpu = cpu_seconds(libc::RUSAGE_THREAD) - from;
            }
            _ => {}
        }
        let seq = tick as u16;
        let frame = tick as usize % SEQ;
        for (t, trunk) in trunks.iter().enumerate() {
            let lines = trunk.lines.len();
            for (k, line) in trunk.lines.iter().enumerate() {
                let p = &mut packets[k];
                let voice = &voices[line.voice];
                let ts = (tick as u32).wrapping_mul(voice.frame_ts);
                p[0] = 0x80;
                p[1] = voice.pt;
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                p[4..8].copy_from_slice(&ts.to_be_bytes());
                p[8..12].copy_from_slice(&line.ssrc.to_be_bytes());
                // Talkers speak in 1.5 s spurts with 0.5 s pauses, each on
                // its own phase.
                let speaking = line.talker && (tick + u64::from(line.ssrc)) % 100 < 75;
                let payload = if speaking {
                    &voice.talk[frame]
                } else {
                    &voice.quiet[frame]
                };
                p[12..12 + payload.len()].copy_from_slice(payload);
                iovs[k] = libc::iovec {
                    iov_base: p.as_mut_ptr().cast(),
                    iov_len: 12 + payload.len(),
                };
                let h = &mut msgs[k].msg_hdr;
                h.msg_name = (&mut addrs[t][k] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_iov = &mut iovs[k];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            let mut done = 0;
            while done < lines {
                // SAFETY: msgs[done..lines] point into packets, iovs and
                // addrs, which outlive the call and are not moved.
                let n = unsafe {
                    libc::sendmmsg(
                        trunk.socket.as_raw_fd(),
                        msgs.as_mut_ptr().add(done),
                        (lines - done) as u32,
                        0,
                    )
                };
                if n <= 0 {
                    counts.send_errors += (lines - done) as u64;
                    break;
                }
                done += n as usize;
            }
            if measuring {
                counts.sent += done as u64;
                counts.expected += lines as u64;
            }
        }
        for trunk in &trunks {
            loop {
                for (k, b) in rx.iter_mut().enumerate() {
                    iovs[k] = libc::iovec {
                        iov_base: b.as_mut_ptr().cast(),
                        iov_len: b.len(),
                    };
                    let h = &mut msgs[k].msg_hdr;
                    h.msg_name = std::ptr::null_mut();
                    h.msg_namelen = 0;
                    h.msg_iov = &mut iovs[k];
                    h.msg_iovlen = 1;
                }
                // SAFETY: the first 64 headers point at rx's buffers.
                let n = unsafe {
                    libc::recvmmsg(
                        trunk.socket.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        64,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n <= 0 {
                    break;
                }
                if measuring {
                    counts.received += n as u64;
                }
            }
        }
        tick += 1;
    }
    counts
}

/// A daemon of the run on a tokio runtime of its own, and the ids of its
/// media threads, so that its CPU can be told from another's.
struct Node {
    /// What the report calls it.
    label: &'static str,
    rt: tokio::runtime::Runtime,
    daemon: Daemon,
    /// The name of its runtime's threads (workers and blocking pool).
    runtime: &'static str,
    /// Its `confgate-media-*` threads.
    media: Vec<u32>,
}

/// The thread ids of this process whose name begins `confgate-media`.
fn media_threads() -> Vec<u32> {
    thread_cpu()
        .into_iter()
        .filter(|(_, (name, _))| name.starts_with("confgate-media"))
        .map(|(tid, _)| tid)
        .collect()
}

/// Start a daemon with `overrides` on a runtime whose threads are named
/// `runtime`; the media threads that appear while it starts are its own.
fn start_node(label: &'static str, runtime: &'static str, overrides: &[String]) -> Node {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(runtime)
        .enable_all()
        .build()
        .expect("runtime");
    let before = media_threads();
    let settings = Config::load(None, overrides).expect("settings");
    let threads = settings.media_threads;
    let daemon = rt.block_on(Daemon::start(settings)).expect("daemon");
    // A thread takes its name once it runs: wait for all of them.
    let deadline = Instant::now() + Duration::from_secs(2);
    let media = loop {
        let new: Vec<u32> = media_threads()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if new.len() >= threads || Instant::now() > deadline {
            break new;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(media.len(), threads, "{label}: its media threads");
    Node {
        label,
        rt,
        daemon,
        runtime,
        media,
    }
}

/// Each thread of this process by id: its name and the CPU seconds it has
/// used (the scheduler's run time, in ns, from `schedstat`; else `stat`'s
/// user and system ticks).
fn thread_cpu() -> HashMap<u32, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let dir = task.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let run_ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok());
        let secs = match run_ns {
            Some(ns) => ns as f64 / 1e9,
            None => {
                // Fields 14 and 15 after the name in parentheses, which
                // may hold spaces.
                let Some(stat) = std::fs::read_to_string(dir.join("stat")).ok() else {
                    continue;
                };
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    continue;
                };
                let f: Vec<f64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                f.iter().sum::<f64>() / hz
            }
        };
        out.insert(tid, (name.trim_end().to_owned(), secs));
    }
    out
}

/// The CPU seconds `node`'s media threads and its runtime's threads used
/// between two [`thread_cpu`] readings (a thread that ended between them
/// is not counted).
fn node_cpu(
    node: &Node,
    from: &HashMap<u32, (String, f64)>,
    to: &HashMap<u32, (String, f64)>,
) -> (f64, f64) {
    let used = |(tid, (_, secs)): (&u32, &(String, f64))| secs - from.get(tid).map_or(0.0, |f| f.1);
    let media = to
        .iter()
        .filter(|(tid, _)| node.media.contains(tid))
        .map(used)
        .sum();
    let runtime = to
        .iter()
        .filter(|(_, (name, _))| name == node.runtime)
        .map(used)
        .sum();
    (media, runtime)
}

/// One node's figures in a row with more than one.
struct NodeReport {
    label: &'static str,
    sip: SocketAddr,
    cpu_percent: f64,
    /// Of which its media threads (the rest is its runtime's: SIP, control).
    media_percent: f64,
    us_per_member_tick: f64,
    late_ticks: u64,
    lost: u64,
    dropped: u64,
    p50: Option<u64>,
    p99: Option<u64>,
    /// Rooms listed at the end of the window, and members in them.
    rooms: usize,
    members: usize,
}

struct Report {
    joined: usize,
    cpu_percent: f64,
    us_per_member_tick: f64,
    phones_percent: f64,
    late_ticks: u64,
    lost: u64,
    dropped: u64,
    delivered: f64,
    send_errors: u64,
    p50: Option<u64>,
    p99: Option<u64>,
    /// The set-up calls SIPp placed in the window, if it ran.
    sipp: Option<Result<SippOutcome, String>>,
    /// Each node's share, when the row has two; and the CPU of this
    /// process that is neither theirs nor the phones' (%).
    nodes: Vec<NodeReport>,
    rest_percent: f64,
    /// Calls answered after their set-up, which the phones do not carry.
    late_answers: usize,
    /// The dials the called node reported failed (its bridges), by reason
    /// and status.
    dials_failed: BTreeMap<String, usize>,
}

/// Count the dials `node` reports failed, by reason and status, until the
/// task is aborted.
fn watch_dials(
    node: &Node,
) -> (
    Arc<Mutex<BTreeMap<String, usize>>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let failed = Arc::new(Mutex::new(BTreeMap::new()));
    let mut events = node.daemon.subscribe();
    let counts = failed.clone();
    let task = node.rt.spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::DialFailed { status, reason, .. }) => {
                    let key = match status {
                        Some(s) => format!("{reason} ({s})"),
                        None => reason,
                    };
                    *counts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(key)
                        .or_insert(0) += 1;
                }
                Err(RecvError::Closed) => return,
                _ => {}
            }
        }
    });
    (failed, task)
}

/// The settings of a node listening on `listen` with RTP ports `ports`,
/// trusting `trusted` to name rooms; `extra` after them.
fn node_overrides(
    s: &Scenario,
    listen: &str,
    ports: &str,
    trusted: &str,
    extra: &[String],
) -> Vec<String> {
    let prompts = std::env::temp_dir().join("confgate-load-prompts");
    let mut overrides: Vec<String> = vec![
        format!("sip.listen={listen}"),
        "sip.early_media=false".to_owned(),
        format!("rtp.port_range={ports}"),
        // More members than the default cap on calls at once.
        "calls.max_calls=0".to_owned(),
        format!("rooms.trusted=[\"{trusted}\"]"),
        format!("rooms.max_members={}", s.room_size),
        format!("prompts.dir={}", prompts.display()),
        "control.socket=".to_owned(),
        // PCMU first, as the default list has it; each phone offers one.
        r#"media.codecs=["PCMU", "PCMA", "opus", "G722"]"#.to_owned(),
    ];
    overrides.extend_from_slice(extra);
    overrides
}

/// The daemons of row `s`, the one the phones call first: one on
/// 127.0.0.1, or for a bridged row node A on 127.0.0.2 (which bridges
/// every caller upstream) and node B on 127.0.0.3 (which mixes the rooms).
fn start_nodes(s: &Scenario) -> Vec<Node> {
    if !s.bridged {
        let overrides = node_overrides(s, "127.0.0.1:0", "20000-39999", "127.0.0.1", &[]);
        return vec![start_node("daemon", "daemon", &overrides)];
    }
    let b = node_overrides(s, "127.0.0.3:0", "30000-39999", "127.0.0.2", &[]);
    let b = start_node("node B (the room's)", "node-b", &b);
    // No directory: A sends every caller to B as `room-ROOM`, which B
    // takes from a trusted source as the room's name.
    let upstream = format!("rooms.upstream=sip:room-{{room}}@{}", b.daemon.sip_addr());
    let a = node_overrides(s, "127.0.0.2:0", "20000-29999", "127.0.0.1", &[upstream]);
    let a = start_node("node A (the caller's)", "node-a", &a);
    vec![a, b]
}

fn run(s: &Scenario, secs: u64, sipp: Option<&SippLoad>, row: usize) -> Report {
    let nodes = start_nodes(s);
    let front = &nodes[0];
    let dials = watch_dials(front);
    let (trunks, signalling) = dial(s, front.daemon.sip_addr());
    let joined: usize = trunks.iter().map(|t| t.lines.len()).sum();

    let measure_from = Instant::now() + WARM_UP;
    let measure_to = measure_from + Duration::from_secs(secs);
    let stop_at = measure_to + Duration::from_millis(200);
    let acking = std::thread::Builder::new()
        .name("phones-sip".into())
        .spawn(move || keep_acking(signalling, stop_at))
        .expect("phones' SIP thread");
    let mut per_thread: Vec<Vec<Trunk>> = (0..PHONE_THREADS).map(|_| Vec::new()).collect();
    for (i, t) in trunks.into_iter().enumerate() {
        per_thread[i % PHONE_THREADS].push(t);
    }
    let threads: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(i, trunks)| {
            std::thread::Builder::new()
                .name(format!("phones-{i}"))
                .spawn(move || phones(trunks, (measure_from, measure_to), stop_at))
                .expect("phone thread")
        })
        .collect();

    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let process0 = cpu_seconds(libc::RUSAGE_SELF);
    let threads0 = thread_cpu();
    let stats0: Vec<_> = nodes
        .iter()
        .map(|n| n.daemon.conference().stats())
        .collect();
    let wall0 = Instant::now();
    let setup = sipp.map(|load| {
        let watch = watch_sipp_rooms(&front.rt, &front.daemon);
        (start_sipp(load, front.daemon.sip_addr(), secs, row), watch)
    });
    // The listing waits for the media threads: late when they are.
    let rooms0: Vec<_> = nodes
        .iter()
        .map(|n| n.rt.block_on(n.daemon.conference().rooms()))
        .collect();
    std::thread::sleep(measure_to.saturating_duration_since(Instant::now()));
    let process1 = cpu_seconds(libc::RUSAGE_SELF);
    let threads1 = thread_cpu();
    let wall = wall0.elapsed().as_secs_f64();
    let stats1: Vec<_> = nodes
        .iter()
        .map(|n| n.daemon.conference().stats())
        .collect();
    let rooms1: Vec<_> = nodes
        .iter()
        .map(|n| n.rt.block_on(n.daemon.conference().rooms()))
        .collect();
    let late_answers = acking.join().expect("phones' SIP");
    let mut counts = Counts::default();
    for t in threads {
        let c = t.join().expect("phones");
        counts.sent += c.sent;
        counts.send_errors += c.send_errors;
        counts.received += c.received;
        counts.expected += c.expected;
        counts.cpu += c.cpu;
    }
    let sipp = setup.map(|(started, (seen, task))| {
        let outcome = started.and_then(|run| finish_sipp(run, SIPP_GRACE, wall));
        // Let the events of the last hang-ups arrive.
        std::thread::sleep(Duration::from_millis(200));
        task.abort();
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
        outcome.map(|o| SippOutcome { seen, ..o })
    });
    let lost = |rooms: &[confgate::conference::RoomStatus]| {
        rooms
            .iter()
            .flat_map(|r| &r.members)
            .map(|m| m.lost)
            .sum::<u64>()
    };
    let ticks = wall / TICK.as_secs_f64();
    let per_member_tick = |cpu: f64| 1e6 * cpu / (ticks * joined.max(1) as f64);
    let node_reports: Vec<NodeReport> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (media, runtime) = node_cpu(n, &threads0, &threads1);
            let cpu = media + runtime;
            let latency = stats1[i].latency.since(&stats0[i].latency);
            NodeReport {
                label: n.label,
                sip: n.daemon.sip_addr(),
                cpu_percent: 100.0 * cpu / wall,
                media_percent: 100.0 * media / wall,
                us_per_member_tick: per_member_tick(cpu),
                late_ticks: stats1[i].late_ticks - stats0[i].late_ticks,
                lost: lost(&rooms1[i]).saturating_sub(lost(&rooms0[i])),
                dropped: stats1[i].media_dropped - stats0[i].media_dropped,
                p50: latency.quantile_ms(0.5),
                p99: latency.quantile_ms(0.99),
                rooms: rooms1[i].len(),
                members: rooms1[i].iter().map(|r| r.members.len()).sum(),
            }
        })
        .collect();
    // Everything but the phones: the daemons' threads (and this one, asleep).
    let cpu = process1 - process0 - counts.cpu;
    let nodes_cpu: f64 = node_reports.iter().map(|n| n.cpu_percent).sum();
    // One node: the in-daemon time is its own; two: each node's, apart.
    let (p50, p99) = match &node_reports[..] {
        [one] => (one.p50, one.p99),
        _ => (None, None),
    };
    let report = Report {
        joined,
        cpu_percent: 100.0 * cpu / wall,
        us_per_member_tick: per_member_tick(cpu),
        phones_percent: 100.0 * counts.cpu / wall,
        late_ticks: node_reports.iter().map(|n| n.late_ticks).sum(),
        lost: node_reports.iter().map(|n| n.lost).sum(),
        dropped: node_reports.iter().map(|n| n.dropped).sum(),
        delivered: 100.0 * counts.received as f64 / counts.expected.max(1) as f64,
        send_errors: counts.send_errors,
        p50,
        p99,
        sipp,
        rest_percent: 100.0 * cpu / wall - nodes_cpu,
        nodes: if nodes.len() > 1 {
            node_reports
        } else {
            Vec::new()
        },
        late_answers,
        dials_failed: {
            dials.1.abort();
            std::mem::take(&mut *dials.0.lock().unwrap_or_else(|e| e.into_inner()))
        },
    };
    // The caller's node first: its hang-ups end the legs on the room's.
    for n in nodes {
        n.rt.block_on(n.daemon.shutdown());
        n.rt.shutdown_timeout(Duration::from_secs(1));
    }
    report
}

fn main() {
    let spec = std::env::var("CONFGATE_LOAD_SCENARIOS").ok();
    let rows = scenarios(spec.as_deref());
    let secs: u64 = std::env::var("CONFGATE_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let sipp = std::env::var("CONFGATE_LOAD_SIPP")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| SippLoad::parse(&v));
    let sipp = match sipp {
        Some(_) if !sipp_installed() => {
            println!(
                "CONFGATE_LOAD_SIPP is set but sipp is not installed (Debian: apt-get install sip-tester): no set-up calls"
            );
            None
        }
        other => other,
    };
    // The window must hold the SIPp calls.
    let row_secs = sipp.map_or(secs, |load| secs.max(load.secs()));
    let most = rows.iter().map(|s| s.members).max().unwrap_or(0) as u64;
    raise_file_limit(3 * most + sipp.map_or(0, |load| 2 * load.limit()) + 1024);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "conference load: {row_secs} s measured per row, {cores} cores, phones in the same process"
    );
    if let Some(load) = &sipp {
        let longer = if row_secs > secs {
            format!(" (lengthened from {secs} s to hold them)")
        } else {
            String::new()
        };
        println!(
            "set-up calls: SIPp places {} at {}/s in each row's window{longer}: INVITE, 200, ACK, {} s in a room of its own, BYE",
            load.calls, load.rate, SIPP_HOLD_SECS
        );
    }
    println!(
        "{:<28} {:>7} {:>6} {:>7} {:>9} {:>8} {:>5} {:>6} {:>7} {:>11} {:>7} {:>7}",
        "scenario",
        "members",
        "joined",
        "cpu %",
        "µs/m/tick",
        "phones %",
        "late",
        "lost",
        "dropped",
        "delivered %",
        "p50 ms",
        "p99 ms"
    );
    let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    for (row, s) in rows.iter().enumerate() {
        // SIPp's calls would be bridged too: its figures are for one node.
        let setup = sipp.as_ref().filter(|_| !s.bridged);
        let r = run(s, row_secs, setup, row);
        println!(
            "{:<28} {:>7} {:>6} {:>7.1} {:>9.2} {:>8.1} {:>5} {:>6} {:>7} {:>11.2} {:>7} {:>7}",
            s.name,
            s.members,
            r.joined,
            r.cpu_percent,
            r.us_per_member_tick,
            r.phones_percent,
            r.late_ticks,
            r.lost,
            r.dropped,
            r.delivered,
            ms(r.p50),
            ms(r.p99),
        );
        if r.send_errors > 0 {
            println!("{:>28} ({} phone send errors)", "", r.send_errors);
        }
        for n in &r.nodes {
            println!(
                "  {} at {}: cpu {:.1} % (media threads {:.1} %), {:.2} µs/member/tick, {} late, {} lost, {} dropped, p50/p99 {} / {} ms; {} rooms, {} members",
                n.label,
                n.sip,
                n.cpu_percent,
                n.media_percent,
                n.us_per_member_tick,
                n.late_ticks,
                n.lost,
                n.dropped,
                ms(n.p50),
                ms(n.p99),
                n.rooms,
                n.members,
            );
        }
        if r.late_answers > 0 {
            println!(
                "{:>28} ({} calls answered after set-up, not carried)",
                "", r.late_answers
            );
        }
        if !r.dials_failed.is_empty() {
            println!("  dials failed: {:?}", r.dials_failed);
        }
        if !r.nodes.is_empty() {
            println!(
                "  the rest of the process but the phones: cpu {:.1} %",
                r.rest_percent
            );
            if sipp.is_some() {
                println!("  (no SIPp set-up calls in a bridged row)");
            }
        }
        if let (Some(load), Some(outcome)) = (&sipp, &r.sipp) {
            print_sipp(load, outcome);
        }
    }
}
