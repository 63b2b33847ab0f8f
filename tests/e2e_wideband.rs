//! End to end with real softphones on three codecs in one room: an Opus
//! phone, a G.722 phone and a PCMU phone key the same PIN (as RFC 4733
//! events) and each hears the other two. Wideband reaches wideband: the
//! Opus phone's 6 kHz tone is in the G.722 phone's recording and the G.722
//! phone's 5 kHz in the Opus phone's; the PCMU phone hears the tones below
//! 3.4 kHz.

mod common;

use std::time::Duration;

use common::baresip::{Baresip, Options};
use common::daemon;
use common::signal::{band_db, goertzel, temp_dir, write_wav_at};
use confgate::dtmf::Source;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

/// Two tones at `rate`, `secs` long.
fn tones(rate: u32, a: f64, b: f64, secs: usize) -> Vec<i16> {
    (0..rate as usize * secs)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let s = (2.0 * std::f64::consts::PI * a * t).sin()
                + (2.0 * std::f64::consts::PI * b * t).sin();
            (3000.0 * s) as i16
        })
        .collect()
}

struct Phone {
    name: &'static str,
    codec: &'static str,
    module: Option<&'static str>,
    rate: u32,
    /// The tones its microphone plays.
    plays: [f64; 2],
}

const PHONES: [Phone; 3] = [
    Phone {
        name: "opus",
        codec: "opus/48000/2",
        module: Some("opus.so"),
        rate: 16_000,
        plays: [1500.0, 6000.0],
    },
    Phone {
        name: "g722",
        codec: "G722",
        module: Some("g722.so"),
        rate: 16_000,
        plays: [700.0, 5000.0],
    },
    Phone {
        name: "pcmu",
        codec: "PCMU",
        module: None,
        rate: 8000,
        plays: [500.0, 500.0],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_g722_and_pcmu_phones_hear_each_other() {
    let d = daemon(&[r#"media.codecs=["opus", "G722", "PCMU", "PCMA"]"#]).await;
    let mut events = d.subscribe();
    let dir = temp_dir("e2e-wideband");
    let mut phones = Vec::new();
    for p in &PHONES {
        let mic = dir.join(format!("{}.wav", p.name));
        let mut samples = tones(p.rate, p.plays[0], p.plays[1], 40);
        if p.rate == 8000 {
            samples = tones(p.rate, p.plays[0], p.plays[0], 40);
        }
        write_wav_at(&mic, &samples, p.rate);
        let opts = Options {
            codecs: p.codec.into(),
            modules: p.module.into_iter().collect(),
            srate: p.rate,
            ..Options::default()
        };
        let mut phone = Baresip::start_with(p.name, &mic, false, &opts).await;
        // Let the wideband phones hear the greeting before keying.
        let wait = Duration::from_secs(if p.rate > 8000 { 2 } else { 0 });
        let (room, sources) = phone
            .join_room(d.sip_addr(), "2468#", wait, &mut events)
            .await;
        assert_eq!(room.as_deref(), Some("2468"), "the {} phone joined", p.name);
        // The PIN came as telephone-events, on the Opus call too.
        assert_eq!(sources, [Source::Rfc4733; 5], "the {} phone's keys", p.name);
        phones.push(phone);
    }
    // Each member speaks its phone's codec.
    let rooms = common::rooms_json(&d);
    let out = rooms.to_string();
    let mut codecs: Vec<String> = rooms[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["codec"].as_str().unwrap_or("").to_owned())
        .collect();
    codecs.sort();
    assert_eq!(codecs, ["G722", "PCMU", "opus"], "{out}");
    // Everyone in: let each phone record a few seconds of the others.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut dirs = Vec::new();
    for phone in phones {
        dirs.push(phone.quit().await);
    }
    d.shutdown().await;
    for (k, (p, dir)) in PHONES.iter().zip(&dirs).enumerate() {
        let rec = Baresip::heard(dir).expect("a recording");
        let (heard, rate) = read_wav_rate(&rec);
        assert!(
            heard.len() > rate as usize * 4,
            "the {} phone recorded {} samples",
            p.name,
            heard.len()
        );
        if p.rate > 8000 {
            // The greeting was rendered at 16 kHz for them: its fricatives
            // reach above 4 kHz, which an upsampled 8 kHz prompt cannot.
            let greeting = &heard[rate as usize / 5..rate as usize * 9 / 5];
            let high = band_db(greeting, rate, 4500.0, 7500.0);
            eprintln!(
                "{} hears the greeting with {high:.1} dB in 4.5–7.5 kHz",
                p.name
            );
            assert!(
                high > -40.0,
                "the {} phone's greeting: {high:.1} dB above 4.5 kHz",
                p.name
            );
        }
        let end = heard.len() - rate as usize;
        let tail = &heard[end - 2 * rate as usize..end];
        let floor = db(goertzel(tail, rate, 3100.0));
        let level = |f: f64| db(goertzel(tail, rate, f));
        // Its own tones (which nobody else plays) are not sent back to it:
        // what is left of them is distortion, 30 dB under the others.
        let others = PHONES
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != k)
            .flat_map(|(_, o)| o.plays)
            .filter(|&f| f < 3400.0 || p.rate > 8000)
            .map(level)
            .fold(f64::INFINITY, f64::min);
        for &f in p.plays.iter().filter(|&&f| f != 500.0) {
            let own = level(f);
            assert!(
                own < others - 30.0,
                "the {} phone hears its own {f} Hz at {own:.1} dB, the others at {others:.1} dB",
                p.name
            );
        }
        for (j, other) in PHONES.iter().enumerate() {
            if j == k {
                continue;
            }
            for &f in &other.plays {
                // Narrowband carries nothing above 4 kHz.
                if f > 3400.0 && p.rate == 8000 {
                    continue;
                }
                // What only wideband can carry reaches wideband members.
                let l = level(f);
                eprintln!(
                    "{} hears {} Hz from {}: {l:.1} dB (floor {floor:.1} dB, {rate} Hz)",
                    p.name, f, other.name
                );
                assert!(
                    l - floor > 20.0,
                    "the {} phone hears {f} Hz from the {} phone at {l:.1} dB over a floor of {floor:.1} dB",
                    p.name,
                    other.name
                );
            }
        }
    }
}

/// A recording at whatever rate the phone's decoder ran; the first channel.
fn read_wav_rate(path: &std::path::Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).expect("a WAV");
    let spec = r.spec();
    let samples: Vec<i16> = r
        .samples::<i16>()
        .step_by(usize::from(spec.channels))
        .map_while(Result::ok)
        .collect();
    (samples, spec.sample_rate)
}
