mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn testset_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dtmf-q24");
    if !dir.join("manifest.csv").exists() {
        let st = Command::new("python3")
            .arg(common::signal::shared("dtmf-q24/gen_dtmf_testset.py"))
            .arg(&dir)
            .status()
            .expect("run generator");
        assert!(st.success(), "generator failed");
    }
    dir
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Category -> (expectation, files, correct), and the failures of rows
/// that must pass, with each clip first put through `channel`.
type Table = BTreeMap<String, (String, usize, usize)>;

fn run(channel: impl Fn(&[i16]) -> Vec<i16>) -> (Table, Vec<String>) {
    let dir = testset_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    // category -> (expectation, files, correct)
    let mut table: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f = split_csv(line);
        let (file, expected, category, expectation) = (&f[0], &f[1], &f[2], &f[3]);
        let clip = channel(&common::signal::read_wav(&dir.join(file)));
        let got = confgate::dtmf::inband::detect_all(&clip);
        let want = match expectation.as_str() {
            "must_reject" | "no_dtmf" => "",
            _ => expected.as_str(),
        };
        let ok = got == want;
        let e = table
            .entry(category.clone())
            .or_insert((expectation.clone(), 0, 0));
        e.1 += 1;
        e.2 += ok as usize;
        if !ok && expectation != "should_detect" {
            failures.push(format!("{file}: expected {want:?}, got {got:?}"));
        } else if !ok {
            println!("missed {file}: expected {want:?}, got {got:?}");
        }
    }
    (table, failures)
}

fn check(table: &Table, failures: &[String]) {
    println!(
        "{:<24} {:<14} {:>5} {:>7}",
        "category", "expectation", "files", "correct"
    );
    for (cat, (exp, n, ok)) in table {
        println!("{cat:<24} {exp:<14} {n:>5} {ok:>7}");
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    // The noisiest row is informational in the test set; we hold the
    // detector to 15 of its 16 digits.
    let (_, n, ok) = &table["noise_snr5dB"];
    assert_eq!(*n, 16);
    assert!(*ok >= 15, "{ok}/16 digits at 5 dB SNR");
}

#[test]
fn q24_testset() {
    let (table, failures) = run(|clip| clip.to_vec());
    check(&table, &failures);
}

/// What a caller's keys sound like to the detector on an Opus call: its
/// phone sends 16 kHz Opus, confgate decodes it at 8 kHz.
fn through_opus(clip: &[i16]) -> Vec<i16> {
    use confgate::media::codec::{Codec, Decoder, Encoder, OpusParams};
    use confgate::media::halfband::Upsampler;
    let mut up = Upsampler::default();
    let mut enc = Encoder::new(Codec::Opus, OpusParams::default()).expect("an encoder");
    let mut dec = Decoder::new(Codec::Opus, 8000).expect("a decoder");
    let mut out = Vec::with_capacity(clip.len());
    let mut payload = Vec::new();
    for frame in clip.chunks(160) {
        let mut narrow = [0i16; 160];
        narrow[..frame.len()].copy_from_slice(frame);
        let mut wide = [0i16; 320];
        up.process(&narrow, &mut wide);
        enc.encode(&wide, &mut payload).expect("encodes");
        let mut pcm = [0i16; 160];
        dec.decode(&payload, &mut pcm).expect("decodes");
        out.extend_from_slice(&pcm[..frame.len()]);
    }
    out
}

#[test]
fn q24_testset_through_an_opus_round_trip() {
    let (table, failures) = run(through_opus);
    check(&table, &failures);
}
