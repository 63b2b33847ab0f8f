//! What the rest of the daemon sees of a SIP call: an offered call with its
//! SDP, a handle to answer or end it, and a stream of our own call events.
//! rsipstack types do not leave this module's parent.

use std::net::SocketAddr;

use rsipstack::dialog::dialog::{DialogState, TransactionHandle};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Method, StatusCode};
use tokio::sync::mpsc;

use crate::call::admission::CallPermit;

/// Methods we answer; sent in Allow headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
/// Bodies we understand; sent in Accept headers.
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// An INVITE that opened a new dialog. 100 Trying has already been sent.
pub struct OfferedCall {
    /// The caller's Call-ID: theirs, not unique, shown but never trusted.
    pub sip_call_id: String,
    /// The caller (From URI) and the called party (To URI), as text.
    pub from: String,
    pub to: String,
    /// The user part of the Request-URI (e.g. `room-42` or a DID).
    pub request_user: Option<String>,
    /// The whole Request-URI, parameters and all, as text.
    pub request_uri: String,
    /// Where the INVITE came from (after rport).
    pub source: SocketAddr,
    /// All headers, as (name, value), for lookups such as `X-Conference-Id`.
    pub headers: Vec<(String, String)>,
    /// The SDP offer (empty when the INVITE carried none).
    pub offer: Vec<u8>,
    pub handle: CallHandle,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    /// The call's admission slot, held until the call ends.
    pub permit: CallPermit,
}

impl OfferedCall {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Things that happen to a call, in the order they happen.
#[derive(Debug)]
pub enum CallEvent {
    /// The ACK for our 200 OK arrived: the call is up.
    Confirmed,
    /// The caller cancelled before we answered (487 already sent).
    Cancelled,
    /// The far end hung up (its BYE was answered 200).
    Bye,
    /// A mid-dialog INFO (e.g. `application/dtmf-relay`); answer through `reply`.
    Info {
        content_type: String,
        body: Vec<u8>,
        reply: Responder,
    },
    /// A re-INVITE or UPDATE (hold, unhold, codec change, session refresh).
    /// `offer` is empty when it carries no SDP.
    Reoffer {
        offer: Vec<u8>,
        is_update: bool,
        reply: Responder,
    },
    /// A NOTIFY in the dialog: the progress of a REFER we sent, `status`
    /// being the status line of its `message/sipfrag` body (if it has one).
    Notify {
        status: Option<u16>,
        reply: Responder,
    },
    /// The dialog ended some other way (no ACK, transport error, our own BYE).
    Ended(String),
}

/// Answers one mid-dialog request. Dropping it unanswered makes the stack
/// send 501, so always answer.
#[derive(Debug)]
pub struct Responder(pub(super) TransactionHandle);

impl Responder {
    /// Answer with a status and no body.
    pub async fn status(self, code: u16) {
        self.0.reply(StatusCode::from(code)).await.ok();
    }

    /// Answer 200 OK with an SDP body.
    pub async fn sdp(self, sdp: Vec<u8>) {
        self.0
            .respond(StatusCode::OK, Some(sdp_headers()), Some(sdp))
            .await
            .ok();
    }
}

/// Acts on one call's dialog.
#[derive(Clone)]
pub struct CallHandle {
    pub(super) dialog: InviteDialog,
    /// Held while a run of INFO digits goes out, so two runs never interleave.
    pub(super) keying: KeyingTurn,
}

/// Whose turn it is to key digits as INFO on a dialog (runs go in order).
pub(super) type KeyingTurn = std::sync::Arc<tokio::sync::Mutex<()>>;

impl CallHandle {
    /// 180 Ringing without a body.
    pub fn ringing(&self) {
        self.dialog.ringing(None, None).ok();
    }

    /// 183 Session Progress with our SDP answer (early media).
    pub fn progress(&self, sdp: Vec<u8>) {
        self.dialog.ringing(Some(sdp_headers()), Some(sdp)).ok();
    }

    /// 200 OK with our SDP answer; retransmitted by the stack until the ACK.
    pub fn answer(&self, sdp: Vec<u8>) {
        self.dialog.accept(Some(sdp_headers()), Some(sdp)).ok();
    }

