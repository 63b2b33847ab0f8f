//! Mixer cost per 20 ms tick for one room of 3, 10, 100 and 1,000 members,
//! and heap allocations per tick. `cargo bench --bench mixer` prints them.
//!
//! Each tick every member delivers one G.711 frame (as from the network):
//! three talk (sines), the rest send low background noise that the talk
//! detector ignores; then the mixer ticks and every member's payload is
//! read, as the sender would. A second run has every member talking.
//!
//! A second table has codec mixes (all G.711, half Opus, all Opus, all
//! G.722) in rooms of 10 and 100, 3 talking. Each member sends real payloads
//! of its codec, encoded once beforehand from a continuous signal (so Opus
//! decodes as it would from a phone), and every tick does what the media
//! thread does: push every member's payload, tick, then take each member's
//! output and, for wideband members, encode it with the member's own
//! encoder, one per member as each call has one.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confgate::media::codec::{Codec, Encoder, OpusParams, MAX_PAYLOAD};
use confgate::media::mixer::{MemberId, Mixer, Output};

#[path = "common/counting.rs"]
mod counting;
use counting::ALLOCS;

const WARMUP: usize = 100;
const TICKS: usize = 1000;

fn frames(talkers: usize) -> Vec<[u8; 160]> {
    let mut x: u32 = 99;
    (0..talkers.max(1) + 1)
        .map(|k| {
            let mut pcm = [0i16; 160];
            for (i, s) in pcm.iter_mut().enumerate() {
                *s = if k < talkers {
                    let f = 300.0 + 170.0 * k as f64;
                    (5000.0 * (std::f64::consts::TAU * f * i as f64 / 8000.0).sin()) as i16
                } else {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    ((x >> 16) as i16) >> 10 // about -60 dBFS
                };
            }
            let mut enc = [0u8; 160];
            Codec::Pcmu.g711().expect("G.711").encode(&pcm, &mut enc);
            enc
        })
        .collect()
}

struct Figures {
    mean: Duration,
    p99: Duration,
    max: Duration,
    allocs_per_tick: f64,
}

fn run(members: usize, talkers: usize) -> Figures {
    let mut mixer = Mixer::new();
    let room = mixer.open_room();
    let ids: Vec<MemberId> = (0..members)
        .map(|k| {
            let codec = if k % 2 == 0 { Codec::Pcmu } else { Codec::Pcma };
            mixer.add_member(room, codec).expect("room is open")
        })
        .collect();
    let payloads = frames(talkers);
    let t0 = Instant::now();
    let mut times = Vec::with_capacity(TICKS);
    let mut checksum = 0u64;
    let mut allocs = 0;
    for tick in 0..WARMUP + TICKS {
        let at = t0 + Duration::from_millis(20 * tick as u64);
        let before = ALLOCS.load(Ordering::Relaxed);
        let start = Instant::now();
        for (k, &id) in ids.iter().enumerate() {
            let p = &payloads[k.min(talkers)];
            mixer.push(id, (tick * 160) as u32, p, at);
        }
        mixer.tick();
        for &id in &ids {
            match mixer.output(id) {
                Some(Output::Encoded(out)) => checksum = checksum.wrapping_add(u64::from(out[0])),
                Some(Output::Pcm(out)) => checksum = checksum.wrapping_add(out[0] as u64),
                None => {}
            }
        }
        let took = start.elapsed();
        if tick >= WARMUP {
            times.push(took);
            allocs += ALLOCS.load(Ordering::Relaxed) - before;
        }
    }
    std::hint::black_box(checksum);
    Figures::of(times, allocs)
}

/// Frames in each pre-encoded sequence (1 s), replayed in a loop.
const SEQ: usize = 50;

/// A codec mix: the codec of member `k`.
#[derive(Clone, Copy)]
enum Mix {
    G711,
    HalfOpus,
    Opus,
    G722,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::G711 => "all G.711",
            Mix::HalfOpus => "half Opus",
            Mix::Opus => "all Opus",
            Mix::G722 => "all G.722",
        }
    }

    fn codec(self, k: usize) -> Codec {
        match self {
            Mix::G711 => Codec::Pcmu,
            Mix::HalfOpus if k % 2 == 1 => Codec::Opus,
            Mix::HalfOpus => Codec::Pcmu,
            Mix::Opus => Codec::Opus,
            Mix::G722 => Codec::G722,
        }
    }
}

/// [`SEQ`] payloads of `codec`, one 20 ms frame each, encoded from one
/// continuous signal: a sine for talker `talker`, -60 dBFS noise for `None`.
fn sequence(codec: Codec, talker: Option<usize>) -> Vec<Vec<u8>> {
    let rate = f64::from(codec.sample_rate());
    let n = codec.frame_samples();
    let mut enc = Encoder::new(codec, OpusParams::default()).expect("encoder");
    let mut x: u32 = 99;
    let mut pcm = vec![0i16; n];
    (0..SEQ)
        .map(|f| {
            for (i, s) in pcm.iter_mut().enumerate() {
                *s = match talker {
                    Some(k) => {
                        let freq = 300.0 + 170.0 * k as f64;
                        let t = (f * n + i) as f64 / rate;
                        (5000.0 * (std::f64::consts::TAU * freq * t).sin()) as i16
                    }
                    None => {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        ((x >> 16) as i16) >> 10
                    }
                };
            }
            let mut out = Vec::new();
            enc.encode(&pcm, &mut out).expect("encode");
            out
        })
        .collect()
}

