//! End to end with a real softphone: baresip dials confgate over loopback
//! and records what it hears; the recording must be the welcome prompt.

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{best_match, envelope, voiced_frames};
use common::{daemon, welcome_prompt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_hears_the_welcome_prompt() {
    let d = daemon(&[]).await;
    let dir = std::env::temp_dir().join(format!("confgate-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A quiet microphone, longer than the call (baresip hangs up when it ends).
    let mic = dir.join("mic.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&mic, spec).unwrap();
    for i in 0..8000 * 40 {
        w.write_sample(((i as u64 * 7919) % 17) as i16 - 8).unwrap();
    }
    w.finalize().unwrap();

    let prompt = welcome_prompt();
    let secs = prompt.len() as f64 / 8000.0;
    let mut phone = Baresip::start("caller", &mic, false).await;
    // Answered, then the whole prompt and a second of what follows recorded.
    phone
        .dial_answered(&format!("sip:4000@{}", d.sip_addr()))
        .await;
    let want = phone.recorded() + prompt.len() + 8000;
    assert!(
        phone.wait_recorded(want, Duration::from_secs(20)).await,
        "recorded {} of {want} samples",
        phone.recorded()
    );
    let dir = phone.quit().await;
    let rec = Baresip::heard(&dir).expect("baresip recorded what it heard");
    let heard: Vec<i16> = hound::WavReader::open(&rec)
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect();
    d.shutdown().await;

    let want = envelope(&prompt);
    let got = envelope(&heard);
    assert!(voiced_frames(&got) > 0, "the recording is not silent");
    let (corr, lag) = best_match(&got, &want);
    let matched = &got[lag..(lag + want.len()).min(got.len())];
    let (vw, vg) = (voiced_frames(&want), voiced_frames(matched));
    eprintln!(
        "recording {:.2} s; prompt {:.2} s found at {:.2} s, envelope correlation {corr:.3}, voiced frames {vg}/{vw}",
        heard.len() as f64 / 8000.0,
        secs,
        lag as f64 * 0.02
    );
    assert!(
        corr > 0.9,
        "the recording's envelope matches the prompt (corr {corr:.3})"
    );
    assert!(matched.len() == want.len(), "the whole prompt was heard");
    assert!(
        vg.abs_diff(vw) * 10 <= vw,
        "voiced length within 10 %: {vg} vs {vw}"
    );
}
