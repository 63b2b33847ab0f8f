//! SDES offer/answer in a call's SDP session.

use super::*;
use crate::rtp::sdes::{self, Policy};
use crate::rtp::srtp::Suite;

const KEY_A: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const KEY_B: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

fn local(srtp: Policy) -> LocalMedia {
    LocalMedia {
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        events: true,
        address: IpAddr::from([192, 0, 2, 1]),
        port: 20000,
        session_id: 7000,
        srtp,
        srtp_key: MasterKey::random(),
    }
}

/// An offer of PCMU over `proto` with `crypto` lines.
fn offer(proto: &str, crypto: &[String]) -> Vec<u8> {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n\
         m=audio 4000 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    for c in crypto {
        s.push_str(&format!("a=crypto:{c}\r\n"));
    }
    s.into_bytes()
}

fn line(tag: u32, suite: &str, key: &str) -> String {
    format!("{tag} {suite} inline:{key}")
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn crypto_lines(body: &[u8]) -> Vec<String> {
    text(body)
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_savp_offer_is_answered_savp_with_one_crypto_of_ours() {
    for policy in [Policy::Optional, Policy::Required] {
        let mut s = SdpSession::new(local(policy));
        let o = offer(
            "RTP/SAVP",
            &[
                line(1, "AES_CM_256_HMAC_SHA1_80", KEY_A),
                line(2, "AES_CM_128_HMAC_SHA1_32", KEY_A),
                line(3, "AES_CM_128_HMAC_SHA1_80", KEY_B),
            ],
        );
        let (body, media) = s.answer(&o).unwrap();
        assert!(
            text(&body).contains("m=audio 20000 RTP/SAVP 0"),
            "{}",
            text(&body)
        );
        let ours = crypto_lines(&body);
        assert_eq!(ours.len(), 1, "{ours:?}");
        let c = sdes::parse(&ours[0]).unwrap();
        // The first usable line: same tag and suite, our key.
        assert_eq!((c.tag, c.suite), (2, Suite::AesCm128HmacSha1_32));
        let keys = media.srtp.expect("SRTP keys");
        assert_eq!(keys.suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(keys.local, c.key);
        assert_eq!(
            keys.remote,
            sdes::parse(&line(2, "AES_CM_128_HMAC_SHA1_32", KEY_A))
                .unwrap()
                .key
        );
        assert_ne!(keys.local, keys.remote);
    }
}

#[test]
fn savpf_is_answered_in_kind() {
    let mut s = SdpSession::new(local(Policy::Optional));
    let o = offer("RTP/SAVPF", &[line(1, "AES_CM_128_HMAC_SHA1_80", KEY_A)]);
    let (body, media) = s.answer(&o).unwrap();
    assert!(text(&body).contains("m=audio 20000 RTP/SAVPF 0"));
    assert!(media.srtp.is_some());
}

#[test]
fn refusals_are_488() {
    let good = [line(1, "AES_CM_128_HMAC_SHA1_80", KEY_A)];
    let cases = [
        (Policy::Required, offer("RTP/AVP", &[])),
        (Policy::Off, offer("RTP/SAVP", &good)),
        (Policy::Optional, offer("RTP/SAVP", &[])),
        (
            Policy::Optional,
            offer("RTP/SAVP", &[line(1, "AES_CM_128_HMAC_SHA1_80", "bad!")]),
        ),
        (
            Policy::Required,
            offer("RTP/SAVP", &[format!("{}|1:4", good[0])]),
        ),
    ];
    for (policy, o) in cases {
        let mut s = SdpSession::new(local(policy));
        let e = s.answer(&o).unwrap_err();
        assert!(matches!(e, SdpError::Srtp(_)), "{policy:?} {e}");
        assert_eq!(e.sip_status(), 488);
    }
}

#[test]
fn a_plain_offer_is_answered_plainly_unless_required() {
    for policy in [Policy::Off, Policy::Optional] {
        let mut s = SdpSession::new(local(policy));
        let (body, media) = s.answer(&offer("RTP/AVP", &[])).unwrap();
        assert!(text(&body).contains("m=audio 20000 RTP/AVP 0"));
        assert!(crypto_lines(&body).is_empty());
        assert_eq!(media.srtp, None);
    }
    // RTP/AVP with a=crypto (best effort) gets SRTP unless it is off.
    let o = offer("RTP/AVP", &[line(5, "AES_CM_128_HMAC_SHA1_80", KEY_A)]);
    let (body, media) = SdpSession::new(local(Policy::Optional)).answer(&o).unwrap();
    assert!(text(&body).contains("RTP/AVP 0") && crypto_lines(&body).len() == 1);
    assert!(media.srtp.is_some());
    let (body, media) = SdpSession::new(local(Policy::Off)).answer(&o).unwrap();
    assert!(crypto_lines(&body).is_empty() && media.srtp.is_none());
}

#[test]
fn re_invites_keep_our_key_and_follow_theirs() {
    let mut s = SdpSession::new(local(Policy::Required));
    let (first, m1) = s
        .answer(&offer(
            "RTP/SAVP",
            &[line(1, "AES_CM_128_HMAC_SHA1_80", KEY_A)],
        ))
        .unwrap();
    let (again, m2) = s
        .answer(&offer(
            "RTP/SAVP",
            &[line(1, "AES_CM_128_HMAC_SHA1_80", KEY_B)],
        ))
        .unwrap();
    assert_eq!(crypto_lines(&first), crypto_lines(&again), "our key stays");
    let (k1, k2) = (m1.srtp.unwrap(), m2.srtp.unwrap());
    assert_eq!(k1.local, k2.local);
    assert_ne!(k1.remote, k2.remote, "their new key is taken");
    // An offer-less re-INVITE: our offer repeats the SRTP in use.
    let o = s.offer_current();
    assert!(text(&o).contains("RTP/SAVP"));
    assert_eq!(crypto_lines(&o), crypto_lines(&first));
    // Dropping the crypto while it is required: 488.
    let e = s.answer(&offer("RTP/AVP", &[])).unwrap_err();
    assert_eq!(e.sip_status(), 488);
}

/// What a far end answers to `our_offer`: PCMU over `proto`, echoing the
/// offer's line `tag` with its own key.
fn answer_to(our_offer: &[u8], proto: &str, tag: Option<u32>) -> Vec<u8> {
    let lines: Vec<String> = crypto_lines(our_offer)
        .into_iter()
        .filter(|l| tag.is_some_and(|t| l.starts_with(&format!("{t} "))))
        .map(|l| {
            let suite = l.split_whitespace().nth(1).unwrap().to_owned();
            line(tag.unwrap(), &suite, KEY_B)
        })
        .collect();
    offer(proto, &lines)
}

#[test]
fn outbound_offers_follow_the_policy() {
    let o = SdpSession::new(local(Policy::Off)).offer();
    assert!(text(&o).contains("RTP/AVP") && crypto_lines(&o).is_empty());
    let o = SdpSession::new(local(Policy::Optional)).offer();
    assert!(text(&o).contains("m=audio 20000 RTP/AVP"));
    assert_eq!(crypto_lines(&o).len(), 2);
    let o = SdpSession::new(local(Policy::Required)).offer();
    assert!(text(&o).contains("m=audio 20000 RTP/SAVP"));
    assert_eq!(crypto_lines(&o).len(), 2);
}

#[test]
fn answers_to_our_offer() {
    // Optional: either answer.
    let mut s = SdpSession::new(local(Policy::Optional));
    let o = s.offer();
    let m = s.take_answer(&answer_to(&o, "RTP/AVP", Some(2))).unwrap();
    let keys = m.srtp.expect("SRTP");
    assert_eq!(keys.suite, Suite::AesCm128HmacSha1_32);
    assert_eq!(
        keys.local.material(keys.suite),
        sdes::parse(&crypto_lines(&o)[1])
            .unwrap()
            .key
            .material(keys.suite)
    );
    let mut s = SdpSession::new(local(Policy::Optional));
    let o = s.offer();
    assert_eq!(
        s.take_answer(&answer_to(&o, "RTP/AVP", None)).unwrap().srtp,
        None
    );
    // Required: plain, or a tag we never offered, fails the call.
    let mut s = SdpSession::new(local(Policy::Required));
    let o = s.offer();
    assert!(s.take_answer(&answer_to(&o, "RTP/SAVP", None)).is_err());
    assert!(s.take_answer(&answer_to(&o, "RTP/AVP", None)).is_err());
    assert!(s
        .take_answer(&offer(
            "RTP/SAVP",
            &[line(9, "AES_CM_128_HMAC_SHA1_80", KEY_B)]
        ))
        .is_err());
    let m = s.take_answer(&answer_to(&o, "RTP/SAVP", Some(1))).unwrap();
    assert_eq!(m.srtp.unwrap().suite, Suite::AesCm128HmacSha1_80);
}
