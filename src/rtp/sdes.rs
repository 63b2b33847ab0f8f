//! SDES (RFC 4568): SRTP keys carried in SDP `a=crypto` attributes.
//!
//! `a=crypto:TAG SUITE inline:BASE64[|LIFETIME][|MKI:LEN] [SESSION-PARAMS]`.
//! The value is the peer's, so it is read as hostile input: a line this
//! module cannot use exactly as written (unknown suite, bad base64, a key
//! of the wrong length, an MKI, several keys, session parameters) is
//! skipped with its reason, never guessed at and never a panic.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;

use super::srtp::{MasterKey, SrtpKeys, Suite};

/// One usable `a=crypto` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    pub key: MasterKey,
}

/// Why an `a=crypto` line is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("malformed a=crypto")]
    Malformed,
    #[error("unsupported crypto suite")]
    UnknownSuite,
    #[error("key is not base64")]
    BadBase64,
    #[error("key has the wrong length for its suite")]
    KeyLength,
    #[error("MKI is not supported")]
    Mki,
    #[error("more than one key")]
    SeveralKeys,
    #[error("bad key lifetime")]
    Lifetime,
    #[error("session parameters are not supported")]
    SessionParams,
}

/// The longest tag RFC 4568 §9.1 allows (1*9DIGIT).
const MAX_TAG: u32 = 999_999_999;

/// Parse the value of one `a=crypto` attribute (after `crypto:`).
pub fn parse(value: &str) -> Result<Crypto, CryptoError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(CryptoError::Malformed);
    };
    if fields.next().is_some() {
        return Err(CryptoError::SessionParams);
    }
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CryptoError::Malformed);
    }
    let tag: u32 = tag.parse().map_err(|_| CryptoError::Malformed)?;
    if tag > MAX_TAG {
        return Err(CryptoError::Malformed);
    }
    let suite = Suite::from_name(suite).ok_or(CryptoError::UnknownSuite)?;
    if key_params.contains(';') {
        return Err(CryptoError::SeveralKeys);
    }
    let inline = key_params
        .strip_prefix("inline:")
        .ok_or(CryptoError::Malformed)?;
    let mut parts = inline.split('|');
    let b64 = parts.next().unwrap_or_default();
    for extra in parts {
        if extra.contains(':') {
            return Err(CryptoError::Mki);
        }
        lifetime(extra)?;
    }
    // Some peers leave the padding off.
    let raw = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .map_err(|_| CryptoError::BadBase64)?;
    let key = MasterKey::from_slice(suite, &raw).ok_or(CryptoError::KeyLength)?;
    Ok(Crypto { tag, suite, key })
}

/// `2^N` or a decimal packet count; the value is not kept (the library's
/// own limit of 2^48 packets applies).
fn lifetime(s: &str) -> Result<(), CryptoError> {
    let ok = match s.strip_prefix("2^") {
        Some(exp) => exp.parse::<u32>().is_ok_and(|e| (1..=48).contains(&e)),
        None => !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()),
    };
    ok.then_some(()).ok_or(CryptoError::Lifetime)
}

/// The value of our `a=crypto` attribute.
pub fn format(c: &Crypto) -> String {
    format!(
        "{} {} inline:{}",
        c.tag,
        c.suite.name(),
        STANDARD.encode(c.key.material(c.suite))
    )
}

/// The usable lines among `values`, in their order; the others are
/// reported to `skipped` with their reason.
pub fn usable<'a>(
    values: impl IntoIterator<Item = &'a str>,
    mut skipped: impl FnMut(&'a str, CryptoError),
) -> Vec<Crypto> {
    let mut out = Vec::new();
    for v in values {
        match parse(v) {
            Ok(c) if out.iter().any(|o: &Crypto| o.tag == c.tag) => {
                skipped(v, CryptoError::Malformed)
            }
            Ok(c) => out.push(c),
            Err(e) => skipped(v, e),
        }
    }
    out
}

