//! Tickets: what lets a caller that one node moved with REFER into a room
//! another node holds be admitted there without a PIN. A ticket names the
//! room and when it expires, and carries an HMAC-SHA256 over both under a
//! key derived from the control token the nodes share. Sans-IO: the clock
//! is the caller's (seconds since the Unix epoch).
//!
//! The text form is `ROOM~EXPIRY~MAC` (MAC in lowercase hex), split from
//! the right, so a room may hold any character; in a URI it goes escaped
//! ([`escape`], [`unescape`]).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The Request-URI parameter (or header) a ticket travels in.
pub const TICKET_PARAM: &str = "X-Conference-Ticket";

/// How long a ticket is good for: the caller's side dials at once.
pub const TICKET_LIFE_SECS: u64 = 30;

type HmacSha256 = Hmac<Sha256>;

/// What the ticket key is derived under, so that the control token itself
/// never keys anything but the control connection.
const LABEL: &[u8] = b"confgate cluster ticket v1";

/// The longest ticket text looked at; anything longer is garbage.
const MAX_LEN: usize = 512;

/// A ticket key, derived from the shared control token.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The key every node that shares `token` derives alike.
    pub fn from_token(token: &str) -> Key {
        // Any length of key is fine for HMAC.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(token.as_bytes())
            .unwrap_or_else(|_| unreachable_key());
        mac.update(LABEL);
        Key(mac.finalize().into_bytes().into())
    }

    fn mac(&self, room: &str, expiry: u64) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_key());
        mac.update(room.as_bytes());
        mac.update(b"\n");
        mac.update(expiry.to_string().as_bytes());
        mac
    }
}

/// HMAC takes a key of any length; this is never reached.
fn unreachable_key() -> HmacSha256 {
    HmacSha256::new(&Default::default())
}

/// Why a ticket was not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not of the form `ROOM~EXPIRY~MAC`.
    Garbled,
    /// The MAC does not match (tampered with, another key).
    Forged,
    /// Past its expiry.
    Expired,
    /// Good, but for another room.
    OtherRoom,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Garbled => "garbled",
            Refused::Forged => "forged or signed with another key",
            Refused::Expired => "expired",
            Refused::OtherRoom => "for another room",
        })
    }
}

/// A ticket for `room`, good until `expiry` (Unix seconds).
pub fn sign(room: &str, expiry: u64, key: &Key) -> String {
    let tag = key.mac(room, expiry).finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("{room}~{expiry}~{hex}")
}

/// The room `ticket` admits to, if it is genuine and `now` (Unix seconds)
/// is not past its expiry.
pub fn verify(ticket: &str, now: u64, key: &Key) -> Result<String, Refused> {
    if ticket.len() > MAX_LEN {
        return Err(Refused::Garbled);
    }
    let mut parts = ticket.rsplitn(3, '~');
    let (Some(hex), Some(expiry), Some(room)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Refused::Garbled);
    };
    if room.is_empty() || expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Garbled);
    }
    let expiry: u64 = expiry.parse().map_err(|_| Refused::Garbled)?;
    let tag = unhex(hex).ok_or(Refused::Garbled)?;
    // Constant time: the MAC's own comparison.
    key.mac(room, expiry)
        .verify_slice(&tag)
        .map_err(|_| Refused::Forged)?;
    if now > expiry {
        return Err(Refused::Expired);
    }
    Ok(room.to_owned())
}

/// [`verify`] for a caller that names its room too (`room-ROOM`): a ticket
/// for another room is refused.
pub fn verify_for(ticket: &str, room: &str, now: u64, key: &Key) -> Result<String, Refused> {
    let admits = verify(ticket, now, key)?;
    if admits == room {
        Ok(admits)
    } else {
        Err(Refused::OtherRoom)
    }
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    hex.as_bytes()
        .chunks(2)
        .map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8))
        .collect()
}

