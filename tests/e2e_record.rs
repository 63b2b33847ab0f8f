//! Recording, end to end: two baresip phones, each with its own tone, in a
//! room that records from its first member (`record = true`); the CLI
//! stops it and starts another; each WAV holds both phones' tones, and
//! `recording_stopped` names the file and how long it is.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{goertzel, sine, temp_dir, write_wav};
use common::{cli, daemon, expect_event};
use confgate::events::Event;

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-12).log10()
}

fn stopped(e: &Event) -> Option<(String, f64)> {
    match e {
        Event::RecordingStopped { path, secs, .. } => Some((path.clone(), *secs)),
        _ => None,
    }
}

/// The WAV at `path` holds both tones, at a level a listener would hear.
fn holds_both(path: &str, tones: [f64; 2]) {
    let mut reader = hound::WavReader::open(path).expect("a WAV");
    let spec = reader.spec();
    // The room's own rate.
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16)
    );
    let rec: Vec<i16> = reader.samples::<i16>().map_while(Result::ok).collect();
    // The last two seconds, when both phones were talking.
    let tail = &rec[rec.len().saturating_sub(32_000)..];
    for hz in tones {
        let level = db(goertzel(tail, 16_000, hz));
        eprintln!("{path}: {hz} Hz at {level:.1} dB");
        assert!(level > 50.0, "{hz} Hz in the recording at {level:.1} dB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_room_writes_both_phones_to_a_wav_named_in_the_events() {
    let dir: PathBuf = temp_dir("e2e-record").join("recordings");
    let d = daemon(&[
        "rooms.room=[{id=\"board\", pin=\"1357\", record=true}]",
        &format!("recordings.dir=\"{}\"", dir.display()),
    ])
    .await;
    let socket = d
        .control_endpoints()
        .0
        .expect("a control socket")
        .to_owned();
    let mut events = d.subscribe();
    let uri = format!("sip:4000@{}", d.sip_addr());
    let tones = [500.0, 1300.0];
    let mut phones = Vec::new();
    for (k, hz) in tones.into_iter().enumerate() {
        let mic = temp_dir(&format!("rec{k}")).join("tone.wav");
        write_wav(&mic, &sine(8000, hz, 4000.0, 8000 * 60));
        let mut phone = Baresip::start(&format!("rec{k}"), &mic, false).await;
        phone.dial_answered(&uri).await;
        phone.command("sndcode", "1357#").await;
        phones.push(phone);
    }
    // The first member's join starts the recording.
    let (mut first, mut joined) = (None, 0);
    while first.is_none() || joined < 2 {
        match expect_event(&mut events, |e| match e {
            Event::RecordingStarted { room, path } if room == "board" => Some(Some(path.clone())),
            Event::MemberJoined { .. } => Some(None),
            _ => None,
        })
        .await
        {
            Some(path) => first = Some(path),
            None => joined += 1,
        }
    }
    let first = first.unwrap_or_default();
    assert!(first.starts_with(&dir.display().to_string()), "{first}");
    tokio::time::sleep(Duration::from_secs(4)).await;

    let (code, out) = cli(&socket, &["record", "board"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("already_recording"), "{out}");
    let (code, out) = cli(&socket, &["stop-recording", "board"]);
    assert_eq!((code, out.trim()), (0, first.as_str()));
    let (path, secs) = expect_event(&mut events, stopped).await;
    assert_eq!(path, first);
    assert!(secs > 4.0, "{secs} s recorded");
    holds_both(&path, tones);
    let (code, out) = cli(&socket, &["stop-recording", "board"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not_recording"), "{out}");
    let (code, out) = cli(&socket, &["record", "nowhere"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no_such_room"), "{out}");

    // Recorded again from the CLI: a second file, which the room's end closes.
    let (code, out) = cli(&socket, &["record", "board"]);
    assert_eq!(code, 0, "{out}");
    let second = out.trim().to_owned();
    assert_ne!(second, first);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for phone in phones {
        phone.quit().await;
    }
    let (path, secs) = expect_event(&mut events, stopped).await;
    assert_eq!(path, second);
    assert!(secs > 2.0, "{secs} s recorded");
    holds_both(&path, tones);
    d.shutdown().await;
}
