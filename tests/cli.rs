//! The `confgate` command as a user runs it.

use std::process::Command;

fn confgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confgate"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_default_and_names_a_bad_key() {
    let (code, out, _) = confgate(&["check-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("built-in configuration: ok"), "{out}");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    assert_eq!(confgate(&["check-config", shipped]).0, 0);

    let (code, _, err) = confgate(&["check-config", "--set", "rtp.port_range=9-5"]);
    assert_eq!(code, 64, "usage/config errors exit 64");
    assert!(err.contains("rtp.port_range:"), "{err}");
    let (code, _, err) = confgate(&["run", "--set", "sip.listen=not-an-address"]);
    assert_eq!(code, 64);
    assert!(err.contains("sip.listen:"), "{err}");
    assert_eq!(confgate(&["no-such-command"]).0, 64);
}

#[test]
fn check_config_merges_a_partial_file_over_the_default() {
    let path =
        std::env::temp_dir().join(format!("confgate-cli-partial-{}.toml", std::process::id()));
    let path_str = path.to_str().expect("temp path is UTF-8");
    std::fs::write(&path, "[sip]\nlisten = \"127.0.0.1:5070\"\n").unwrap();
    let (code, out, err) = confgate(&["check-config", path_str]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{path_str}: ok")), "{out}");

    std::fs::write(&path, "[sip]\nlistn = \"127.0.0.1:5070\"\n").unwrap();
    let (code, _, err) = confgate(&["check-config", path_str]);
    assert_eq!(code, 64);
    assert!(err.contains("sip.listn:"), "{err}");

    std::fs::write(&path, "[rtp]\ntimeout_secs = \"x\"\n").unwrap();
    let (code, _, err) = confgate(&["check-config", path_str]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 64);
    assert!(err.contains("rtp.timeout_secs:"), "{err}");
}

#[test]
fn dtmf_prints_the_digits_in_a_recording() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/dtmf-inband/decoded/"
    );
    let (code, out, _) = confgate(&["dtmf", &format!("{dir}dtmf_4_digits_fast.pcm16.wav")]);
    assert_eq!((code, out.as_str()), (0, "1234\n"));
    let (code, out, _) = confgate(&["dtmf", &format!("{dir}g711a.pcm16.wav")]);
    assert_eq!((code, out.as_str()), (0, "\n"), "speech: an empty line");
    let (_, out, _) = confgate(&[
        "dtmf",
        "--verbose",
        &format!("{dir}dtmf_2_digit_pairs.pcm16.wav"),
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].contains(" s  1  low ") && lines[0].contains("twist"),
        "{out}"
    );
    assert_eq!(lines[4], "1122");
    let (code, _, err) = confgate(&["dtmf", "/nonexistent.wav"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent.wav"), "{err}");
}

#[test]
fn check_config_reads_the_tls_certificate_and_key() {
    let dir = std::env::temp_dir().join(format!("confgate-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write_pair = |name: &str| {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    };
    let (cert, key) = write_pair("a");
    let (_, other_key) = write_pair("b");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let check = |cert: &std::path::Path, key: &std::path::Path| {
        confgate(&[
            "check-config",
            "--set",
            "sip.tls_listen=127.0.0.1:5061",
            "--set",
            &format!("sip.tls_cert={}", cert.display()),
            "--set",
            &format!("sip.tls_key={}", key.display()),
        ])
    };
    let (code, out, err) = check(&cert, &key);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok"), "{out}");
    for (cert, key, named) in [
        (dir.join("absent.crt"), key.clone(), "sip.tls_cert:"),
        (garbage.clone(), key.clone(), "sip.tls_cert:"),
        (cert.clone(), garbage.clone(), "sip.tls_key:"),
        (cert.clone(), other_key.clone(), "sip.tls_key:"),
    ] {
        let (code, _, err) = check(&cert, &key);
        assert_eq!(code, 64, "{err}");
        assert!(err.contains(named), "{named} in {err}");
    }
    let (code, _, err) = confgate(&["check-config", "--set", "sip.tls_listen=127.0.0.1:5061"]);
    assert_eq!(code, 64);
    assert!(err.contains("sip.tls_cert:"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
