//! Hand-written SIP phones for the churn run: one thread, two non-blocking
//! UDP sockets (127.0.0.1, trusted and allowed; 127.0.0.2, outside
//! `sip.allow`), calls started at a steady rate and driven to their end,
//! requests retransmitted on T1 doubling as a UAC must over UDP.
//!
//! Call kinds, by call number (every 50 calls):
//! - 44 join a room named by `X-Conference-Id`, hold, BYE;
//! - 2 key the PIN `1234#` by five INFOs sent back to back, hold, BYE;
//! - 2 CANCEL right after the INVITE (a 487, or a 200 that won the race,
//!   which is then ACKed and hung up);
//! - 1 offers only G.729 (488 after the call task took its port);
//! - 1 calls from 127.0.0.2 (403 at the edge).

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const T1: Duration = Duration::from_millis(500);
/// 64·T1: a transaction that has no final answer by then has failed.
const GIVE_UP: Duration = Duration::from_secs(32);
/// How long after its ACK a PIN caller starts keying.
const KEYS_AFTER: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Room,
    Pin,
    Cancel,
    NoCodec,
    Stranger,
}

fn kind(n: u64) -> Kind {
    match n % 50 {
        7 | 32 => Kind::Pin,
        13 | 38 => Kind::Cancel,
        21 => Kind::NoCodec,
        45 => Kind::Stranger,
        _ => Kind::Room,
    }
}

/// How the calls of a round ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcomes {
    pub hung_up: u64,
    /// PIN callers whose five INFOs were all answered 200.
    pub pin_keyed: u64,
    pub cancelled: u64,
    /// A CANCEL that lost the race with the 200: ACKed, then BYE.
    pub cancel_too_late: u64,
    pub refused_488: u64,
    pub refused_403: u64,
    /// Any other final answer to an INVITE (503...).
    pub refused_other: u64,
    /// No final answer (INVITE or BYE) within 64·T1.
    pub failed: u64,
}

impl Outcomes {
    pub fn total(&self) -> u64 {
        self.hung_up
            + self.pin_keyed
            + self.cancelled
            + self.cancel_too_late
            + self.refused_488
            + self.refused_403
            + self.refused_other
            + self.failed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the INVITE's final answer.
    Inviting,
    /// Answered and ACKed; the PIN's INFOs at `keys_at` (if any), BYE at `bye_at`.
    Up {
        keys_at: Option<Instant>,
        bye_at: Instant,
    },
    /// BYE sent, waiting for its 200.
    Leaving,
}

/// A request sent until answered.
struct Pending {
    message: Vec<u8>,
    next: Instant,
    interval: Duration,
    first: Instant,
}

impl Pending {
    fn new(message: Vec<u8>, now: Instant) -> Pending {
        Pending {
            message,
            next: now + T1,
            interval: T1,
            first: now,
        }
    }
}

struct Call {
    n: u64,
    kind: Kind,
    stage: Stage,
    sock: usize,
    to_tag: Option<String>,
    /// The INVITE (until a provisional or final answer), then the BYE.
    pending: Option<Pending>,
    pin_answers: u32,
}

/// The phones; reused round after round.
pub struct Phones {
    socks: [UdpSocket; 2],
    locals: [SocketAddr; 2],
    server: SocketAddr,
    /// Where our SDP says to send RTP: a socket nobody reads (the kernel
    /// drops what does not fit).
    rtp: UdpSocket,
    hold: Duration,
    next_call: u64,
    buf: Vec<u8>,
}

impl Phones {
    pub fn new(server: SocketAddr, hold: Duration) -> Phones {
        let bind = |ip: [u8; 4]| {
            let s = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("phone socket");
            s.set_nonblocking(true).expect("non-blocking");
            s
        };
        let socks = [bind([127, 0, 0, 1]), bind([127, 0, 0, 2])];
        let locals = [
            socks[0].local_addr().expect("addr"),
            socks[1].local_addr().expect("addr"),
        ];
        Phones {
            socks,
            locals,
            server,
            rtp: bind([127, 0, 0, 1]),
            hold,
            next_call: 0,
            buf: vec![0u8; 65536],
        }
    }