fn run_mix(members: usize, talkers: usize, mix: Mix) -> Figures {
    let mut mixer = Mixer::new();
    let room = mixer.open_room();
    let codecs: Vec<Codec> = (0..members).map(|k| mix.codec(k)).collect();
    let ids: Vec<MemberId> = codecs
        .iter()
        .map(|&c| mixer.add_member(room, c).expect("room is open"))
        .collect();
    // The sequences member `k` sends: its own talk, or the shared noise.
    let mut talk: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut noise: Vec<(Codec, Vec<Vec<u8>>)> = Vec::new();
    for (k, &c) in codecs.iter().enumerate() {
        if k < talkers {
            talk.push(sequence(c, Some(k)));
        } else if !noise.iter().any(|(have, _)| *have == c) {
            noise.push((c, sequence(c, None)));
        }
    }
    let sent: Vec<&[Vec<u8>]> = codecs
        .iter()
        .enumerate()
        .map(|(k, &c)| match talk.get(k) {
            Some(seq) => seq.as_slice(),
            None => noise
                .iter()
                .find(|(have, _)| *have == c)
                .map(|(_, seq)| seq.as_slice())
                .expect("noise for every codec"),
        })
        .collect();
    let mut encoders: Vec<Encoder> = codecs
        .iter()
        .map(|&c| Encoder::new(c, OpusParams::default()).expect("encoder"))
        .collect();
    let mut payloads: Vec<Vec<u8>> = (0..members)
        .map(|_| Vec::with_capacity(MAX_PAYLOAD))
        .collect();
    let t0 = Instant::now();
    let mut times = Vec::with_capacity(TICKS);
    let mut checksum = 0u64;
    let mut allocs = 0;
    for tick in 0..WARMUP + TICKS {
        let at = t0 + Duration::from_millis(20 * tick as u64);
        let before = ALLOCS.load(Ordering::Relaxed);
        let start = Instant::now();
        for (k, &id) in ids.iter().enumerate() {
            let ts = tick as u32 * codecs[k].frame_ts();
            mixer.push(id, ts, &sent[k][tick % SEQ], at);
        }
        mixer.tick();
        for (k, &id) in ids.iter().enumerate() {
            match mixer.output(id) {
                Some(Output::Encoded(out)) => checksum = checksum.wrapping_add(u64::from(out[0])),
                Some(Output::Pcm(pcm)) => {
                    let out = &mut payloads[k];
                    if encoders[k].encode(pcm, out).is_ok() {
                        checksum = checksum.wrapping_add(out.len() as u64);
                    }
                }
                None => {}
            }
        }
        let took = start.elapsed();
        if tick >= WARMUP {
            times.push(took);
            allocs += ALLOCS.load(Ordering::Relaxed) - before;
        }
    }
    std::hint::black_box(checksum);
    Figures::of(times, allocs)
}

impl Figures {
    /// The figures of these tick times and allocations.
    fn of(mut times: Vec<Duration>, allocs: u64) -> Figures {
        times.sort();
        Figures {
            mean: times.iter().sum::<Duration>() / times.len() as u32,
            p99: times[times.len() * 99 / 100],
            max: times[times.len() - 1],
            allocs_per_tick: allocs as f64 / TICKS as f64,
        }
    }
}

fn main() {
    println!(
        "mixer: one 20 ms tick (push a frame per member, mix, read every payload), {TICKS} ticks"
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>12}",
        "members", "talking", "mean µs", "p99 µs", "max µs", "allocs/tick"
    );
    for (members, talkers) in [
        (3, 3),
        (10, 3),
        (100, 3),
        (1000, 3),
        (100, 100),
        (1000, 1000),
    ] {
        let f = run(members, talkers);
        println!(
            "{members:>8} {talkers:>9} {:>10.1} {:>10.1} {:>10.1} {:>12.2}",
            f.mean.as_secs_f64() * 1e6,
            f.p99.as_secs_f64() * 1e6,
            f.max.as_secs_f64() * 1e6,
            f.allocs_per_tick
        );
    }
    println!();
    println!(
        "codec mixes: push each member's payload in its codec, mix, take every output and encode the wideband ones, {TICKS} ticks"
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "members", "talking", "mix", "mean µs", "p99 µs", "max µs", "µs/member", "allocs/tick"
    );
    for members in [10, 100] {
        for mix in [Mix::G711, Mix::HalfOpus, Mix::Opus, Mix::G722] {
            let f = run_mix(members, 3, mix);
            let mean = f.mean.as_secs_f64() * 1e6;
            println!(
                "{members:>8} {:>9} {:>10} {mean:>10.1} {:>10.1} {:>10.1} {:>12.2} {:>12.2}",
                3,
                mix.name(),
                f.p99.as_secs_f64() * 1e6,
                f.max.as_secs_f64() * 1e6,
                mean / members as f64,
                f.allocs_per_tick
            );
        }
    }
}