    /// The body of the ACK to our 200 OK (the SDP answer after a late offer).
    pub fn ack_body(&self) -> Vec<u8> {
        self.dialog
            .last_remote_ack()
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// Refuse the call with a final status (e.g. 488, 486, 503).
    pub fn reject(&self, code: u16) {
        self.dialog.reject(Some(StatusCode::from(code)), None).ok();
    }

    /// End an answered call with BYE.
    pub async fn hangup(&self) {
        if let Err(e) = self.dialog.bye().await {
            tracing::debug!(error = %e, "BYE not sent");
        }
    }

    /// Ask the far end to call `target` itself (REFER, RFC 3515); the
    /// status it answered with, `None` if no answer came within `wait`.
    pub async fn refer(&self, target: &str, wait: std::time::Duration) -> Option<u16> {
        let refer = self.dialog.refer(format!("<{target}>"), None, None);
        match tokio::time::timeout(wait, refer).await {
            Ok(Ok(Some(r))) => Some(u16::from(r.status_code)),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "REFER not sent");
                None
            }
            Err(_) => None,
        }
    }

    /// Key `digits` as SIP INFO, in the background.
    pub fn send_digits(&self, digits: String) {
        tokio::spawn(info_digits(
            self.dialog.clone(),
            self.keying.clone(),
            digits,
        ));
    }
}

/// How long each key sent as INFO lasts, and the pause after it.
const INFO_DIGIT_MS: u64 = 100;

/// Key `digits` as SIP INFO (`application/dtmf-relay`, the body phones
/// and trunks read), one request per key, each once the last is answered.
pub(super) async fn info_digits(dialog: InviteDialog, turn: KeyingTurn, digits: String) {
    let _turn = turn.lock().await;
    for d in digits.chars() {
        let body = format!("Signal={d}\r\nDuration={INFO_DIGIT_MS}\r\n").into_bytes();
        let headers = vec![Header::ContentType("application/dtmf-relay".into())];
        match dialog.info(Some(headers), Some(body)).await {
            Ok(Some(r)) if r.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {}
            Ok(r) => {
                tracing::info!(status = ?r.map(|r| r.status_code), "INFO digit refused: the rest not sent");
                return;
            }
            Err(e) => {
                tracing::info!(error = %e, "INFO digit not sent: the rest not sent");
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(INFO_DIGIT_MS)).await;
    }
}

/// A mid-dialog request as a call event; OPTIONS is answered here and
/// methods we do not take in a dialog get 405. `None`: nothing for the call.
pub(super) async fn in_dialog_event(state: DialogState) -> Option<CallEvent> {
    match state {
        DialogState::Updated(_, req, handle) => Some(CallEvent::Reoffer {
            offer: req.body.clone(),
            is_update: req.method == Method::Update,
            reply: Responder(handle),
        }),
        DialogState::Info(_, req, handle) => Some(CallEvent::Info {
            content_type: req
                .headers
                .iter()
                .find(|h| matches!(h, Header::ContentType(_)))
                .map(|h| h.value().to_owned())
                .unwrap_or_default(),
            body: req.body.clone(),
            reply: Responder(handle),
        }),
        DialogState::Options(_, _, handle) => {
            handle
                .respond(StatusCode::OK, Some(capabilities()), None)
                .await
                .ok();
            None
        }
        DialogState::Notify(_, req, handle) => Some(CallEvent::Notify {
            status: sipfrag_status(&req.body),
            reply: Responder(handle),
        }),
        DialogState::Refer(_, _, h)
        | DialogState::Message(_, _, h)
        | DialogState::Publish(_, _, h) => {
            h.reply(StatusCode::MethodNotAllowed).await.ok();
            None
        }
        _ => None,
    }
}

/// The status of a `message/sipfrag` body's status line (`SIP/2.0 200 OK`).
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    // The status line alone: what follows (headers, any bytes) is not read.
    let line = body.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line.get(..line.len().min(200))?).ok()?;
    let mut words = text.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    words
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..700).contains(s))
}

/// What an OPTIONS answer advertises, in or out of a dialog.
pub(super) fn capabilities() -> Vec<Header> {
    vec![
        Header::Allow(ALLOW.into()),
        Header::Accept(ACCEPT.into()),
        Header::Other("Accept-Language".into(), "en".into()),
    ]
}

fn sdp_headers() -> Vec<Header> {
    vec![
        Header::ContentType("application/sdp".into()),
        Header::Allow(ALLOW.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::sipfrag_status;

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\nX: y"), Some(486));
        // Whatever the headers after the status line hold.
        let mut long = b"SIP/2.0 200 OK\r\nSubject: ".to_vec();
        long.extend("é".repeat(200).bytes());
        long.push(0xff);
        assert_eq!(sipfrag_status(&long), Some(200));
        for bad in [
            &b""[..],
            b"SIP/2.0",
            b"HTTP/1.1 200 OK",
            b"SIP/2.0 2000 x",
            b"\xff\xfe",
        ] {
            assert_eq!(sipfrag_status(bad), None);
        }
    }
}
