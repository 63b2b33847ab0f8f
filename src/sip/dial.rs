//! Outbound calls at the SIP edge: an INVITE (through the trunk's proxy when
//! one is given), digest answers to 401/407 by rsipstack, and the dialog's
//! progress turned into our own [`DialEvent`]s.

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{StatusCodeKind, Uri};
use rsipstack::transport::SipAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::call::{in_dialog_event, CallEvent};
use super::in_order::DialogQueues;
use super::transport::Contacts;
use crate::config::Transport;

/// What to dial.
#[derive(Debug, Clone)]
pub struct DialSpec {
    pub call_id: String,
    /// The From URI, `sip:user@domain`.
    pub from: String,
    /// The Request-URI and To.
    pub to: String,
    /// Send the INVITE to this `host[:port]` instead of the Request-URI's host.
    pub proxy: Option<String>,
    /// How the INVITE travels to the proxy (a URI dialled in full says
    /// for itself: `;transport=`, `sips:`).
    pub transport: Transport,
    /// Digest credentials (username, password) for 401/407 challenges.
    pub credential: Option<(String, String)>,
    /// Our SDP offer.
    pub offer: Vec<u8>,
    /// Extra headers (name, value), e.g. `X-Conference-Id` to another node.
    pub headers: Vec<(String, String)>,
}

/// Why a dial could not even start.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("`{0}` is not a SIP URI")]
    BadUri(String),
    #[error("`{0}` is not HOST[:PORT]")]
    BadProxy(String),
    /// A TCP or TLS connection to the first hop could not be made: refused,
    /// timed out, or (TLS) its certificate did not verify.
    #[error("cannot connect to {target} over {transport}: {detail}")]
    Connect {
        target: String,
        transport: Transport,
        detail: String,
    },
    #[error("SIP stack: {0}")]
    Stack(String),
}

/// How long a TCP connection and TLS handshake to the first hop may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An outbound call's progress, in order.
#[derive(Debug)]
pub enum DialEvent {
    /// 180 or 183 (with SDP when early media is offered).
    Progress { status: u16 },
    /// 200 OK; the stack has sent the ACK. `sdp` is the answer.
    Answered { sdp: Vec<u8> },
    /// It ended before an answer. `status` is the final response when one
    /// came (486, 603, 407 after our credentials...); `None` for a transport
    /// failure, a timeout, or a 2xx that crossed our CANCEL (hung up).
    Failed { status: Option<u16>, detail: String },
    /// After the answer: what happens in the dialog (BYE, INFO, re-INVITE...).
    InDialog(CallEvent),
}

/// Acts on one outbound call.
#[derive(Clone)]
pub struct DialHandle {
    dialog: InviteDialog,
    keying: super::call::KeyingTurn,
}

impl DialHandle {
    /// CANCEL while it rings (deferred by the stack until a provisional
    /// response has come, as RFC 3261 §9.1 asks).
    pub async fn cancel(&self) {
        if let Err(e) = self.dialog.cancel().await {
            debug!(error = %e, "CANCEL not sent");
        }
    }

    /// BYE once answered.
    pub async fn hangup(&self) {
        if let Err(e) = self.dialog.bye().await {
            debug!(error = %e, "BYE not sent");
        }
    }

    /// Key `digits` as SIP INFO, in the background.
    pub fn send_digits(&self, digits: String) {
        tokio::spawn(super::call::info_digits(
            self.dialog.clone(),
            self.keying.clone(),
            digits,
        ));
    }
}

/// A call being dialled.
pub struct DialingCall {
    pub handle: DialHandle,
    pub events: mpsc::UnboundedReceiver<DialEvent>,
}

pub(super) async fn dial(
    layer: &Arc<DialogLayer>,
    queues: &DialogQueues,
    contacts: &Contacts,
    spec: DialSpec,
) -> Result<DialingCall, DialError> {
    let uri = |s: &str| Uri::try_from(s).map_err(|_| DialError::BadUri(s.to_owned()));
    let param = match spec.transport {
        Transport::Udp => String::new(),
        t => format!(";transport={t}"),
    };
    let destination = match &spec.proxy {
        Some(p) => Some(
            Uri::try_from(format!("sip:{p}{param}"))
                .ok()
                .and_then(|u| SipAddr::try_from(&u).ok())
                .ok_or_else(|| DialError::BadProxy(p.clone()))?,
        ),
        None => None,
    };
    let callee = uri(&spec.to)?;
    // Our Contact names the transport the dialog starts on, so the far
    // end's requests (BYE, re-INVITE, INFO) come back on it.
    let transport = match &destination {
        Some(_) => spec.transport,
        None => callee_transport(&callee),
    };
    // Over TCP or TLS the connection is made first, so that a peer that
    // refuses it, or a certificate that does not verify, fails the dial at
    // once with the reason (the stack would retry until Timer B, 64·T1).
    if transport != Transport::Udp {
        let target = match &destination {
            Some(d) => Some(d.clone()),
            None => SipAddr::try_from(&callee).ok().map(|mut a| {
                a.r#type = Some(match transport {
                    Transport::Tls => rsipstack::sip::Transport::Tls,
                    _ => rsipstack::sip::Transport::Tcp,
                });
                a
            }),
        };
        if let Some(target) = target {
            connect(layer, &target, transport).await?;
        }
    }
    let opt = InviteOption {
        caller: uri(&spec.from)?,
        callee,
        destination,
        content_type: Some("application/sdp".into()),
        offer: Some(spec.offer),
        contact: contacts.on(transport).clone(),
        credential: spec.credential.map(|(username, password)| Credential {
            username,
            password,
            realm: None,
            auth_username: None,
        }),
        call_id: Some(spec.call_id),
        headers: (!spec.headers.is_empty()).then(|| {
            spec.headers
                .into_iter()
                .map(|(name, value)| rsipstack::sip::Header::Other(name, value))
                .collect()
        }),
        ..Default::default()
    };
    let (state_tx, state_rx) = layer.new_dialog_state_channel();
    let (dialog, outcome) = layer
        .do_invite_async(opt, state_tx)
        .map_err(|e| DialError::Stack(e.to_string()))?;
    let (events_tx, events) = mpsc::unbounded_channel();
    tokio::spawn(follow(
        state_rx,
        outcome,
        layer.clone(),
        queues.clone(),
        events_tx,
    ));
    Ok(DialingCall {
        handle: DialHandle {
            dialog,
            keying: Default::default(),
        },
        events,
    })
}

