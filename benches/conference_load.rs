//! Load run: simulated phones send real RTP over loopback into rooms of 10
//! for 30 s (two talkers per room, the rest background noise), and the
//! daemon's CPU, late mixer ticks and lost packets are reported.
//!
//! `cargo bench --bench conference_load` runs 500, 1,000 and 2,000 members;
//! `CONFGATE_LOAD=2000 CONFGATE_LOAD_SECS=10` picks others. The daemon runs
//! in this process on its own 2-thread runtime plus its mixer thread; its CPU
//! is the CPU time of those threads (the phones' thread is reported apart). The phones are one thread sending a packet per member
//! every 20 ms; they answer nothing. Calls join by `X-Conference-Id` from a
//! trusted address, so setting up 2,000 calls takes seconds. Needs
//! `ulimit -n` above three times the member count (each call holds an RTP
//! and an RTCP socket).
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use confgate::config::Config;
use confgate::daemon::Daemon;
use confgate::media::g711::Codec;

const ROOM_SIZE: usize = 10;
const TALKERS_PER_ROOM: usize = 2;

/// utime + stime of one `/proc/.../stat` file, in seconds.
fn stat_cpu(path: &std::path::Path) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the ")" that closes the thread name: utime is 14th, stime 15th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / tick
}

/// CPU seconds used so far by this process's threads named `prefix*`.
fn thread_cpu(prefix: &str) -> f64 {
    let mut total = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in tasks.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        total += stat_cpu(&t.path().join("stat"));
    }
    total
}

struct Phone {
    rtp: UdpSocket,
    dest: SocketAddr,
    talker: bool,
    ssrc: u32,
}

/// INVITE with X-Conference-Id, wait for the 200, ACK it.
fn call(sip: &UdpSocket, server: SocketAddr, n: usize, room: usize) -> Option<Phone> {
    let rtp = UdpSocket::bind("127.0.0.1:0").ok()?;
    rtp.set_nonblocking(true).ok()?;
    let local = sip.local_addr().ok()?;
    let rtp_port = rtp.local_addr().ok()?.port();
    let call_id = format!("load-{n}");
    let sdp = format!(
        "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    );
    let head = |method: &str, branch: &str, to_tag: &str, extra: &str, body: &str| {
        format!(
            "{method} sip:conf@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:load{n}@{local}>;tag=f{n}\r\n\
             To: <sip:conf@{server}>{to_tag}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\nContact: <sip:load{n}@{local}>\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let invite = head(
        "INVITE",
        &format!("i{n}"),
        "",
        &format!("X-Conference-Id: room{room}\r\nContent-Type: application/sdp\r\n"),
        &sdp,
    );
    sip.send_to(invite.as_bytes(), server).ok()?;
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok((len, _)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]);
        if !text.starts_with("SIP/2.0 200") || !text.contains(&call_id) {
            continue;
        }
        let to_tag = text
            .lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split_once(";tag="))
            .map(|(_, t)| format!(";tag={}", t.trim()))
            .unwrap_or_default();
        let port: u16 = text
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let ack = head("ACK", &format!("a{n}"), &to_tag, "", "");
        sip.send_to(ack.as_bytes(), server).ok()?;
        return Some(Phone {
            rtp,
            dest: SocketAddr::from(([127, 0, 0, 1], port)),
            talker: n % ROOM_SIZE < TALKERS_PER_ROOM,
            ssrc: 0x1000_0000 + n as u32,
        });
    }
    None
}

/// One 20 ms frame: a sine for talkers, -60 dBFS noise for the rest.
fn payloads() -> ([u8; 160], [u8; 160]) {
    let mut talk = [0i16; 160];
    let mut quiet = [0i16; 160];
    let mut x: u32 = 7;
    for i in 0..160 {
        talk[i] = (5000.0 * (std::f64::consts::TAU * 400.0 * i as f64 / 8000.0).sin()) as i16;
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        quiet[i] = ((x >> 16) as i16) >> 10;
    }
    let (mut t, mut q) = ([0u8; 160], [0u8; 160]);
    Codec::Pcmu.encode(&talk, &mut t);
    Codec::Pcmu.encode(&quiet, &mut q);
    (t, q)
}

struct Report {
    members: usize,
    joined: usize,
    cpu_percent: f64,
    phones_percent: f64,
    ticks: u64,
    late_ticks: u64,
    lost: u64,
    late_packets: u64,
    dropped: u64,
    sent_by_phones: u64,
    send_errors: u64,
    sample_received: u64,
    sample_expected: u64,
}

