//! DTMF digits carried in SIP INFO request bodies.

use crate::dtmf::rfc4733::event_digit;

/// `application/dtmf-relay` ("Signal=5\r\nDuration=160") and
/// `application/dtmf` ("5"): the digit, or `None` if the body is not one.
///
/// The content type is compared case-insensitively with any parameters after
/// `;` ignored. Bodies may use CRLF or LF line ends, spaces around keys and
/// values, and lowercase keys. A signal is one of `0`-`9`, `*`, `#`, `A`-`D`
/// (lowercase letters accepted) or an event code `0`-`15` (so `10` is `*` and
/// `11` is `#`).
pub fn digit_from_info(content_type: &str, body: &[u8]) -> Option<char> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let body = String::from_utf8_lossy(body);
    if mime.eq_ignore_ascii_case("application/dtmf-relay") {
        signal_field(&body)
    } else if mime.eq_ignore_ascii_case("application/dtmf") {
        let trimmed = body.trim();
        if trimmed.contains(['=', '\n']) {
            signal_field(trimmed)
        } else {
            signal_value(trimmed)
        }
    } else {
        None
    }
}

/// Finds the `Signal` line of a dtmf-relay body and parses its value.
fn signal_field(body: &str) -> Option<char> {
    body.lines().find_map(|line| {
        let (key, value) = line.split_once(['=', ':'])?;
        if key.trim().eq_ignore_ascii_case("signal") {
            Some(signal_value(value))
        } else {
            None
        }
    })?
}

/// Parses one signal value: a DTMF symbol or an event code 0-15.
fn signal_value(value: &str) -> Option<char> {
    let value = value.trim();
    let mut chars = value.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        let c = c.to_ascii_uppercase();
        if matches!(c, '0'..='9' | '*' | '#' | 'A'..='D') {
            return Some(c);
        }
        return None;
    }
    value.parse::<u8>().ok().and_then(event_digit)
}

#[cfg(test)]
mod tests {
    use super::digit_from_info;

    const RELAY: &str = "application/dtmf-relay";

    #[test]
    fn relay_standard_body() {
        assert_eq!(
            digit_from_info(RELAY, b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            digit_from_info(RELAY, b"Signal=5\r\nDuration=160"),
            Some('5')
        );
    }

    #[test]
    fn relay_lf_only_spaces_lowercase_keys() {
        assert_eq!(
            digit_from_info(RELAY, b"signal=7\nduration=250\n"),
            Some('7')
        );
        assert_eq!(
            digit_from_info(RELAY, b"  Signal = 8 \n Duration = 100"),
            Some('8')
        );
        assert_eq!(
            digit_from_info(RELAY, b"Duration=100\r\nSIGNAL=9"),
            Some('9')
        );
        assert_eq!(digit_from_info(RELAY, b"Signal: 4\r\n"), Some('4'));
    }

    #[test]
    fn relay_symbols_and_codes() {
        let cases: [(&[u8], char); 10] = [
            (b"Signal=*", '*'),
            (b"Signal=#", '#'),
            (b"Signal=A", 'A'),
            (b"Signal=d", 'D'),
            (b"Signal=10", '*'),
            (b"Signal=11", '#'),
            (b"Signal=12", 'A'),
            (b"Signal=15", 'D'),
            (b"Signal=0", '0'),
            (b"Signal=03", '3'),
        ];
        for (body, want) in cases {
            assert_eq!(digit_from_info(RELAY, body), Some(want), "{body:?}");
        }
    }

    #[test]
    fn relay_rejects_non_digits() {
        for body in [
            &b""[..],
            b"Duration=160",
            b"Signal=",
            b"Signal=E",
            b"Signal=16",
            b"Signal=55",
            b"Signal=-1",
            b"Signal=5x",
            b"Signalx=5",
            b"\xff\xfe",
        ] {
            assert_eq!(digit_from_info(RELAY, body), None, "{body:?}");
        }
    }

    #[test]
    fn content_type_case_and_parameters() {
        let body = b"Signal=1\r\nDuration=100\r\n";
        assert_eq!(digit_from_info("Application/DTMF-Relay", body), Some('1'));
        assert_eq!(
            digit_from_info(" application/dtmf-relay ; charset=utf-8", body),
            Some('1')
        );
        assert_eq!(digit_from_info("application/dtmf-relayx", body), None);
        assert_eq!(digit_from_info("text/plain", body), None);
        assert_eq!(digit_from_info("", body), None);
    }

    #[test]
    fn plain_dtmf_body() {
        assert_eq!(digit_from_info("application/dtmf", b"5"), Some('5'));
        assert_eq!(
            digit_from_info("APPLICATION/DTMF;x=y", b" # \r\n"),
            Some('#')
        );
        assert_eq!(digit_from_info("application/dtmf", b"*"), Some('*'));
        assert_eq!(digit_from_info("application/dtmf", b"b"), Some('B'));
        assert_eq!(digit_from_info("application/dtmf", b"11"), Some('#'));
        assert_eq!(digit_from_info("application/dtmf", b"Signal=6"), Some('6'));
        assert_eq!(digit_from_info("application/dtmf", b""), None);
        assert_eq!(digit_from_info("application/dtmf", b"12 3"), None);
        assert_eq!(digit_from_info("application/dtmf", b"X"), None);
    }
}