/// Open (and leave cached for the INVITE) the connection to `target`.
async fn connect(
    layer: &DialogLayer,
    target: &SipAddr,
    transport: Transport,
) -> Result<(), DialError> {
    let lookup = layer.endpoint.transport_layer.lookup(target, None);
    let detail = match tokio::time::timeout(CONNECT_TIMEOUT, lookup).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    let target = target.addr.to_string();
    warn!(%target, %transport, %detail, "cannot connect for an outbound call");
    Err(DialError::Connect {
        target,
        transport,
        detail,
    })
}

/// The transport a Request-URI asks for: `;transport=`, or TLS for `sips:`.
fn callee_transport(uri: &Uri) -> Transport {
    use rsipstack::sip::Scheme;
    if matches!(uri.scheme, Some(Scheme::Sips)) {
        return Transport::Tls;
    }
    match SipAddr::try_from(uri).ok().and_then(|a| a.r#type) {
        Some(rsipstack::sip::Transport::Tls) => Transport::Tls,
        Some(rsipstack::sip::Transport::Tcp) => Transport::Tcp,
        _ => Transport::Udp,
    }
}

/// Client dialog states and the INVITE's outcome → our events; one
/// `Answered` or one `Failed`, then in-dialog events until the end.
async fn follow(
    mut states: DialogStateReceiver,
    mut outcome: JoinHandle<InviteAsyncResult>,
    layer: Arc<DialogLayer>,
    queues: DialogQueues,
    events: mpsc::UnboundedSender<DialEvent>,
) {
    let mut answered = false;
    let mut settled = false;
    let mut ended_early = false;
    let mut confirmed_id = None;
    loop {
        tokio::select! {
            // States first: a 180 queued before the final response is reported before it.
            biased;
            state = states.recv() => {
                let Some(state) = state else { break };
                match state {
                    DialogState::Early(_, resp) => {
                        events.send(DialEvent::Progress { status: resp.status_code.code() }).ok();
                    }
                    DialogState::Confirmed(id, resp) if !answered => {
                        answered = true;
                        confirmed_id = Some(id);
                        events.send(DialEvent::Answered { sdp: resp.body.clone() }).ok();
                    }
                    DialogState::Terminated(_, reason) if answered => {
                        let event = match reason {
                            TerminatedReason::UasBye => CallEvent::Bye,
                            other => CallEvent::Ended(format!("{other:?}")),
                        };
                        events.send(DialEvent::InDialog(event)).ok();
                        break;
                    }
                    // Before an answer the INVITE's outcome says how it ended;
                    // after a 2xx that crossed our CANCEL (and got a BYE)
                    // this is the end.
                    DialogState::Terminated(..) if settled => {
                        events.send(DialEvent::Failed { status: None, detail: "answered after CANCEL; hung up".into() }).ok();
                        break;
                    }
                    DialogState::Terminated(..) => ended_early = true,
                    other if answered => {
                        if let Some(event) = in_dialog_event(other).await {
                            events.send(DialEvent::InDialog(event)).ok();
                        }
                    }
                    _ => {}
                }
            }
            result = &mut outcome, if !settled => {
                settled = true;
                let failure = match result {
                    Ok(Ok((_, Some(resp)))) if resp.status_code.kind() == StatusCodeKind::Successful => None,
                    Ok(Ok((_, Some(resp)))) => Some((Some(resp.status_code.code()), resp.status_code.to_string())),
                    Ok(Ok((_, None))) => Some((None, "no final response".to_owned())),
                    Ok(Err(e)) => Some((None, e.to_string())),
                    Err(e) => Some((None, e.to_string())),
                };
                let failure = match failure {
                    None if ended_early && !answered => Some((None, "answered after CANCEL; hung up".to_owned())),
                    f => f,
                };
                if let Some((status, detail)) = failure {
                    if !answered {
                        events.send(DialEvent::Failed { status, detail }).ok();
                        break;
                    }
                }
            }
        }
    }
    if let Some(id) = confirmed_id {
        queues.close(&id);
        layer.remove_dialog(&id);
    }
}
