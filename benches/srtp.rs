//! SRTP cost per packet: protect and unprotect of a 20 ms G.711 RTP packet
//! (172 bytes) for each suite, and heap allocations per packet.
//! `cargo bench --bench srtp` prints them.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::sync::atomic::Ordering;
use std::time::Instant;

use confgate::rtp::srtp::{MasterKey, SrtpKeys, SrtpSession, Suite};

#[path = "common/counting.rs"]
mod counting;
use counting::ALLOCS;

const PACKETS: u32 = 200_000;
/// Fewer than one sequence-number cycle, so a fresh receiver follows.
const UNPROTECTED: u32 = 60_000;

fn packet(seq: u16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x80, 0x00]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    out.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    out.extend((0..160u8).map(|i| i.wrapping_mul(7)));
}

fn main() {
    println!("SRTP per 172-byte RTP packet ({PACKETS} packets, one core):");
    for suite in Suite::ALL {
        let (a, b) = (MasterKey::random(), MasterKey::random());
        let mut tx = SrtpSession::new(SrtpKeys {
            suite,
            local: a,
            remote: b,
        })
        .expect("keys");
        let mut buf = Vec::with_capacity(256);
        // Protect: a stream of packets, the sequence number wrapping.
        let before = ALLOCS.load(Ordering::Relaxed);
        let t = Instant::now();
        for n in 0..PACKETS {
            packet(n as u16, &mut buf);
            tx.protect_rtp(&mut buf).expect("protect");
            std::hint::black_box(&buf);
        }
        let protect = t.elapsed().as_secs_f64() / f64::from(PACKETS);
        let allocs_protect = ALLOCS.load(Ordering::Relaxed) - before;
        // Unprotect: a fresh stream, sealed beforehand.
        let mut tx = SrtpSession::new(SrtpKeys {
            suite,
            local: a,
            remote: b,
        })
        .expect("keys");
        let mut rx = SrtpSession::new(SrtpKeys {
            suite,
            local: b,
            remote: a,
        })
        .expect("keys");
        let sealed: Vec<Vec<u8>> = (0..UNPROTECTED)
            .map(|n| {
                packet(n as u16, &mut buf);
                tx.protect_rtp(&mut buf).expect("protect");
                buf.clone()
            })
            .collect();
        let mut copy = vec![0u8; 256];
        let before = ALLOCS.load(Ordering::Relaxed);
        let t = Instant::now();
        for p in &sealed {
            copy[..p.len()].copy_from_slice(p);
            let n = rx.unprotect_rtp(&mut copy[..p.len()]).expect("authentic");
            std::hint::black_box(&copy[..n]);
        }
        let unprotect = t.elapsed().as_secs_f64() / sealed.len() as f64;
        let allocs_unprotect = ALLOCS.load(Ordering::Relaxed) - before;
        println!(
            "  {:<24} protect {:>6.0} ns  unprotect {:>6.0} ns  allocations/packet: protect {:.1}, unprotect {:.1}",
            suite.name(),
            protect * 1e9,
            unprotect * 1e9,
            allocs_protect as f64 / f64::from(PACKETS),
            allocs_unprotect as f64 / sealed.len() as f64,
        );
    }
}