fn run(members: usize, secs: u64) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("daemon")
        .enable_all()
        .build()
        .expect("runtime");
    let prompts = std::env::temp_dir().join("confgate-load-prompts");
    let overrides: Vec<String> = [
        "sip.listen=127.0.0.1:0".to_owned(),
        "sip.early_media=false".to_owned(),
        "rtp.port_range=20000-29999".to_owned(),
        // More members than the default cap on calls at once.
        "calls.max_calls=0".to_owned(),
        "rooms.trusted=[\"127.0.0.1\"]".to_owned(),
        format!("rooms.max_members={ROOM_SIZE}"),
        format!("prompts.dir={}", prompts.display()),
        "control.socket=".to_owned(),
    ]
    .into();
    let settings = Config::load(None, &overrides).expect("settings");
    let daemon = rt.block_on(Daemon::start(settings)).expect("daemon");
    let server = daemon.sip_addr();

    let sip = UdpSocket::bind("127.0.0.1:0").expect("sip socket");
    sip.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let phones: Vec<Phone> = (0..members)
        .filter_map(|n| call(&sip, server, n, n / ROOM_SIZE))
        .collect();
    let joined = phones.len();

    let (talk, quiet) = payloads();
    let stop_at = Instant::now() + Duration::from_secs(secs + 3);
    let measure_from = Instant::now() + Duration::from_secs(3);
    let sender = std::thread::Builder::new()
        .name("phones".into())
        .spawn(move || {
            let mut packet = [0u8; 172];
            let mut sent = 0u64;
            let mut errors = 0u64;
            let (mut rx, mut expected) = (0u64, 0u64);
            let mut buf = [0u8; 512];
            let start = Instant::now();
            let mut tick = 0u64;
            let own = std::path::Path::new("/proc/thread-self/stat");
            let mut cpu_from = None;
            while Instant::now() < stop_at {
                let due = start + Duration::from_millis(20 * tick);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let measuring = Instant::now() >= measure_from;
                if measuring && cpu_from.is_none() {
                    cpu_from = Some(stat_cpu(own));
                }
                let seq = tick as u16;
                let ts = (tick * 160) as u32;
                for (k, p) in phones.iter().enumerate() {
                    packet[0] = 0x80;
                    packet[1] = 0;
                    packet[2..4].copy_from_slice(&seq.to_be_bytes());
                    packet[4..8].copy_from_slice(&ts.to_be_bytes());
                    packet[8..12].copy_from_slice(&p.ssrc.to_be_bytes());
                    packet[12..].copy_from_slice(if p.talker { &talk } else { &quiet });
                    match p.rtp.send_to(&packet, p.dest) {
                        Ok(_) if measuring => sent += 1,
                        Ok(_) => {}
                        Err(_) => errors += 1,
                    }
                    // Listen on one phone in ten to see what reaches the phones.
                    if k % 10 == 0 {
                        while let Ok((_, _)) = p.rtp.recv_from(&mut buf) {
                            if measuring {
                                rx += 1;
                            }
                        }
                        if measuring {
                            expected += 1;
                        }
                    }
                }
                tick += 1;
            }
            let cpu = stat_cpu(own) - cpu_from.unwrap_or(0.0);
            (sent, errors, rx, expected, cpu)
        })
        .expect("phone thread");

    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let cpu0 = thread_cpu("daemon") + thread_cpu("confgate-media");
    let stats0 = daemon.conference().stats();
    let rooms0 = rt.block_on(daemon.conference().rooms());
    let wall0 = Instant::now();
    let (sent_by_phones, send_errors, sample_received, sample_expected, phones_cpu) =
        sender.join().expect("phones");
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = thread_cpu("daemon") + thread_cpu("confgate-media") - cpu0;
    let stats1 = daemon.conference().stats();
    let rooms1 = rt.block_on(daemon.conference().rooms());
    let sum = |rooms: &[confgate::conference::RoomStatus],
               f: fn(&confgate::conference::MemberStatus) -> u64| {
        rooms.iter().flat_map(|r| &r.members).map(f).sum::<u64>()
    };
    let report = Report {
        members,
        joined,
        cpu_percent: 100.0 * cpu / wall,
        phones_percent: 100.0 * phones_cpu / wall,
        ticks: stats1.ticks - stats0.ticks,
        late_ticks: stats1.late_ticks - stats0.late_ticks,
        lost: sum(&rooms1, |m| m.lost) - sum(&rooms0, |m| m.lost),
        late_packets: sum(&rooms1, |m| m.late) - sum(&rooms0, |m| m.late),
        dropped: stats1.media_dropped - stats0.media_dropped,
        sent_by_phones,
        send_errors,
        sample_received,
        sample_expected,
    };
    rt.block_on(daemon.shutdown());
    rt.shutdown_timeout(Duration::from_secs(1));
    report
}

fn main() {
    let counts: Vec<usize> = std::env::var("CONFGATE_LOAD")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![500, 1000, 2000]);
    let secs: u64 = std::env::var("CONFGATE_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    println!(
        "conference load: rooms of {ROOM_SIZE} ({TALKERS_PER_ROOM} talking), {secs} s measured, daemon on 2 threads"
    );
    println!(
        "{:>8} {:>7} {:>8} {:>9} {:>7} {:>6} {:>9} {:>8} {:>8} {:>10} {:>12}",
        "members",
        "joined",
        "cpu %",
        "phones %",
        "ticks",
        "late",
        "rx lost",
        "rx late",
        "dropped",
        "phone pkts",
        "to phones %"
    );
    for n in counts {
        let r = run(n, secs);
        println!(
            "{:>8} {:>7} {:>8.1} {:>9.1} {:>7} {:>6} {:>9} {:>8} {:>8} {:>10} {:>12.2}",
            r.members,
            r.joined,
            r.cpu_percent,
            r.phones_percent,
            r.ticks,
            r.late_ticks,
            r.lost,
            r.late_packets,
            r.dropped,
            r.sent_by_phones,
            100.0 * r.sample_received as f64 / r.sample_expected.max(1) as f64,
        );
        if r.send_errors > 0 {
            println!("         ({} phone send errors)", r.send_errors);
        }
    }
}
