//! RFC 7616 / RFC 8760 name the digest algorithm `SHA-256`; the SIP parser
//! under rsipstack 0.7 knows it only as `SHA256`, so a trunk's SHA-256
//! challenge would go unanswered, and our answer would name the algorithm
//! in a way trunks refuse. At the UDP edge the names are translated: in
//! challenges we receive, `SHA-256` becomes `SHA256`; in credentials we
//! send, `SHA256` becomes `SHA-256` again. Sans-IO: bytes in, bytes out.

/// Headers that carry a digest `algorithm` parameter.
const CHALLENGES: [&str; 2] = ["www-authenticate", "proxy-authenticate"];
const CREDENTIALS: [&str; 2] = ["authorization", "proxy-authorization"];

/// A challenge in a received response, with the algorithm renamed for the
/// parser; `None` when nothing needs to change.
pub fn received(datagram: &[u8]) -> Option<Vec<u8>> {
    if !datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    rename(
        datagram,
        &CHALLENGES,
        &[("SHA-256-sess", "SHA256-sess"), ("SHA-256", "SHA256")],
    )
}

/// Credentials in a request we send, with the RFC name restored; `None`
/// when nothing needs to change.
pub fn sent(datagram: &[u8]) -> Option<Vec<u8>> {
    if datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    rename(
        datagram,
        &CREDENTIALS,
        &[("SHA256-sess", "SHA-256-sess"), ("SHA256", "SHA-256")],
    )
}

fn rename(datagram: &[u8], headers: &[&str], names: &[(&str, &str)]) -> Option<Vec<u8>> {
    let head_len = datagram
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(datagram.len(), |p| p + 2);
    let head = std::str::from_utf8(&datagram[..head_len]).ok()?;
    let mut changed = false;
    let mut out = String::with_capacity(head.len() + 8);
    for line in head.split_inclusive("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if !headers.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            out.push_str(line);
            continue;
        }
        match renamed(line, names) {
            Some(l) => {
                changed = true;
                out.push_str(&l);
            }
            None => out.push_str(line),
        }
    }
    changed.then(|| {
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&datagram[head_len..]);
        bytes
    })
}

/// The line with its `algorithm=` value renamed, if it is one of `names`.
fn renamed(line: &str, names: &[(&str, &str)]) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let at = lower.find("algorithm=")? + "algorithm=".len();
    let quoted = line[at..].starts_with('"');
    let start = at + usize::from(quoted);
    let end = line[start..]
        .find(|c: char| c == '"' || c == ',' || c.is_whitespace())
        .map_or(line.len(), |e| start + e);
    let value = &line[start..end];
    let (_, to) = names
        .iter()
        .find(|(from, _)| value.eq_ignore_ascii_case(from))?;
    Some(format!("{}{to}{}", &line[..start], &line[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "SIP/2.0 401 Unauthorized\r\nCall-ID: x\r\n\
        WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn challenges_are_renamed_for_the_parser_and_answers_back() {
        let got = String::from_utf8(received(CHALLENGE.as_bytes()).unwrap()).unwrap();
        assert_eq!(got, CHALLENGE.replace("SHA-256", "SHA256"));
        let req = "INVITE sip:a@b SIP/2.0\r\nProxy-Authorization: Digest username=\"u\", \
                   algorithm=SHA256, response=\"x\"\r\nContent-Length: 4\r\n\r\nSHA256";
        let got = String::from_utf8(sent(req.as_bytes()).unwrap()).unwrap();
        assert!(got.contains("algorithm=SHA-256, response"), "{got}");
        assert!(got.ends_with("\r\n\r\nSHA256"), "the body is left alone");
    }

    #[test]
    fn other_messages_are_left_alone() {
        assert_eq!(
            received(CHALLENGE.replace("SHA-256", "MD5").as_bytes()),
            None
        );
        assert_eq!(received(b"INVITE sip:a@b SIP/2.0\r\n\r\n"), None);
        assert_eq!(
            sent(CHALLENGE.as_bytes()),
            None,
            "responses are not credentials"
        );
        let quoted = CHALLENGE.replace("algorithm=SHA-256", "algorithm=\"SHA-256-sess\"");
        let got = String::from_utf8(received(quoted.as_bytes()).unwrap()).unwrap();
        assert!(got.contains("algorithm=\"SHA256-sess\""), "{got}");
        assert_eq!(received(&[0xff, 0xfe]), None);
    }
}
