use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key(byte: u8) -> MasterKey {
    MasterKey([byte; 30])
}

/// Two ends of one call: `a` sends with `a`'s key, `b` expects it.
fn pair(suite: Suite) -> (SrtpSession, SrtpSession) {
    let (ka, kb) = (MasterKey::random(), MasterKey::random());
    let a = SrtpSession::new(SrtpKeys {
        suite,
        local: ka,
        remote: kb,
    })
    .unwrap();
    let b = SrtpSession::new(SrtpKeys {
        suite,
        local: kb,
        remote: ka,
    })
    .unwrap();
    (a, b)
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ 0x55));
    p
}

/// A receiver report with no blocks.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

#[test]
fn every_suite_round_trips_rtp_and_rtcp() {
    for suite in Suite::ALL {
        let (mut a, mut b) = pair(suite);
        for seq in [65533u16, 65534, 65535, 0, 1, 2] {
            let plain = rtp(seq, 0x1234_5678);
            let mut wire = plain.clone();
            a.protect_rtp(&mut wire).unwrap();
            assert_eq!(wire.len(), plain.len() + suite.srtp_tag_len(), "{suite:?}");
            assert_eq!(wire[..12], plain[..12], "the header stays readable");
            assert_ne!(wire[12..plain.len()], plain[12..], "the payload is not");
            let n = b.unprotect_rtp(&mut wire).unwrap();
            assert_eq!(wire[..n], plain[..], "{suite:?}");
        }
        let plain = rtcp_rr(0x1234_5678);
        let mut wire = plain.clone();
        a.protect_rtcp(&mut wire).unwrap();
        assert!(wire.len() > plain.len());
        let n = b.unprotect_rtcp(&mut wire).unwrap();
        assert_eq!(wire[..n], plain[..], "{suite:?}");
    }
}

#[test]
fn a_replay_is_rejected() {
    for suite in Suite::ALL {
        let (mut a, mut b) = pair(suite);
        let mut wire = rtp(100, 9);
        a.protect_rtp(&mut wire).unwrap();
        let copy = wire.clone();
        b.unprotect_rtp(&mut wire).unwrap();
        let mut again = copy.clone();
        assert!(matches!(
            b.unprotect_rtp(&mut again),
            Err(SrtpError::Rejected(_))
        ));
        // The next one still passes, and so does a late one inside the window.
        let mut late = rtp(99, 9);
        let mut next = rtp(101, 9);
        a.protect_rtp(&mut next).unwrap();
        a.protect_rtp(&mut late).unwrap();
        assert!(b.unprotect_rtp(&mut next).is_ok());
        assert!(b.unprotect_rtp(&mut late).is_ok());
        let mut rr = rtcp_rr(9);
        a.protect_rtcp(&mut rr).unwrap();
        let mut rr_again = rr.clone();
        assert!(b.unprotect_rtcp(&mut rr).is_ok());
        assert!(b.unprotect_rtcp(&mut rr_again).is_err(), "SRTCP replay");
    }
}

#[test]
fn tampering_and_the_wrong_key_fail_authentication() {
    for suite in Suite::ALL {
        let (mut a, mut b) = pair(suite);
        let mut wire = rtp(5, 77);
        a.protect_rtp(&mut wire).unwrap();
        for i in [1, 3, 11, 20, wire.len() - 1] {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            assert!(b.unprotect_rtp(&mut bad).is_err(), "{suite:?} byte {i}");
        }
        // Untouched, it still passes: the failures left no trace.
        assert!(b.unprotect_rtp(&mut wire).is_ok());
        // A stranger's key.
        let mut other = SrtpSession::new(SrtpKeys {
            suite,
            local: key(3),
            remote: key(4),
        })
        .unwrap();
        let mut forged = rtp(6, 77);
        other.protect_rtp(&mut forged).unwrap();
        assert!(b.unprotect_rtp(&mut forged).is_err());
        // Plain RTP is not SRTP.
        let mut plain = rtp(7, 77);
        assert!(b.unprotect_rtp(&mut plain).is_err());
    }
}

