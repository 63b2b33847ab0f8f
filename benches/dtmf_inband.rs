//! In-band DTMF detector throughput: how many 8 kHz channels one core keeps
//! in real time. `cargo bench --bench dtmf_inband` prints the figure.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::time::Instant;

use confgate::dtmf::inband::InbandDetector;

/// 10 s of a realistic mix: the 16 digits at 100 ms on/off, then low-level noise.
fn signal() -> Vec<i16> {
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let mut s = Vec::with_capacity(80_000);
    for i in 0..16 {
        let (fl, fh) = (LOW[i / 4], HIGH[i % 4]);
        for n in 0..800 {
            let t = f64::from(n) / 8000.0;
            let v = 6000.0
                * ((std::f64::consts::TAU * fl * t).sin() + (std::f64::consts::TAU * fh * t).sin());
            s.push(v as i16);
        }
        s.extend(std::iter::repeat_n(0, 800));
    }
    let mut x: u32 = 12345;
    while s.len() < 80_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push(((x >> 16) as i16) >> 6);
    }
    s
}

fn main() {
    let s = signal();
    const CHANNELS: usize = 256;
    let mut dets: Vec<InbandDetector> = (0..CHANNELS).map(|_| InbandDetector::new()).collect();
    let mut out = Vec::with_capacity(1024);
    let mut digits = 0;
    let start = Instant::now();
    // 20 ms packets, round-robin over the channels, as a media loop would.
    for packet in s.chunks(160) {
        for det in dets.iter_mut() {
            det.feed(packet, &mut out);
        }
        digits += out.len();
        out.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = (s.len() * CHANNELS) as f64 / secs;
    println!(
        "in-band DTMF: {:.1} M samples/s on one core = {:.0} real-time 8 kHz channels ({} digits found, {} expected)",
        rate / 1e6,
        rate / 8000.0,
        digits,
        16 * CHANNELS
    );
}
