//! The in-band detector on recordings it did not make: real DTMF recordings
//! and speech with none. The expected digits were checked with an independent
//! decoder (multimon-ng's DTMF demodulator finds the same in every file).

mod common;

use std::path::Path;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/dtmf-inband/decoded"
);

/// Every recording in the folder and the digits it carries.
const EXPECTED: &[(&str, &str)] = &[
    ("Numbers_1-5_3s.pcm16.wav", ""), // speech: "one" to "five"
    ("cago-dtmf2.pcm16.wav", "2"),
    ("dtmf-1.pcm16.wav", "1"),
    ("dtmf_2_digit_pairs.pcm16.wav", "1122"),
    ("dtmf_4_digits_fast.pcm16.wav", "1234"),
    ("dtmf_4_digits_slow.pcm16.wav", "1234"),
    ("dtmfs-1-9.pcm16.wav", "12345#6789"),
    ("g711a.pcm16.wav", ""), // speech
];

#[test]
fn every_recording_gives_its_digits_and_speech_gives_none() {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .expect("shared/testdata beside the checkout")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".wav"))
        .collect();
    names.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed, "every recording has an expectation");
    let mut wrong = Vec::new();
    for (name, want) in EXPECTED {
        let samples = common::signal::read_wav(&Path::new(DIR).join(name));
        let mut detector = confgate::dtmf::inband::InbandDetector::new();
        let mut found = Vec::new();
        detector.feed(&samples, &mut found);
        let got: String = found.iter().map(|d| d.digit).collect();
        // Each press is placed in the file, in order.
        let at: Vec<usize> = found.iter().map(|d| d.at_sample as usize).collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]) && at.iter().all(|&a| a < samples.len()),
            "{name}: presses at {at:?} of {} samples",
            samples.len()
        );
        if got != *want {
            wrong.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
