//! A SIP phone that writes requests by hand over UDP, so tests see every
//! response on the wire exactly as sent (and can send what no stack would).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// First header value by name in a SIP message's text (case-insensitive;
/// compact forms not handled).
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

/// A SIP message's body.
pub fn body(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A parsed response, enough for assertions.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub text: String,
}

impl Response {
    pub fn parse(bytes: &[u8]) -> Option<Response> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let code = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Response { code, text })
    }

    /// First header value by name (case-insensitive), compact forms not handled.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.text, name)
    }

    pub fn body(&self) -> &str {
        body(&self.text)
    }

    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        to.split(';')
            .find_map(|p| p.trim().strip_prefix("tag="))
            .map(str::to_owned)
    }

    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }
}

/// A dialog-less phone over one UDP socket.
pub struct RawPhone {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    /// The Request-URI and To user (`4000` unless a test names a room).
    pub user: String,
    /// The From user.
    pub from_user: String,
    cseq: u32,
}

impl RawPhone {
    pub async fn new(server: SocketAddr, call_id: &str) -> RawPhone {
        RawPhone {
            sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            server,
            call_id: call_id.to_owned(),
            from_tag: format!("ft{}", std::process::id()),
            to_tag: None,
            user: "4000".to_owned(),
            from_user: "caller".to_owned(),
            cseq: 0,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.expect("send");
    }

    /// Build a request; `branch` identifies the transaction.
    pub fn request(
        &self,
        method: &str,
        cseq: u32,
        cseq_method: &str,
        branch: &str,
        extra: &str,
        body: &str,
    ) -> String {
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let ctype = if body.is_empty() || extra.contains("Content-Type") {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:{user}@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from_user}@{local}>;tag={from_tag}\r\n\
             To: <sip:{user}@{server}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:{from_user}@{local}>\r\n\
             {extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
            user = self.user,
            from_user = self.from_user,
            server = self.server,
            local = self.local(),
            from_tag = self.from_tag,
            call_id = self.call_id,
            len = body.len(),
        )
    }

    /// Send INVITE with `sdp`; returns the branch used.
    pub async fn invite(&mut self, sdp: &str) -> String {
        self.invite_with(sdp, "").await
    }

    /// Send INVITE with `sdp` and extra header lines (each ending in CRLF).
    pub async fn invite_with(&mut self, sdp: &str, extra: &str) -> String {
        self.cseq += 1;
        let branch = format!("inv{}", self.cseq);
        let msg = self.request("INVITE", self.cseq, "INVITE", &branch, extra, sdp);
        self.send_raw(msg.as_bytes()).await;
        branch
    }

    /// ACK for a 2xx (new transaction) or a non-2xx (same branch as the INVITE).
    pub async fn ack(&self, invite_branch: Option<&str>) {
        let branch = invite_branch.map_or_else(|| format!("ack{}", self.cseq), str::to_owned);
        let msg = self.request("ACK", self.cseq, "ACK", &branch, "", "");
        self.send_raw(msg.as_bytes()).await;
    }

    /// CANCEL the INVITE sent with `invite_branch` (same Via, no To tag).
    pub async fn cancel(&self, invite_branch: &str) {
        let msg = self.request("CANCEL", self.cseq, "CANCEL", invite_branch, "", "");
        let msg = match &self.to_tag {
            Some(tag) => msg.replacen(&format!(";tag={tag}"), "", 1),
            None => msg,
        };
        self.send_raw(msg.as_bytes()).await;
    }

    /// The CSeq number for a new request built by hand.
    pub fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    /// Send a new in-dialog request (BYE, re-INVITE, INFO) and return its CSeq.
    pub async fn in_dialog(&mut self, method: &str, extra: &str, body: &str) -> u32 {
        self.cseq += 1;
        let branch = format!("{}{}", method.to_ascii_lowercase(), self.cseq);
        let msg = self.request(method, self.cseq, method, &branch, extra, body);
        self.send_raw(msg.as_bytes()).await;
        self.cseq
    }

    /// Next response within `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<Response> {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Some(r) = Response::parse(&buf[..n]) {
                return Some(r);
            }
        }
    }

    /// Next request the server sends us (e.g. its BYE) within `wait`; answers it 200.
    pub async fn recv_request(&self, wait: Duration) -> Option<String> {
        self.recv_request_with(wait, |_| "200 OK").await
    }

    /// Next request the server sends us within `wait`, answered with the
    /// status `answer` picks for its text ("603 Declined", say).
    pub async fn recv_request_with(
        &self,
        wait: Duration,
        answer: impl Fn(&str) -> &'static str,
    ) -> Option<String> {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, from) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("SIP/2.0") {
                continue;
            }
            let keep = |l: &&str| {
                let n = l
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ["via", "from", "to", "call-id", "cseq"].contains(&n.as_str())
            };
            let headers: Vec<&str> = text
                .lines()
                .skip(1)
                .take_while(|l| !l.is_empty())
                .filter(keep)
                .collect();
            let reply = format!(
                "SIP/2.0 {}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                answer(&text),
                headers.join("\r\n")
            );
            self.sock.send_to(reply.as_bytes(), from).await.ok();
            return Some(text);
        }
    }

    /// Responses until one with a final code for `method` arrives (or `wait` passes).
    pub async fn until_final(&mut self, method: &str, wait: Duration) -> Vec<Response> {
        let mut seen = Vec::new();
        let end = tokio::time::Instant::now() + wait;
        while let Some(r) = self
            .recv(end.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            let done = r.code >= 200 && r.cseq_method() == Some(method);
            if r.cseq_method() == Some("INVITE") && r.code >= 200 {
                self.to_tag = r.to_tag();
            }
            seen.push(r);
            if done {
                break;
            }
        }
        seen
    }
}
