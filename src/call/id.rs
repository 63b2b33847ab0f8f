//! Our own name for a call, minted by confgate.
//!
//! The caller's SIP Call-ID is not ours to trust: a B2BUA may reuse one,
//! forking gives several dialogs one Call-ID, and anyone can send any. Calls
//! are known by a [`CallId`] instead — in the registry, the room listing,
//! events and every control command — and the SIP Call-ID is a field of the
//! call.

use std::fmt;
use std::str::FromStr;

/// Digits of a call id: lower-case letters and digits a person reads back
/// without confusion (no `i`, `l`, `o`, `u`).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters in a call id; 5 bits each.
const LEN: usize = 8;

/// A call's identity: eight printable characters, e.g. `k7f3q9xa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl CallId {
    /// A fresh id from `random` (its low 40 bits).
    pub fn from_random(random: u64) -> CallId {
        CallId(random & ((1 << (5 * LEN)) - 1))
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (LEN - 1 - i);
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        // Every byte comes from ALPHABET, which is ASCII.
        f.write_str(std::str::from_utf8(&out).unwrap_or("????????"))
    }
}

/// The text is not a call id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a call id")]
pub struct NotACallId;

impl FromStr for CallId {
    type Err = NotACallId;

    fn from_str(s: &str) -> Result<CallId, NotACallId> {
        if s.len() != LEN {
            return Err(NotACallId);
        }
        s.bytes()
            .try_fold(0u64, |acc, b| {
                let digit = ALPHABET
                    .iter()
                    .position(|&a| a == b.to_ascii_lowercase())
                    .ok_or(NotACallId)?;
                Ok((acc << 5) | digit as u64)
            })
            .map(CallId)
    }
}

impl serde::Serialize for CallId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_eight_characters_and_reads_back() {
        for r in [0u64, 1, 0xff_ffff_ffff, 0x12_3456_789a, u64::MAX] {
            let id = CallId::from_random(r);
            let text = id.to_string();
            assert_eq!(text.len(), 8);
            assert!(text.bytes().all(|b| ALPHABET.contains(&b)), "{text}");
            assert_eq!(text.parse::<CallId>(), Ok(id));
            assert_eq!(text.to_ascii_uppercase().parse::<CallId>(), Ok(id));
        }
        assert_eq!(CallId::from_random(0).to_string(), "00000000");
    }

    #[test]
    fn other_text_is_not_an_id() {
        for bad in ["", "abc", "k7f3q9xa0", "k7f3q9x!", "iiiiiiii", "ünicode"] {
            assert_eq!(bad.parse::<CallId>(), Err(NotACallId), "{bad}");
        }
    }
}