/// Whether a call's media uses SRTP (`rtp.srtp` for calls that come in,
/// `trunk.srtp` for those placed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Plain RTP only: an `RTP/SAVP` offer is refused.
    Off,
    /// SRTP when the far end offers or accepts it, plain RTP otherwise.
    #[default]
    Optional,
    /// SRTP or no call.
    Required,
}

impl Policy {
    pub fn from_name(name: &str) -> Option<Policy> {
        match name {
            "off" => Some(Policy::Off),
            "optional" => Some(Policy::Optional),
            "required" => Some(Policy::Required),
            _ => None,
        }
    }
}

/// Why an offer or answer is refused for its SRTP (488 Not Acceptable Here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("SRTP is required and the media is plain RTP")]
    PlainRtp,
    #[error("SRTP is offered and turned off here")]
    Disabled,
    #[error("no usable a=crypto")]
    NoUsableCrypto,
}

/// SRTP agreed for a call: the keys, and our `a=crypto` line for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    pub keys: SrtpKeys,
    pub ours: Crypto,
}

impl Agreed {
    fn new(theirs: &Crypto, local: MasterKey) -> Agreed {
        Agreed {
            keys: SrtpKeys {
                suite: theirs.suite,
                local,
                remote: theirs.key,
            },
            ours: Crypto {
                tag: theirs.tag,
                suite: theirs.suite,
                key: local,
            },
        }
    }
}

fn usable_logged(values: &[String]) -> Vec<Crypto> {
    usable(values.iter().map(String::as_str), |line, why| {
        tracing::debug!(reason = %why, tag = line.split_whitespace().next().unwrap_or(""), "a=crypto skipped");
    })
}

/// The answer to an offer of `proto` with `crypto` lines: SRTP with the
/// first usable line (our key `local`, its tag and suite), plain RTP, or a
/// refusal. A plain `RTP/AVP` offer that carries usable lines anyway
/// (best-effort SRTP) is taken up unless SRTP is off.
pub fn answer_offer(
    policy: Policy,
    proto: &str,
    crypto: &[String],
    local: MasterKey,
) -> Result<Option<Agreed>, Refusal> {
    let secure = crate::sip::sdp::is_secure_proto(proto);
    if policy == Policy::Off {
        return match secure {
            true => Err(Refusal::Disabled),
            false => Ok(None),
        };
    }
    match usable_logged(crypto).first() {
        Some(c) => Ok(Some(Agreed::new(c, local))),
        None if secure => Err(Refusal::NoUsableCrypto),
        None if policy == Policy::Required => Err(Refusal::PlainRtp),
        None => Ok(None),
    }
}

/// What we offer: the m-line's transport and our `a=crypto` lines. Off:
/// plain RTP. Optional: `RTP/AVP` with `a=crypto` (best effort: a phone
/// that knows SDES answers with a key, any other ignores the lines and
/// answers plain). Required: `RTP/SAVP`.
pub fn offer(policy: Policy, local: MasterKey) -> (&'static str, Vec<Crypto>) {
    let lines = || {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .zip(1..)
            .map(|(suite, tag)| Crypto {
                tag,
                suite,
                key: local,
            })
            .collect()
    };
    match policy {
        Policy::Off => ("RTP/AVP", Vec::new()),
        Policy::Optional => ("RTP/AVP", lines()),
        Policy::Required => ("RTP/SAVP", lines()),
    }
}

