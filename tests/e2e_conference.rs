//! End to end with real softphones: three baresip phones, each with its own
//! tone as microphone, key the same PIN; each one's recording holds the other
//! two tones and not its own.

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::daemon;
use common::signal::{goertzel, read_wav, sine, temp_dir, write_wav};

const FREQS: [f64; 3] = [500.0, 800.0, 1300.0];

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

/// Waits until every phone has recorded the joined prompt's length and
/// three seconds more from now (bounded): the analysis reads the last
/// seconds before the hang-ups.
async fn talk_past_the_prompt(phones: &[Baresip]) {
    let more = common::prompt("joined").len() + 3 * 8000;
    let wants: Vec<usize> = phones.iter().map(|p| p.recorded() + more).collect();
    for (k, (phone, &want)) in phones.iter().zip(&wants).enumerate() {
        assert!(
            phone.wait_recorded(want, Duration::from_secs(20)).await,
            "phone {k} recorded {} of {want} samples",
            phone.recorded()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_baresip_phones_hear_each_other() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let dir = temp_dir("e2e-conference");
    let mut phones = Vec::new();
    for (k, &f) in FREQS.iter().enumerate() {
        let mic = dir.join(format!("tone{k}.wav"));
        write_wav(&mic, &sine(8000, f, 5000.0, 8000 * 40));
        let mut phone = Baresip::start(&format!("conf{k}"), &mic, false).await;
        let (room, _) = phone
            .join_room(d.sip_addr(), "2468#", Duration::ZERO, &mut events)
            .await;
        assert_eq!(room.as_deref(), Some("2468"), "phone {k} joined");
        phones.push(phone);
    }
    // All three in the room: each phone records the last one's joined
    // prompt and then three seconds of the others talking.
    talk_past_the_prompt(&phones).await;
    let mut dirs = Vec::new();
    for phone in phones {
        dirs.push(phone.quit().await);
    }
    d.shutdown().await;
    for (k, dir) in dirs.iter().enumerate() {
        let rec = Baresip::heard(dir).expect("a recording");
        let heard = read_wav(&rec);
        assert!(
            heard.len() > 8000 * 4,
            "phone {k} recorded {} samples",
            heard.len()
        );
        // The last seconds with all three in the room, before the hang-ups.
        let end = heard.len() - 8000;
        let tail = &heard[end - 16000..end];
        let own = db(goertzel(tail, 8000, FREQS[k]));
        for (j, &f) in FREQS.iter().enumerate() {
            if j != k {
                let other = db(goertzel(tail, 8000, f));
                eprintln!(
                    "phone {k}: {f} Hz {other:.1} dB, own {} Hz {own:.1} dB",
                    FREQS[k]
                );
                assert!(
                    other - own > 20.0,
                    "phone {k} hears {f} Hz over its own tone"
                );
            }
        }
    }
}
