//! The screen in front of the SIP stack: every UDP datagram is checked before
//! rsipstack sees it. A request that cannot be parsed, or that lacks a header
//! every request must carry, is answered `400 Bad Request` here (RFC 3261
//! §8.2 / RFC 4475), because the stack itself would drop it without a word.
//! `screen` is sans-IO; `GuardedUdp` is the socket that applies it.

use std::net::SocketAddr;

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Request, SipMessage};

use super::digest_names;

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the stack.
    Pass,
    /// Answer the sender with these bytes and drop the datagram.
    Reply(Vec<u8>),
    /// Drop it silently (no response can be formed).
    Drop,
}

/// Largest body we accept, and the largest datagram the socket reads.
pub const MAX_DATAGRAM: usize = 65_535;

/// Check one datagram.
pub fn screen(datagram: &[u8]) -> Verdict {
    screen_as(datagram, crate::sip::ua::USER_AGENT)
}

/// [`screen`], with `server` as the replies' `Server` header.
pub fn screen_as(datagram: &[u8], server: &str) -> Verdict {
    if datagram.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Pass; // keep-alive (RFC 5626): the stack answers it
    }
    if let Some(version) = request_version(datagram) {
        if version != "SIP/2.0" && version.starts_with("SIP/") {
            return reply_from_raw(datagram, Fault::VersionNotSupported, server);
        }
    }
    match SipMessage::try_from(datagram) {
        Ok(SipMessage::Request(req)) => match check_request(&req, datagram) {
            Ok(()) => Verdict::Pass,
            Err(fault) => reply_from_raw(datagram, fault, server),
        },
        Ok(SipMessage::Response(_)) => Verdict::Pass,
        Err(_) => reply_from_raw(datagram, Fault::BadRequest("Malformed Message"), server),
    }
}

/// A reason a request is refused before it reaches a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    BadRequest(&'static str),
    TooManyHops,
    VersionNotSupported,
}

/// The last token of a request line (`SIP/2.0`), if the datagram starts with one.
fn request_version(raw: &[u8]) -> Option<&str> {
    let end = raw.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&raw[..end]).ok()?;
    if line.starts_with("SIP/") {
        return None;
    }
    line.rsplit(' ').next()
}

fn check_request(req: &Request, raw: &[u8]) -> Result<(), Fault> {
    let bad = Fault::BadRequest;
    let via = req.via_header().map_err(|_| bad("Missing Via"))?;
    via.typed().map_err(|_| bad("Bad Via"))?;
    req.from_header()
        .map_err(|_| bad("Missing From"))?
        .typed()
        .map_err(|_| bad("Bad From"))?;
    req.to_header()
        .map_err(|_| bad("Missing To"))?
        .typed()
        .map_err(|_| bad("Bad To"))?;
    if req
        .call_id_header()
        .map_err(|_| bad("Missing Call-ID"))?
        .value()
        .trim()
        .is_empty()
    {
        return Err(bad("Missing Call-ID"));
    }
    // Compared as text: extension methods (RFC 4475 §3.1.1.2) have no typed form.
    let cseq = req.cseq_header().map_err(|_| bad("Missing CSeq"))?.value();
    let mut parts = cseq.split_whitespace();
    let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("Bad CSeq"));
    };
    if seq.parse::<u32>().is_err() {
        return Err(bad("Bad CSeq"));
    }
    if Some(method) != request_method(raw) {
        return Err(bad("CSeq Method Mismatch"));
    }
    if let Ok(mf) = req.max_forwards_header() {
        match mf.value().trim().parse::<u32>() {
            Ok(0) if req.method != rsipstack::sip::Method::Ack => return Err(Fault::TooManyHops),
            Ok(_) => {}
            Err(_) => return Err(bad("Bad Max-Forwards")),
        }
    }
    match declared_content_length(raw) {
        Some(Ok(declared)) if declared > body_len(raw) => Err(bad("Content-Length Too Large")),
        Some(Err(())) => Err(bad("Bad Content-Length")),
        _ => Ok(()),
    }
}

/// The method token of the request line, as sent.
fn request_method(raw: &[u8]) -> Option<&str> {
    let end = raw.iter().position(|&b| b == b' ')?;
    std::str::from_utf8(&raw[..end]).ok()
}