/// The far end's answer (`proto`, `crypto`) to our offer of `offered`: SRTP
/// when it picked one of our lines (same tag and suite) with its own key;
/// plain RTP when it answered plain and SRTP is not required.
pub fn take_answer(
    policy: Policy,
    offered: &[Crypto],
    proto: &str,
    crypto: &[String],
) -> Result<Option<Agreed>, Refusal> {
    let secure = crate::sip::sdp::is_secure_proto(proto);
    let chosen = usable_logged(crypto).into_iter().find_map(|theirs| {
        offered
            .iter()
            .find(|o| o.tag == theirs.tag && o.suite == theirs.suite)
            .map(|ours| Agreed::new(&theirs, ours.key))
    });
    match (chosen, policy) {
        (Some(a), Policy::Optional | Policy::Required) => Ok(Some(a)),
        (_, Policy::Off) if secure => Err(Refusal::Disabled),
        (_, Policy::Off) => Ok(None),
        (None, _) if secure => Err(Refusal::NoUsableCrypto),
        (None, Policy::Required) => Err(Refusal::PlainRtp),
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY30: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn parses_the_rfc_example_and_its_variants() {
        // RFC 4568 §4's example key, with lifetime.
        let c = parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20")).unwrap();
        assert_eq!((c.tag, c.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(c.key.material(c.suite), STANDARD.decode(KEY30).unwrap());
        for v in [
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
            format!("7  AES_CM_128_HMAC_SHA1_32\tinline:{KEY30}|1048576"),
            format!(
                "2 AES_CM_128_HMAC_SHA1_80 inline:{}",
                KEY30.trim_end_matches('=')
            ),
        ] {
            assert!(parse(&v).is_ok(), "{v}");
        }
        let gcm = STANDARD.encode([7u8; 28]);
        let c = parse(&format!("3 AEAD_AES_128_GCM inline:{gcm}")).unwrap();
        assert_eq!(c.suite, Suite::AeadAes128Gcm);
    }

    #[test]
    fn format_parses_back() {
        for suite in Suite::ALL {
            let c = Crypto {
                tag: 42,
                suite,
                key: MasterKey::from_slice(suite, MasterKey::random().material(suite)).unwrap(),
            };
            let text = format(&c);
            assert!(text.starts_with(&format!("42 {} inline:", suite.name())));
            assert_eq!(parse(&text), Ok(c));
        }
    }

    #[test]
    fn hostile_lines_are_skipped_with_their_reason() {
        use CryptoError::*;
        let k28 = STANDARD.encode([1u8; 28]);
        let cases: Vec<(String, CryptoError)> = vec![
            (String::new(), Malformed),
            ("1".into(), Malformed),
            ("1 AES_CM_128_HMAC_SHA1_80".into(), Malformed),
            (
                format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
                Malformed,
            ),
            (
                format!("-1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
                Malformed,
            ),
            (
                format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
                Malformed,
            ),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30}"), Malformed),
            (
                format!("1 F8_128_HMAC_SHA1_80 inline:{KEY30}"),
                UnknownSuite,
            ),
            (
                format!("1 aes_cm_128_hmac_sha1_80 inline:{KEY30}"),
                UnknownSuite,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64!!!".into(),
                BadBase64,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:".into(), KeyLength),
            (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k28}"), KeyLength),
            (format!("1 AEAD_AES_128_GCM inline:{KEY30}"), KeyLength),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4"),
                Mki,
            ),
            (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4"), Mki),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30};inline:{KEY30}"),
                SeveralKeys,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^99"),
                Lifetime,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|"),
                Lifetime,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|x"),
                Lifetime,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP"),
                SessionParams,
            ),
        ];
        for (line, why) in cases {
            assert_eq!(parse(&line), Err(why), "{line}");
        }
    }

    #[test]
    fn never_panics_on_mangled_lines() {
        let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20");
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            let _ = parse(&line[..i]);
            for b in [b'|', b':', b' ', b';', 0xc3] {
                let mut m = bytes.to_vec();
                m[i] = b;
                if let Ok(s) = std::str::from_utf8(&m) {
                    let _ = parse(s);
                }
            }
        }
    }

    #[test]
    fn usable_keeps_the_good_lines_in_order() {
        let good1 = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}");
        let bad = "2 AES_CM_256_HMAC_SHA1_80 inline:xyz".to_string();
        let good3 = format!("3 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}");
        let dup = format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}");
        let mut skipped = Vec::new();
        let got = usable(
            [good1.as_str(), bad.as_str(), good3.as_str(), dup.as_str()],
            |v, e| skipped.push((v.to_owned(), e)),
        );
        assert_eq!(got.iter().map(|c| c.tag).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].1, CryptoError::UnknownSuite);
    }
}