#[test]
fn short_and_garbage_input_never_panics() {
    for suite in Suite::ALL {
        let (mut a, mut b) = pair(suite);
        let mut wire = rtp(1, 1);
        a.protect_rtp(&mut wire).unwrap();
        let mut rr = rtcp_rr(1);
        a.protect_rtcp(&mut rr).unwrap();
        for len in 0..wire.len() {
            let mut cut = wire[..len].to_vec();
            assert!(b.unprotect_rtp(&mut cut).is_err());
        }
        for len in 0..rr.len() {
            let mut cut = rr[..len].to_vec();
            assert!(b.unprotect_rtcp(&mut cut).is_err());
        }
        for fill in [0x00, 0x80, 0xff] {
            for len in [0, 1, 4, 8, 12, 13, 24, 40] {
                let mut junk = vec![fill; len];
                let _ = b.unprotect_rtp(&mut junk);
                let mut junk = vec![fill; len];
                let _ = b.unprotect_rtcp(&mut junk);
            }
        }
    }
}

#[test]
fn forged_ssrcs_do_not_disturb_the_genuine_stream() {
    let (mut a, mut b) = pair(Suite::AesCm128HmacSha1_80);
    let mut first = rtp(10, 42);
    a.protect_rtp(&mut first).unwrap();
    assert!(b.unprotect_rtp(&mut first).is_ok());
    for ssrc in 0..1000u32 {
        let mut forged = rtp(11, 1_000_000 + ssrc);
        forged.extend_from_slice(&[0; 10]);
        assert!(b.unprotect_rtp(&mut forged).is_err());
    }
    let mut next = rtp(11, 42);
    a.protect_rtp(&mut next).unwrap();
    assert!(b.unprotect_rtp(&mut next).is_ok());
    // A new genuine SSRC (the phone restarted its stream) is taken up.
    let mut restarted = rtp(500, 43);
    a.protect_rtp(&mut restarted).unwrap();
    let replay = restarted.clone();
    assert!(b.unprotect_rtp(&mut restarted).is_ok());
    assert!(
        b.unprotect_rtp(&mut replay.clone()).is_err(),
        "replay of its first"
    );
}

#[test]
fn rekey_keeps_contexts_whose_key_did_not_change() {
    let (mut a, mut b) = pair(Suite::AesCm128HmacSha1_80);
    let mut wire = rtp(1, 5);
    a.protect_rtp(&mut wire).unwrap();
    let replay = wire.clone();
    b.unprotect_rtp(&mut wire).unwrap();
    let same = *b.keys();
    b.rekey(same).unwrap();
    assert!(b.unprotect_rtp(&mut replay.clone()).is_err(), "window kept");
    // The far end's new key: a fresh inbound context.
    let fresh = MasterKey::random();
    b.rekey(SrtpKeys {
        remote: fresh,
        ..same
    })
    .unwrap();
    let mut a2 = SrtpSession::new(SrtpKeys {
        suite: same.suite,
        local: fresh,
        remote: same.local,
    })
    .unwrap();
    let mut wire = rtp(2, 5);
    a2.protect_rtp(&mut wire).unwrap();
    assert!(b.unprotect_rtp(&mut wire).is_ok());
    let mut old = rtp(3, 5);
    a.protect_rtp(&mut old).unwrap();
    assert!(b.unprotect_rtp(&mut old).is_err(), "the old key is gone");
}

/// The AES_CM_128_HMAC_SHA1_80 known-answer packet of libsrtp's test
/// driver (`srtp_driver -v`), which is checked against RFC 3711's vectors.
#[test]
fn known_answer_aes_cm_128_hmac_sha1_80() {
    let material = hex("e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6");
    let k = MasterKey::from_slice(Suite::AesCm128HmacSha1_80, &material).unwrap();
    let keys = SrtpKeys {
        suite: Suite::AesCm128HmacSha1_80,
        local: k,
        remote: k,
    };
    let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
    let want =
        hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    let mut s = SrtpSession::new(keys).unwrap();
    let mut wire = plain.clone();
    s.protect_rtp(&mut wire).unwrap();
    assert_eq!(wire, want);
    let mut r = SrtpSession::new(keys).unwrap();
    let n = r.unprotect_rtp(&mut wire).unwrap();
    assert_eq!(wire[..n], plain[..]);
}
