//! The far end of an outbound call, written by hand over UDP: it sees every
//! request confgate sends exactly as sent, and answers as a test scripts it
//! (ring, answer, busy, challenge, never answer).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub text: String,
    pub from: SocketAddr,
}

impl Request {
    fn parse(bytes: &[u8], from: SocketAddr) -> Option<Request> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let mut first = text.lines().next()?.split_whitespace();
        let method = first.next()?.to_owned();
        let uri = first.next()?.to_owned();
        (first.next()? == "SIP/2.0").then_some(Request {
            method,
            uri,
            text,
            from,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        super::raw::header(&self.text, name)
    }

    pub fn body(&self) -> &str {
        super::raw::body(&self.text)
    }
}

/// A phone (or trunk) that confgate calls.
pub struct Callee {
    pub sock: UdpSocket,
    pub to_tag: String,
}

impl Callee {
    pub async fn new() -> Callee {
        Callee {
            sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            to_tag: format!("callee{}", std::process::id()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    /// The next request within `wait` (responses to our own requests skipped).
    pub async fn recv(&self, wait: Duration) -> Option<Request> {
        let mut buf = vec![0u8; 65535];
        let end = tokio::time::Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let (n, from) = tokio::time::timeout(left, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Some(r) = Request::parse(&buf[..n], from) {
                return Some(r);
            }
        }
    }

    /// The next final response within `wait`: its code, CSeq and whole text.
    pub async fn final_response(&self, wait: Duration) -> Option<(u16, String, String)> {
        let mut buf = vec![0u8; 65535];
        let end = tokio::time::Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let (n, _) = tokio::time::timeout(left, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(code) = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse::<u16>().ok())
            else {
                continue;
            };
            if code >= 200 {
                let cseq = text
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq:"))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                return Some((code, cseq, text));
            }
        }
    }

    /// The next request of `method` within `wait`, others skipped.
    pub async fn expect(&self, method: &str, wait: Duration) -> Option<Request> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let r = self.recv(left).await?;
            if r.method == method {
                return Some(r);
            }
        }
    }

    /// Answer `req` with `code`; a To tag is added to all but 100, and
    /// `extra` header lines (each ending in CRLF) and `body` (SDP) follow.
    pub async fn reply(&self, req: &Request, code: u16, extra: &str, body: &str) {
        let keep = |name: &str| {
            req.text
                .lines()
                .skip(1)
                .take_while(|l| !l.is_empty())
                .filter(|l| {
                    l.split(':')
                        .next()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
                })
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
        };
        let to = req.header("To").unwrap_or("");
        let to = if code == 100 || to.contains("tag=") {
            to.to_owned()
        } else {
            format!("{to};tag={}", self.to_tag)
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "SIP/2.0 {code} {reason}\r\n{via}{from}To: {to}\r\n{call_id}{cseq}\
             Contact: <sip:callee@{me}>\r\n{extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
            reason = reason(code),
            via = keep("Via"),
            from = keep("From"),
            call_id = keep("Call-ID"),
            cseq = keep("CSeq"),
            me = self.addr(),
            len = body.len(),
        );
        self.sock
            .send_to(msg.as_bytes(), req.from)
            .await
            .expect("send");
    }

    /// Send a BYE in the dialog `invite` opened (we are the callee).
    pub async fn bye(&self, invite: &Request) {
        self.in_dialog(invite, "BYE", 1, "").await;
    }

    /// Send `method` with CSeq `cseq` and `body` (SDP when not empty) in the
    /// dialog `invite` opened.
    pub async fn in_dialog(&self, invite: &Request, method: &str, cseq: u32, body: &str) {
        self.in_dialog_on(invite, method, method, cseq, body).await
    }

    /// The ACK for a non-2xx answer to our re-INVITE `cseq`: it belongs to
    /// the INVITE's transaction, so it carries the INVITE's branch.
    pub async fn ack_rejected(&self, invite: &Request, cseq: u32) {
        self.in_dialog_on(invite, "ACK", "INVITE", cseq, "").await
    }

    async fn in_dialog_on(
        &self,
        invite: &Request,
        method: &str,
        branch_method: &str,
        cseq: u32,
        body: &str,
    ) {
        let from = invite.header("From").unwrap_or("");
        let to = invite.header("To").unwrap_or("");
        let call_id = invite.header("Call-ID").unwrap_or("");
        let contact = invite
            .header("Contact")
            .and_then(|c| Some(c.split_once('<')?.1.split_once('>')?.0.to_owned()))
            .unwrap_or_else(|| format!("sip:confgate@{}", invite.from));
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bK{m}{cseq}x{n}\r\n\
             Max-Forwards: 70\r\nFrom: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:callee@{me}>\r\n{ctype}Content-Length: {len}\r\n\r\n{body}",
            me = self.addr(),
            m = branch_method.to_ascii_lowercase(),
            n = std::process::id(),
            tag = self.to_tag,
            len = body.len(),
        );
        self.sock
            .send_to(msg.as_bytes(), invite.from)
            .await
            .expect("send");
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        401 => "Unauthorized",
        407 => "Proxy Authentication Required",
        486 => "Busy Here",
        487 => "Request Terminated",
        603 => "Decline",
        _ => "Whatever",
    }
}