    /// Run `count` calls, starting `rate` per second, each to its end.
    pub fn round(&mut self, count: u64, rate: f64) -> Outcomes {
        let mut out = Outcomes::default();
        let mut calls: HashMap<String, Call> = HashMap::with_capacity(1024);
        let start = Instant::now();
        let first = self.next_call;
        let last = first + count;
        loop {
            let now = Instant::now();
            // Start every call that is due.
            while self.next_call < last {
                let due = start
                    + Duration::from_secs_f64((self.next_call - first) as f64 / rate.max(1.0));
                if due > now {
                    break;
                }
                let n = self.next_call;
                self.next_call += 1;
                let (id, call) = self.start(n, now);
                calls.insert(id, call);
            }
            if self.next_call >= last && calls.is_empty() {
                break;
            }
            let mut busy = false;
            for i in 0..2 {
                while let Ok((len, from)) = self.socks[i].recv_from(&mut self.buf) {
                    busy = true;
                    let text = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                    self.on_message(&text, i, from, &mut calls, &mut out, Instant::now());
                }
            }
            self.on_timers(&mut calls, &mut out, Instant::now());
            if !busy {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        out
    }

    fn call_id(n: u64) -> String {
        format!("churn-{n}@bench")
    }

    fn start(&self, n: u64, now: Instant) -> (String, Call) {
        let kind = kind(n);
        let sock = usize::from(kind == Kind::Stranger);
        let formats = if kind == Kind::NoCodec { "18" } else { "0 101" };
        let rtp = self.rtp.local_addr().expect("rtp addr");
        let sdp = format!(
            "v=0\r\no=churn {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP {formats}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:18 G729/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
            rtp.port()
        );
        let extra = match kind {
            Kind::Pin => "Content-Type: application/sdp\r\n".to_owned(),
            _ => format!(
                "X-Conference-Id: churn{}\r\nContent-Type: application/sdp\r\n",
                n % 100
            ),
        };
        let call = Call {
            n,
            kind,
            stage: Stage::Inviting,
            sock,
            to_tag: None,
            pending: None,
            pin_answers: 0,
        };
        let invite = self.request(&call, "INVITE", 1, &format!("i{n}"), &extra, &sdp);
        self.send(sock, invite.as_bytes());
        if kind == Kind::Cancel {
            let cancel = self.request(&call, "CANCEL", 1, &format!("i{n}"), "", "");
            self.send(sock, cancel.as_bytes());
        }
        let mut call = call;
        call.pending = Some(Pending::new(invite.into_bytes(), now));
        (Self::call_id(n), call)
    }

    fn send(&self, sock: usize, bytes: &[u8]) {
        // A full socket buffer loses the datagram; retransmission covers it.
        self.socks[sock].send_to(bytes, self.server).ok();
    }

    fn request(
        &self,
        call: &Call,
        method: &str,
        cseq: u32,
        branch: &str,
        extra: &str,
        body: &str,
    ) -> String {
        let local = self.locals[call.sock];
        let server = self.server;
        let n = call.n;
        let to_tag = match (&call.to_tag, method) {
            (_, "CANCEL") | (None, _) => String::new(),
            (Some(t), _) => format!(";tag={t}"),
        };
        let cseq_method = if method == "ACK" { "ACK" } else { method };
        format!(
            "{method} sip:conf@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:churn{n}@{local}>;tag=f{n}\r\n\
             To: <sip:conf@{server}>{to_tag}\r\n\
             Call-ID: {id}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:churn{n}@{local}>\r\n\
             {extra}Content-Length: {len}\r\n\r\n{body}",
            id = Self::call_id(n),
            len = body.len(),
        )
    }

    fn on_message(
        &mut self,
        text: &str,
        sock: usize,
        from: SocketAddr,
        calls: &mut HashMap<String, Call>,
        out: &mut Outcomes,
        now: Instant,
    ) {
        let Some(call_id) = header(text, "Call-ID") else {
            return;
        };
        if !text.starts_with("SIP/2.0 ") {
            // A request of the daemon's (its BYE): answer it, the call is over.
            self.answer_request(text, sock, from);
            if text.starts_with("BYE ") {
                if let Some(call) = calls.remove(call_id) {
                    count_end(&call, out);
                }
            }
            return;
        }
        let code: u16 = text
            .get(8..11)
            .and_then(|c| c.parse().ok())
            .unwrap_or_default();
        let cseq = header(text, "CSeq").unwrap_or("");
        let method = cseq.split_whitespace().nth(1).unwrap_or("");
        let Some(call) = calls.get_mut(call_id) else {
            // A retransmitted refusal after we ACKed and forgot the call.
            if method == "INVITE" && code >= 300 {
                self.ack_refusal(text, sock);
            }
            return;
        };
        match (method, code) {
            // A provisional answer stops INVITE retransmissions (Timer A).
            ("INVITE", 100..=199) if call.stage == Stage::Inviting => {
                if let Some(p) = &mut call.pending {
                    p.next = p.first + GIVE_UP;
                    p.interval = GIVE_UP;
                }
            }
            ("INVITE", 200..=299) => {
                call.to_tag = to_tag(text);
                let ack = self.request(call, "ACK", 1, &format!("a{}", call.n), "", "");
                self.send(call.sock, ack.as_bytes());
                if call.stage != Stage::Inviting {
                    return; // a retransmitted 200: ACKed again
                }
                match call.kind {
                    Kind::Cancel => {
                        // The CANCEL came too late: hang the answered call up.
                        let bye = self.request(call, "BYE", 2, &format!("b{}", call.n), "", "");
                        self.send(call.sock, bye.as_bytes());
                        call.pending = Some(Pending::new(bye.into_bytes(), now));
                        call.stage = Stage::Leaving;
                    }
                    Kind::Pin => {
                        call.pending = None;
                        call.stage = Stage::Up {
                            // After the ACK has been taken in: an INFO
                            // before it is answered but not handled.
                            keys_at: Some(now + KEYS_AFTER),
                            bye_at: now + self.hold,
                        };
                    }
                    _ => {
                        call.pending = None;
                        call.stage = Stage::Up {
                            keys_at: None,
                            bye_at: now + self.hold,
                        };
                    }
                }
            }
            ("INVITE", 300..) => {
                self.ack_refusal(text, sock);
                if call.stage == Stage::Inviting {
                    calls.remove(call_id);
                    match code {
                        487 => out.cancelled += 1,
                        488 => out.refused_488 += 1,
                        403 => out.refused_403 += 1,
                        _ => out.refused_other += 1,
                    }
                }
            }
            ("INFO", 200..) => call.pin_answers += 1,
            ("BYE", 200..) => {
                if let Some(call) = calls.remove(call_id) {
                    count_end(&call, out);
                }
            }
            _ => {}
        }
    }

    /// ACK a non-2xx final answer: same branch as the INVITE, its To tag.
    fn ack_refusal(&self, response: &str, sock: usize) {
        let (Some(via), Some(from), Some(to), Some(call_id), Some(cseq)) = (
            header(response, "Via"),
            header(response, "From"),
            header(response, "To"),
            header(response, "Call-ID"),
            header(response, "CSeq"),
        ) else {
            return;
        };
        let num = cseq.split_whitespace().next().unwrap_or("1");
        let Some(branch) = via
            .split(';')
            .find_map(|p| p.trim().strip_prefix("branch="))
        else {
            return;
        };
        let ack = format!(
            "ACK sip:conf@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {num} ACK\r\nContent-Length: 0\r\n\r\n",
            server = self.server,
            local = self.locals[sock],
        );
        self.send(sock, ack.as_bytes());
    }

    /// 200 OK to a request the daemon sent us.
    fn answer_request(&self, request: &str, sock: usize, from: SocketAddr) {
        let keep = ["via", "from", "to", "call-id", "cseq"];
        let headers: Vec<&str> = request
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter(|l| {
                let name = l
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                keep.contains(&name.as_str())
            })
            .collect();
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
            headers.join("\r\n")
        );
        self.socks[sock].send_to(ok.as_bytes(), from).ok();
    }

    fn on_timers(&self, calls: &mut HashMap<String, Call>, out: &mut Outcomes, now: Instant) {
        let mut gone = Vec::new();
        for (id, call) in calls.iter_mut() {
            if let Stage::Up { keys_at, bye_at } = call.stage {
                if keys_at.is_some_and(|t| now >= t) {
                    call.stage = Stage::Up {
                        keys_at: None,
                        bye_at,
                    };
                    for (i, digit) in "1234#".chars().enumerate() {
                        let cseq = 2 + i as u32;
                        let body = format!("Signal={digit}\r\nDuration=160\r\n");
                        let info = self.request(
                            call,
                            "INFO",
                            cseq,
                            &format!("d{}x{cseq}", call.n),
                            "Content-Type: application/dtmf-relay\r\n",
                            &body,
                        );
                        self.send(call.sock, info.as_bytes());
                    }
                }
                if now >= bye_at {
                    let bye = self.request(call, "BYE", 7, &format!("b{}", call.n), "", "");
                    self.send(call.sock, bye.as_bytes());
                    call.pending = Some(Pending::new(bye.into_bytes(), now));
                    call.stage = Stage::Leaving;
                }
            }
            let Some(p) = &mut call.pending else {
                continue;
            };
            if now.duration_since(p.first) >= GIVE_UP {
                gone.push(id.clone());
            } else if now >= p.next {
                self.socks[call.sock].send_to(&p.message, self.server).ok();
                p.interval = (p.interval * 2).min(Duration::from_secs(4));
                p.next = now + p.interval;
            }
        }
        for id in gone {
            calls.remove(&id);
            out.failed += 1;
        }
    }
}

fn count_end(call: &Call, out: &mut Outcomes) {
    match call.kind {
        Kind::Cancel => out.cancel_too_late += 1,
        Kind::Pin if call.pin_answers == 5 => out.pin_keyed += 1,
        _ => out.hung_up += 1,
    }
}

/// First header value by name (case-insensitive, full names only).
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

fn to_tag(response: &str) -> Option<String> {
    header(response, "To")?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(str::to_owned)
}