/// `text` with everything but unreserved URI characters (RFC 3986) as
/// `%XX`, fit for a URI parameter or embedded header.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` undone; `None` for a bad escape or text that is not UTF-8.
pub fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of URI parameter `name` (case-insensitive) in `uri`'s
/// parameters (`sip:u@h;a=b;name=v?hdr=x`), unescaped.
pub fn uri_param(uri: &str, name: &str) -> Option<String> {
    let uri = uri.trim().trim_start_matches('<');
    let uri = uri.split(['>', '?']).next().unwrap_or("");
    uri.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| unescape(v.trim()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_token("a-control-token-of-some-length")
    }

    #[test]
    fn a_signed_ticket_admits_to_its_room_until_it_expires() {
        let t = sign("2468", 1000, &key());
        assert_eq!(verify(&t, 999, &key()), Ok("2468".to_owned()));
        assert_eq!(verify(&t, 1000, &key()), Ok("2468".to_owned()));
        assert_eq!(verify(&t, 1001, &key()), Err(Refused::Expired));
        assert_eq!(verify_for(&t, "2468", 999, &key()), Ok("2468".into()));
        assert_eq!(verify_for(&t, "1357", 999, &key()), Err(Refused::OtherRoom));
    }

    #[test]
    fn a_room_may_hold_the_separator() {
        let t = sign("a~b", 50, &key());
        assert_eq!(verify(&t, 10, &key()), Ok("a~b".to_owned()));
    }

    #[test]
    fn tampering_is_caught() {
        let t = sign("2468", 1000, &key());
        // Another room, a later expiry, a flipped MAC digit.
        let other_room = t.replacen("2468", "1357", 1);
        assert_eq!(verify(&other_room, 0, &key()), Err(Refused::Forged));
        let later = t.replacen("~1000~", "~9000~", 1);
        assert_eq!(verify(&later, 0, &key()), Err(Refused::Forged));
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(verify(&flipped, 0, &key()), Err(Refused::Forged));
        // Tampered and expired: forged first, so nothing is told of the time.
        assert_eq!(verify(&later, 99_999, &key()), Err(Refused::Forged));
    }

    #[test]
    fn another_key_does_not_verify() {
        let t = sign("2468", 1000, &key());
        let other = Key::from_token("another-control-token-entirely");
        assert_eq!(verify(&t, 0, &other), Err(Refused::Forged));
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        let k = key();
        let long = "9".repeat(5000);
        for g in [
            "",
            "~",
            "~~",
            "2468",
            "2468~1000",
            "~1000~00",
            "2468~~00",
            "2468~-5~00",
            "2468~1x~00",
            "2468~99999999999999999999999~00",
            "2468~1000~zz",
            "2468~1000~é",
            &format!("2468~1000~{}", "é".repeat(32)),
            &format!("2468~1000~{}", "0".repeat(63)),
            &long,
        ] {
            assert_eq!(verify(g, 0, &k), Err(Refused::Garbled), "{g:?}");
        }
        assert_eq!(
            verify(&format!("2468~1000~{}", "0".repeat(64)), 0, &k),
            Err(Refused::Forged)
        );
    }

    #[test]
    fn tickets_travel_escaped_in_a_uri() {
        let t = sign("room one", 7, &key());
        let uri = format!(
            "sip:room-x@10.0.0.2:5060;x-conference-ticket={}",
            escape(&t)
        );
        assert!(!escape(&t).contains(' '));
        assert_eq!(uri_param(&uri, "X-Conference-Ticket"), Some(t.clone()));
        assert_eq!(
            uri_param(&format!("<{uri};lr>"), "x-conference-ticket"),
            Some(t)
        );
        assert_eq!(uri_param("sip:a@b", "x-conference-ticket"), None);
        assert_eq!(
            uri_param("sip:a@b;x-conference-ticket=%G1", "x-conference-ticket"),
            None
        );
        assert_eq!(
            uri_param("sip:a@b;x-conference-ticket=%", "x-conference-ticket"),
            None
        );
        assert_eq!(unescape("%e9"), None);
    }
}
