mod common;

use std::path::Path;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/dtmf-inband/decoded"
);

fn digits(name: &str) -> String {
    confgate::dtmf::inband::detect_all(&common::signal::read_wav(&Path::new(DIR).join(name)))
}

#[test]
fn known_recordings() {
    assert_eq!(digits("dtmf_2_digit_pairs.pcm16.wav"), "1122");
    assert_eq!(digits("dtmf_4_digits_fast.pcm16.wav"), "1234");
    assert_eq!(digits("dtmf_4_digits_slow.pcm16.wav"), "1234");
}

#[test]
fn report_all_recordings() {
    let mut names: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wav"))
        .collect();
    names.sort();
    for n in names {
        let s = common::signal::read_wav(&Path::new(DIR).join(&n));
        let mut det = confgate::dtmf::inband::InbandDetector::new();
        let mut out = Vec::new();
        det.feed(&s, &mut out);
        let d: String = out.iter().map(|d| d.digit).collect();
        println!("{n:<32} {:>6.2} s  {d:?}", s.len() as f64 / 8000.0);
        for x in &out {
            println!(
                "    {} at {:.3} s  low {:.1} dBm0  high {:.1} dBm0  twist {:+.1} dB",
                x.digit,
                x.at_sample as f64 / 8000.0,
                x.low_dbm0,
                x.high_dbm0,
                x.twist_db
            );
        }
    }
}
