//! End to end with real softphones and SRTP: a baresip phone that insists
//! on SRTP (`mediaenc=srtp-mandf`, SDES) keys a PIN into a room where a
//! plain phone waits. Each hears the other's tone in its recording, while
//! what the daemon's RTP ports received from and sent to the SRTP phone,
//! captured on the loopback wire by tcpdump, does not decode as G.711 to
//! the tones: the same decoding of the plain phone's packets does. And a
//! call placed with `trunk.srtp = "required"` to a phone that answers only
//! SRTP (`mediaenc=srtp-mand`) joins the room and hears it, over SRTP.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::baresip::{Baresip, Options};
use common::signal::{goertzel, read_wav, sine, temp_dir, write_wav};
use confgate::events::Event;
use confgate::media::g711::G711;
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

/// The SRTP phone's tone, and the plain phone's.
const SECURE_HZ: f64 = 500.0;
const PLAIN_HZ: f64 = 1300.0;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

/// tcpdump writing UDP on `lo` within `ports` to `file`, once it listens.
fn capture(file: &Path, ports: &str) -> Child {
    let mut child = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-n", "-s", "0", "-w"])
        .arg(file)
        .args(["udp", "and", "portrange", ports])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump runs (scripts/setup --test installs it; it needs root)");
    // It says "listening on lo" once the capture is open.
    let mut err = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        use std::io::Read;
        match err.read(&mut buf) {
            Ok(0) | Err(_) => panic!("tcpdump: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

/// One direction of UDP between a daemon port and a phone's port.
#[derive(Debug, Default)]
struct Flow {
    /// The RTP packets' lengths and their payloads decoded as PCMU.
    lengths: Vec<usize>,
    pcm: Vec<i16>,
}

/// The RTP flows in `file` by (source port, destination port); RTCP is left out.
fn flows(file: &Path) -> std::collections::BTreeMap<(u16, u16), Flow> {
    let mut out = std::collections::BTreeMap::<(u16, u16), Flow>::new();
    let mut reader = PcapReader::new(std::fs::File::open(file).expect("pcap")).expect("header");
    let skip = match reader.header().datalink {
        DataLink::ETHERNET => 14,
        DataLink::LINUX_SLL => 16,
        other => panic!("link type {other:?}"),
    };
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break };
        let ip = &pkt.data[skip.min(pkt.data.len())..];
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        if udp.len() < 8 {
            continue;
        }
        let (src, dst) = (
            u16::from_be_bytes([udp[0], udp[1]]),
            u16::from_be_bytes([udp[2], udp[3]]),
        );
        let rtp = &udp[8..];
        // RTP version 2, not RTCP (RFC 5761 §4), a G.711 frame.
        if rtp.len() < 172
            || rtp[0] >> 6 != 2
            || (192..=223).contains(&rtp[1])
            || rtp[1] & 0x7f != 0
        {
            continue;
        }
        let flow = out.entry((src, dst)).or_default();
        flow.lengths.push(rtp.len());
        let mut pcm = [0i16; 160];
        G711::Pcmu.decode(&rtp[12..172], &mut pcm);
        flow.pcm.extend_from_slice(&pcm);
    }
    out
}

/// The flows in `file` between the daemon's ports (`range`) and a phone:
/// (SRTP: every packet longer than plain G.711, sent by the daemon, flow).
fn classified(file: &Path, range: &str) -> Vec<(bool, bool, u16, u16, Flow)> {
    let (lo, hi) = range.split_once('-').unwrap();
    let ours = |p: u16| (lo.parse().unwrap()..=hi.parse().unwrap()).contains(&p);
    flows(file)
        .into_iter()
        .map(|((src, dst), flow)| {
            let srtp = flow.lengths.iter().all(|&l| l > 172);
            (srtp, ours(src) && !ours(dst), src, dst, flow)
        })
        .collect()
}

/// Stop the capture we started.
fn stop(mut tcpdump: Child) {
    // SAFETY: a plain kill(2) of the child we started.
    unsafe { libc::kill(tcpdump.id() as libc::pid_t, libc::SIGTERM) };
    tcpdump.wait().expect("tcpdump ends");
}

/// The largest share of a second's power that lies at `hz` (1.0: a pure tone).
fn tone_share(pcm: &[i16], hz: f64) -> f64 {
    pcm.chunks_exact(8000)
        .map(|s| {
            let power = s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64;
            2.0 * goertzel(s, 8000, hz) / power.max(1.0)
        })
        .fold(0.0, f64::max)
}

async fn join(
    phone: &mut Baresip,
    d: &confgate::daemon::Daemon,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) {
    let (room, _) = phone
        .join_room(d.sip_addr(), "2468#", Duration::ZERO, events)
        .await;
    assert_eq!(room.as_deref(), Some("2468"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_phone_is_heard_in_a_room_and_its_media_is_not_plain_on_the_wire() {
    let dir = temp_dir("e2e-srtp");
    let range = common::rtp_range();
    let pcap = dir.join("rtp.pcap");
    let tcpdump = capture(&pcap, &range);
    let port_range = format!("rtp.port_range={range}");
    let d = common::daemon(&[&port_range, "rtp.srtp=optional"]).await;
    let mut events = d.subscribe();

    let mic = dir.join("secure.wav");
    write_wav(&mic, &sine(8000, SECURE_HZ, 5000.0, 8000 * 40));
    let opts = Options {
        modules: vec!["srtp.so"],
        account: ";mediaenc=srtp-mandf".into(),
        ..Default::default()
    };
    let mut secure = Baresip::start_with("srtp0", &mic, false, &opts).await;
    join(&mut secure, &d, &mut events).await;

    let mic = dir.join("plain.wav");
    write_wav(&mic, &sine(8000, PLAIN_HZ, 5000.0, 8000 * 40));
    let mut plain = Baresip::start("plain0", &mic, false).await;
    join(&mut plain, &d, &mut events).await;

    // Both in the room: past the joined prompt, three seconds of each other.
    let more = common::prompt("joined").len() + 3 * 8000;
    for phone in [&secure, &plain] {
        let want = phone.recorded() + more;
        assert!(phone.wait_recorded(want, Duration::from_secs(20)).await);
    }
    let (secure_dir, plain_dir) = (secure.quit().await, plain.quit().await);
    d.shutdown().await;
    stop(tcpdump);

    // Each recording holds the other's tone over its own.
    for (dir, own, other) in [
        (&secure_dir, SECURE_HZ, PLAIN_HZ),
        (&plain_dir, PLAIN_HZ, SECURE_HZ),
    ] {
        let heard = read_wav(&Baresip::heard(dir).expect("a recording"));
        assert!(heard.len() > 8000 * 4);
        let end = heard.len() - 8000;
        let tail = &heard[end - 16000..end];
        let (o, m) = (
            db(goertzel(tail, 8000, other)),
            db(goertzel(tail, 8000, own)),
        );
        eprintln!("recording: {other} Hz {o:.1} dB, own {own} Hz {m:.1} dB");
        assert!(o - m > 20.0, "{other} Hz heard over {own} Hz");
    }

    // On the wire: the SRTP phone's flows carry an authentication tag and
    // no tone; the plain phone's flows carry the tones in clear.
    let mut seen = (0, 0);
    for (srtp, sent, src, dst, flow) in classified(&pcap, &range) {
        let hz = match (srtp, sent) {
            (true, false) => SECURE_HZ, // the SRTP phone talks
            (true, true) => PLAIN_HZ,   // what it hears
            (false, false) => PLAIN_HZ,
            (false, true) => SECURE_HZ,
        };
        let share = tone_share(&flow.pcm, hz);
        eprintln!(
            "{src} -> {dst}: {} packets of {:?} bytes, {hz} Hz share {share:.3}",
            flow.lengths.len(),
            flow.lengths.first()
        );
        if flow.lengths.len() < 100 {
            continue;
        }
        if srtp {
            seen.0 += 1;
            assert!(share < 0.05, "{src} -> {dst}: {hz} Hz decodes from SRTP");
        } else {
            seen.1 += 1;
            assert!(share > 0.5, "{src} -> {dst}: {hz} Hz should be plain");
        }
    }
    assert_eq!(seen, (2, 2), "both directions of both phones captured");
}

/// Run the CLI against the daemon's control socket; stdout on success.
fn cli(socket: &Path, args: &[&str]) -> String {
    let (code, out) = common::cli(socket, args);
    assert_eq!(code, 0, "confgate {args:?}: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_placed_with_srtp_required_joins_over_srtp() {
    let dir = temp_dir("e2e-srtp-out");
    let range = common::rtp_range();
    let pcap = dir.join("rtp.pcap");
    let tcpdump = capture(&pcap, &range);
    let port_range = format!("rtp.port_range={range}");
    let d = common::daemon(&[&port_range, "trunk.allow=[\"*\"]", "trunk.srtp=required"]).await;
    let socket = d
        .control_endpoints()
        .0
        .expect("a control socket")
        .to_owned();
    let mut events = d.subscribe();

    // A plain caller in the room, talking.
    let mic = dir.join("plain.wav");
    write_wav(&mic, &sine(8000, PLAIN_HZ, 5000.0, 8000 * 40));
    let mut plain = Baresip::start("plain1", &mic, false).await;
    join(&mut plain, &d, &mut events).await;

    // The dialled phone answers by itself, SRTP only (RTP/SAVP).
    let mic = dir.join("quiet.wav");
    write_wav(&mic, &sine(8000, SECURE_HZ, 20.0, 8000 * 40));
    let opts = Options {
        modules: vec!["srtp.so"],
        account: ";mediaenc=srtp-mand".into(),
        ..Default::default()
    };
    let secure = Baresip::start_with("srtp1", &mic, true, &opts).await;
    let call = cli(
        &socket,
        &["dial", "2468", &format!("sip:srtp1@{}", secure.sip)],
    );
    assert!(!call.trim().is_empty());
    let joined = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(Event::MemberJoined { call: c, room, .. }) = events.recv().await {
                if c == call.trim() {
                    return room;
                }
            }
        }
    })
    .await;
    assert_eq!(
        joined.ok().as_deref(),
        Some("2468"),
        "the dialled phone joined"
    );
    let want = secure.recorded() + common::prompt("joined").len() + 3 * 8000;
    assert!(secure.wait_recorded(want, Duration::from_secs(20)).await);
    let (secure_dir, _) = (secure.quit().await, plain.quit().await);
    d.shutdown().await;
    stop(tcpdump);

    let heard = read_wav(&Baresip::heard(&secure_dir).expect("a recording"));
    let end = heard.len() - 8000;
    let tail = &heard[end - 16000..end];
    let (o, m) = (
        db(goertzel(tail, 8000, PLAIN_HZ)),
        db(goertzel(tail, 8000, 300.0)),
    );
    eprintln!("dialled phone: {PLAIN_HZ} Hz {o:.1} dB, elsewhere {m:.1} dB");
    assert!(o - m > 20.0, "the dialled phone hears the room");
    let flows = classified(&pcap, &range);
    let to_secure: Vec<_> = flows
        .iter()
        .filter(|f| f.0 && f.1 && f.4.lengths.len() > 100)
        .collect();
    assert_eq!(to_secure.len(), 1, "one SRTP flow to the dialled phone");
    let share = tone_share(&to_secure[0].4.pcm, PLAIN_HZ);
    assert!(
        share < 0.05,
        "{PLAIN_HZ} Hz decodes from its SRTP ({share:.3})"
    );
}
