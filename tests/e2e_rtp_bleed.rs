//! End to end under an "RTP Bleed" attack: a stranger sprays every port of
//! `rtp.port_range` with in-sequence RTP (audio, and telephone-events for the
//! digit 9) from before the calls start. Two baresip phones still key their
//! PIN, join their room and hear each other; the stranger gets no packet
//! back and none of its digits is taken.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{goertzel, read_wav, sine, temp_dir, write_wav};
use confgate::daemon::Daemon;
use confgate::events::Event;
use tokio::net::UdpSocket;

const FREQS: [f64; 2] = [600.0, 1100.0];

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

/// One RTP packet: version 2, `pt`, one SSRC, `seq` and `ts`.
fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Send to every port of `ports`, 50 packets a second each, until `stop`;
/// count the rounds sent and what comes back.
async fn spray(
    sock: Arc<UdpSocket>,
    ports: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
) {
    let listener = {
        let sock = sock.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while sock.recv_from(&mut buf).await.is_ok() {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 0u16;
    let loud = [0x80u8; 160]; // PCMU near full scale
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        seq = seq.wrapping_add(1);
        let ts = u32::from(seq) * 160;
        // Every other packet an RFC 4733 event: digit 9, end bit, volume 10.
        let packet = if seq % 2 == 0 {
            rtp(101, seq, ts, &[9, 0x8a, 0x03, 0x20])
        } else {
            rtp(0, seq, ts, &loud)
        };
        for port in &ports {
            sock.send_to(&packet, port).await.ok();
        }
        rounds.fetch_add(1, Ordering::Relaxed);
    }
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_spraying_the_port_range_gets_nothing_and_callers_still_meet() {
    let settings = common::settings(&[]);
    let ports: Vec<SocketAddr> = settings
        .rtp_ports
        .clone()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    let d = Daemon::start(settings).await.expect("daemon starts");
    let mut events = d.subscribe();

    // The stranger is on another loopback address than the phones.
    let stranger = Arc::new(UdpSocket::bind("127.0.0.2:0").await.expect("bind"));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let attack = tokio::spawn(spray(
        stranger,
        ports,
        stop.clone(),
        rounds.clone(),
        answered.clone(),
    ));
    // The spray is under way before the first call.
    for _ in 0..100 {
        if rounds.load(Ordering::Relaxed) >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rounds.load(Ordering::Relaxed) >= 10, "the spray started");

    let dir = temp_dir("e2e-rtp-bleed");
    let mut phones = Vec::new();
    for (k, &f) in FREQS.iter().enumerate() {
        let mic = dir.join(format!("tone{k}.wav"));
        write_wav(&mic, &sine(8000, f, 5000.0, 8000 * 40));
        let mut phone = Baresip::start(&format!("bleed{k}"), &mic, false).await;
        phone
            .dial_answered(&format!("sip:4000@{}", d.sip_addr()))
            .await;
        phone.command("sndcode", "2468#").await;
        let mut digits = String::new();
        let joined = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(Event::Digit { digit, .. }) => digits.push(digit),
                    Ok(Event::MemberJoined { room, .. }) => return room,
                    _ => {}
                }
            }
        })
        .await;
        assert_eq!(digits, "2468#", "phone {k}: only its own digits");
        assert_eq!(joined.ok().as_deref(), Some("2468"), "phone {k} joined");
        phones.push(phone);
    }
    // Both phones record the joined prompt and three seconds of each other.
    let more = common::prompt("joined").len() + 3 * 8000;
    let wants: Vec<usize> = phones.iter().map(|p| p.recorded() + more).collect();
    for (k, (phone, &want)) in phones.iter().zip(&wants).enumerate() {
        let done = phone.wait_recorded(want, Duration::from_secs(20)).await;
        assert!(done, "phone {k} recorded {} of {want}", phone.recorded());
    }
    stop.store(true, Ordering::Relaxed);
    attack.await.ok();
    let mut dirs = Vec::new();
    for phone in phones {
        dirs.push(phone.quit().await);
    }
    d.shutdown().await;

    assert_eq!(
        answered.load(Ordering::Relaxed),
        0,
        "the stranger got packets back"
    );
    for (k, dir) in dirs.iter().enumerate() {
        let heard = read_wav(&Baresip::heard(dir).expect("a recording"));
        assert!(heard.len() > 8000 * 4, "phone {k} recorded {}", heard.len());
        let end = heard.len() - 8000;
        let tail = &heard[end - 16000..end];
        let other = db(goertzel(tail, 8000, FREQS[1 - k]));
        let off = db(goertzel(tail, 8000, 2000.0));
        eprintln!("phone {k}: other's tone {other:.1} dB, off-frequency {off:.1} dB");
        assert!(other - off > 20.0, "phone {k} hears the other phone");
    }
}