/// Build a response by copying Via, From, To, Call-ID and CSeq from the raw
/// text; without Via, Call-ID and CSeq no usable response exists.
fn reply_from_raw(raw: &[u8], fault: Fault, server: &str) -> Verdict {
    let text = String::from_utf8_lossy(head(raw));
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let Some(first) = lines.next() else {
        return Verdict::Drop;
    };
    if first.starts_with("SIP/") || !first.contains(" SIP/") || first.starts_with("ACK ") {
        return Verdict::Drop; // a response, another protocol, or an ACK: never answered
    }
    let mut copied = String::new();
    let (mut via, mut call_id, mut cseq) = (false, false, false);
    for line in lines {
        if line.starts_with([' ', '\t']) {
            continue; // folded continuation lines are dropped, not guessed at
        }
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let keep = match name.as_str() {
            "via" | "v" => {
                via = true;
                true
            }
            "call-id" | "i" => {
                call_id = true;
                true
            }
            "cseq" => {
                cseq = true;
                true
            }
            "from" | "f" | "to" | "t" => true,
            _ => false,
        };
        if keep {
            copied.push_str(line);
            copied.push_str("\r\n");
        }
    }
    if !(via && call_id && cseq) {
        return Verdict::Drop;
    }
    let status = match fault {
        Fault::BadRequest(reason) => format!("400 {reason}"),
        Fault::TooManyHops => "483 Too Many Hops".to_owned(),
        Fault::VersionNotSupported => "505 Version Not Supported".to_owned(),
    };
    Verdict::Reply(
        format!("SIP/2.0 {status}\r\n{copied}Server: {server}\r\nContent-Length: 0\r\n\r\n")
            .into_bytes(),
    )
}

/// The header part of a message (up to the blank line).
fn head(raw: &[u8]) -> &[u8] {
    match find_blank_line(raw) {
        Some((end, _)) => &raw[..end],
        None => raw,
    }
}

fn body_len(raw: &[u8]) -> usize {
    find_blank_line(raw).map_or(0, |(_, start)| raw.len() - start)
}

/// (end of headers, start of body)
fn find_blank_line(raw: &[u8]) -> Option<(usize, usize)> {
    let crlf = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// `Some(Err)` for a Content-Length that is not a plain decimal that fits.
fn declared_content_length(raw: &[u8]) -> Option<Result<usize, ()>> {
    let text = String::from_utf8_lossy(head(raw));
    text.split('\n').skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
            .then(|| value.trim().parse::<usize>().map_err(|_| ()))
    })
}

/// A UDP socket that screens what it receives (see [`screen`]).
pub struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    /// The `Server` header of the screen's replies.
    server: String,
}

impl GuardedUdp {
    pub fn new(socket: tokio::net::UdpSocket, server: &str) -> Self {
        Self {
            socket,
            server: server.to_owned(),
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.socket.recv_from(buf).await?;
            match screen_as(&buf[..len], &self.server) {
                Verdict::Pass => {
                    // The renamed challenge is never longer than the original.
                    if let Some(renamed) = digest_names::received(&buf[..len]) {
                        if renamed.len() <= len {
                            buf[..renamed.len()].copy_from_slice(&renamed);
                            return Ok((renamed.len(), from));
                        }
                    }
                    return Ok((len, from));
                }
                Verdict::Reply(bytes) => {
                    tracing::info!(%from, len, "refused a malformed SIP request");
                    self.socket.send_to(&bytes, from).await.ok();
                }
                Verdict::Drop => tracing::debug!(%from, len, "dropped an unparseable datagram"),
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        if let Some(renamed) = digest_names::sent(buf) {
            self.socket.send_to(&renamed, addr).await?;
            return Ok(buf.len());
        }
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:confgate@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:t@127.0.0.1>;tag=a\r\n\
        To: <sip:confgate@127.0.0.1>\r\n\
        Call-ID: guard-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    fn reply_text(v: Verdict) -> String {
        match v {
            Verdict::Reply(b) => String::from_utf8(b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert_eq!(screen(OPTIONS.as_bytes()), Verdict::Pass);
        assert_eq!(screen(b"\r\n\r\n"), Verdict::Pass);
    }

    #[test]
    fn garbage_is_dropped_without_reply() {
        assert_eq!(screen(b"\x00\x01garbage\xff"), Verdict::Drop);
        assert_eq!(screen(b"hello world"), Verdict::Drop);
    }

    #[test]
    fn cseq_mismatch_gets_400_with_copied_headers() {
        let msg = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        let r = reply_text(screen(msg.as_bytes()));
        assert!(r.starts_with("SIP/2.0 400 "), "{r}");
        assert!(r.contains("Call-ID: guard-1\r\n") && r.contains("branch=z9hG4bK-1"));
    }

    #[test]
    fn zero_max_forwards_gets_483() {
        let msg = OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 0");
        assert!(reply_text(screen(msg.as_bytes())).starts_with("SIP/2.0 483 "));
    }

    #[test]
    fn missing_call_id_gets_no_reply_but_bad_content_length_gets_400() {
        let no_call_id = OPTIONS.replace("Call-ID: guard-1\r\n", "");
        assert_eq!(screen(no_call_id.as_bytes()), Verdict::Drop);
        let long = OPTIONS.replace("Content-Length: 0", "Content-Length: 300");
        assert!(reply_text(screen(long.as_bytes())).starts_with("SIP/2.0 400 "));
    }
}
