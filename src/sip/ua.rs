//! The user agent: binds UDP and TCP, runs rsipstack's endpoint, answers
//! requests outside dialogs (OPTIONS, unknown methods), routes in-dialog
//! requests to their dialogs and turns each new INVITE into an
//! [`OfferedCall`] with its own event stream.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::{dialog::Dialog, DialogId};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Uri};
use rsipstack::transaction::endpoint::{EndpointInnerRef, EndpointOption};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::{CallIdFormat, TransactionReceiver};
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::call::{capabilities, in_dialog_event, CallEvent, CallHandle, OfferedCall, ALLOW};
use super::dial::{DialError, DialSpec, DialingCall};
use super::guard::GuardedUdp;
use super::in_order::DialogQueues;
use super::register::RegistrationOutcome;
use super::transport::{transport_of, Contacts, RequestCounters};
pub use super::transport::{RequestCounts, TlsOptions};
use crate::call::admission::{Admission, CallPermit, Refusal};
use crate::config::{SipTimers, Transport};

/// `User-Agent` / `Server` value unless `sip.user_agent` says otherwise.
pub const USER_AGENT: &str = concat!("confgate/", env!("CARGO_PKG_VERSION"));

/// The SIP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot bind SIP UDP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for SIP over TLS on {addr}: {source}")]
    BindTls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("SIP stack: {0}")]
    Stack(String),
}

/// What rsipstack holds, counted: the per-call entries of its dialog layer
/// and transaction layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StackCounts {
    /// Dialogs in the dialog layer (ours remove theirs when the call ends).
    pub dialogs: usize,
    /// Transactions that have not terminated; a finished one stays in its
    /// Completed state for up to 64·T1 (or T4) to absorb retransmissions.
    pub transactions: usize,
    /// Last responses kept for 64·T1 after a transaction ends, to answer
    /// retransmissions.
    pub finished_transactions: usize,
    /// Server INVITE transactions waiting for the ACK of their 2xx.
    pub waiting_ack: usize,
    /// Transaction timers set (retransmissions, timeouts, cleanups).
    pub timers: usize,
    /// TCP connections the transport layer tracks (a caller's goes when it
    /// closes, or after the stack's idle timeout).
    pub connections: usize,
}

/// A running user agent.
pub struct UserAgent {
    local: SocketAddr,
    tls_local: Option<SocketAddr>,
    advertised: IpAddr,
    cancel: CancellationToken,
    layer: Arc<DialogLayer>,
    contacts: Contacts,
    requests: Arc<RequestCounters>,
    endpoint: EndpointInnerRef,
    queues: DialogQueues,
}

impl UserAgent {
    /// Bind `listen` (UDP and TCP) and, when `tls` says so, a TLS listener,
    /// start serving, and return the stream of offered calls. `public` is
    /// what goes into Contact headers; every new INVITE must pass
    /// `admission` first.
    pub async fn start(
        listen: SocketAddr,
        public: Option<IpAddr>,
        timers: SipTimers,
        user_agent: &str,
        admission: Admission,
        tls: TlsOptions,
        cancel: CancellationToken,
    ) -> Result<(UserAgent, mpsc::UnboundedReceiver<OfferedCall>), SipError> {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .map_err(|source| SipError::Bind {
                addr: listen,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| SipError::Bind {
            addr: listen,
            source,
        })?;
        let advertised = public.unwrap_or_else(|| advertised_ip(local.ip()));
        let external = public.map(|ip| SocketAddr::new(ip, local.port()));
        let stack = |e: rsipstack::Error| SipError::Stack(e.to_string());

        let transport = TransportLayer::new(cancel.child_token());
        let udp = UdpConnection::from_socket(
            Arc::new(GuardedUdp::new(socket, user_agent)),
            external,
            Some(cancel.child_token()),
        )
        .await
        .map_err(stack)?;
        transport.add_transport(udp.into());
        let tcp = TcpListenerConnection::new(local, external)
            .await
            .map_err(stack)?;
        transport.add_transport(tcp.into());
        let tls_local = super::transport::add_tls(&transport, tls, public).await?;

        let endpoint = EndpointBuilder::new()
            .with_user_agent(user_agent)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.child_token())
            .with_option(EndpointOption {
                t1: timers.t1,
                t4: timers.t4,
                t1x64: timers.t1 * 64,
                callid_format: CallIdFormat::Uuid,
                ..Default::default()
            })
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Info,
                Method::Update,
            ])
            .build();
        let incoming = endpoint.incoming_transactions().map_err(stack)?;
        let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let uri = |port: u16, param: &str| {
            Uri::try_from(format!(
                "sip:confgate@{}{param}",
                SocketAddr::new(advertised, port)
            ))
            .map_err(|e| SipError::Stack(e.to_string()))
        };
        let contacts = Contacts {
            udp: uri(local.port(), "")?,
            tcp: uri(local.port(), ";transport=tcp")?,
            tls: match tls_local {
                Some(addr) => Some(uri(addr.port(), ";transport=tls")?),
                None => None,
            },
        };

        let inner = endpoint.inner.clone();
        let serve_cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = inner.serve() => if let Err(e) = r { warn!(error = %e, "SIP endpoint stopped") },
                _ = serve_cancel.cancelled() => {}
            }
        });
        wait_for_tcp(local, "TCP").await;
        if let Some(addr) = tls_local {
            wait_for_tcp(addr, "TLS").await;
        }
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let queues = DialogQueues::default();
        let requests = Arc::new(RequestCounters::default());
        tokio::spawn(route_requests(
            incoming,
            Router {
                layer: layer.clone(),
                contacts: contacts.clone(),
                calls: calls_tx,
                queues: queues.clone(),
                admission,
                requests: requests.clone(),
            },
        ));
        match tls_local {
            Some(tls) => info!(%local, %tls, %advertised, "SIP listening on UDP and TCP, and TLS"),
            None => info!(%local, %advertised, "SIP listening on UDP and TCP"),
        }
        Ok((
            UserAgent {
                local,
                tls_local,
                advertised,
                cancel,
                layer,
                contacts,
                requests,
                endpoint: endpoint.inner.clone(),
                queues,
            },
            calls_rx,
        ))
    }

    /// The bound SIP address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The bound SIP-over-TLS address, if TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_local
    }

    /// The SIP requests received so far, by transport.
    pub fn requests(&self) -> RequestCounts {
        self.requests.get()
    }

    /// The address advertised in Contact and SDP.
    pub fn advertised_ip(&self) -> IpAddr {
        self.advertised
    }

    /// Place an outbound call.
    pub async fn dial(&self, spec: DialSpec) -> Result<DialingCall, DialError> {
        super::dial::dial(&self.layer, &self.queues, &self.contacts, spec).await
    }

    /// Dialogs that still have a request queue; none once every call has ended.
    pub fn dialog_queues(&self) -> usize {
        self.queues.len()
    }

    /// What the SIP stack holds now (see [`StackCounts`]).
    pub fn stack_counts(&self) -> StackCounts {
        let stats = self.endpoint.get_stats();
        StackCounts {
            dialogs: self.layer.len(),
            transactions: stats.running_transactions,
            finished_transactions: stats.finished_transactions,
            waiting_ack: stats.waiting_ack,
            timers: self.endpoint.timers.len(),
            connections: self.endpoint.transport_layer.connections_count(),
        }
    }

    /// Register with `registrar` and keep the binding fresh until the agent
    /// stops; every attempt's outcome goes to `report`.
    pub fn register(
        &self,
        registrar: &str,
        transport: Transport,
        username: String,
        password: String,
        expires: u32,
        report: impl FnMut(RegistrationOutcome) + Send + 'static,
    ) -> Result<(), SipError> {
        super::register::keep_registered(
            self.endpoint.clone(),
            registrar,
            transport,
            self.contacts.on(transport).clone(),
            username,
            password,
            expires,
            self.cancel.child_token(),
            report,
        )
        .map_err(SipError::Stack)
    }

    /// Stop the SIP side.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// rsipstack binds its TCP and TLS listeners inside `serve()`; wait until
/// they accept, so that a started agent answers on every transport.
async fn wait_for_tcp(local: SocketAddr, name: &str) {
    let probe = match local.ip() {
        ip if ip.is_unspecified() && local.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], local.port()))
        }
        ip if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), local.port())
        }
        _ => local,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(probe).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    warn!(%local, "SIP over {name} is not listening (port taken?)");
}

/// For a wildcard bind, advertise the first non-loopback interface address.
fn advertised_ip(bound: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    // connect() on UDP sends nothing; it only asks the kernel for a route.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr());
    match probe {
        Ok(addr) if !addr.ip().is_unspecified() => addr.ip(),
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

/// What routes requests: the dialogs, where offered calls go, and who may call.
struct Router {
    layer: Arc<DialogLayer>,
    contacts: Contacts,
    calls: mpsc::UnboundedSender<OfferedCall>,
    queues: DialogQueues,
    admission: Admission,
    requests: Arc<RequestCounters>,
}

/// The address a request came from (after rport).
fn source_of(tx: &Transaction) -> SocketAddr {
    tx.connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

async fn route_requests(mut incoming: TransactionReceiver, router: Router) {
    while let Some(mut tx) = incoming.recv().await {
        router.requests.count(&tx);
        let in_dialog = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        // Screened before anything is created for the request: a refusal
        // takes no RTP port, no dialog and no call task.
        if !in_dialog && method != Method::Ack {
            let source = source_of(&tx).ip();
            let admitted = match method {
                Method::Invite => router.admission.admit_inbound(source).map(Some),
                _ if router.admission.allows(source) => Ok(None),
                _ => Err(Refusal::NotAllowed),
            };
            match admitted {
                Ok(Some(permit)) => {
                    offer_call(tx, &router, permit);
                    continue;
                }
                Ok(None) => {}
                Err(refusal) => {
                    info!(%source, %method, reason = %refusal, "request refused");
                    // On its own task: a TCP peer that does not read must
                    // not hold up the routing of everyone else's requests.
                    tokio::spawn(async move { refuse(&mut tx, refusal).await });
                    continue;
                }
            }
        }
        match method {
            // A dispatcher's probe: draining, this node takes no new calls.
            Method::Options if !in_dialog && router.admission.draining() => {
                tokio::spawn(async move { refuse(&mut tx, Refusal::Draining).await });
            }
            Method::Options if !in_dialog => {
                tokio::spawn(
                    async move { tx.reply_with(StatusCode::OK, capabilities(), None).await },
                );
            }
            Method::Ack => {}
            Method::Invite
            | Method::Bye
            | Method::Cancel
            | Method::Info
            | Method::Update
            | Method::Options
            | Method::PRack => match router.layer.match_dialog(&tx) {
                Some(Dialog::Invite(dialog)) => match answer_unconfirmed(method, &dialog.state()) {
                    Some(status) => {
                        tokio::spawn(async move { tx.reply(status).await });
                    }
                    None => router.queues.push(dialog, tx),
                },
                _ => {
                    tokio::spawn(
                        async move { tx.reply(StatusCode::CallTransactionDoesNotExist).await },
                    );
                }
            },
            _ => {
                let headers = vec![Header::Allow(ALLOW.into())];
                tokio::spawn(async move {
                    tx.reply_with(StatusCode::MethodNotAllowed, headers, None)
                        .await
                });
            }
        }
    }
}

/// 403 for a source outside `sip.allow`; 503 with Retry-After when full.
async fn refuse(tx: &mut Transaction, refusal: Refusal) {
    let headers = match refusal {
        Refusal::NotAllowed => vec![],
        Refusal::Full | Refusal::SourceFull => {
            vec![Header::RetryAfter(RETRY_AFTER_FULL.into())]
        }
        // Another node should take it: a dispatcher in front moves on.
        Refusal::Draining => vec![Header::RetryAfter(RETRY_AFTER_DRAINING.into())],
    };
    tx.reply_with(StatusCode::from(refusal.sip_status()), headers, None)
        .await
        .ok();
}

/// Seconds a caller refused for lack of room is asked to wait.
const RETRY_AFTER_FULL: &str = "5";
/// Seconds a caller refused while draining is asked to wait.
const RETRY_AFTER_DRAINING: &str = "60";

fn offer_call(mut tx: Transaction, router: &Router, permit: CallPermit) {
    let Router {
        layer,
        contacts,
        calls,
        queues,
        ..
    } = router;
    // A call that came over TLS is kept on it; TCP and UDP share the plain
    // Contact, as they share the port.
    let contact = match transport_of(&tx) {
        Transport::Tls => contacts.on(Transport::Tls),
        _ => contacts.on(Transport::Udp),
    };
    let req = tx.original.clone();
    let sip_call_id = req
        .call_id_header()
        .map(|h| h.value().to_owned())
        .unwrap_or_default();
    let (state_tx, state_rx) = layer.new_dialog_state_channel();
    let dialog = match layer.get_or_create_server_invite(&tx, state_tx, None, Some(contact.clone()))
    {
        Ok(d) => d,
        Err(e) => {
            warn!(%sip_call_id, error = %e, "cannot create dialog");
            tokio::spawn(async move { tx.reply(StatusCode::ServerInternalError).await });
            return;
        }
    };
    let source = source_of(&tx);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("dialog", sip_call_id = %sip_call_id);
    tokio::spawn(
        translate_states(
            state_rx,
            dialog.id(),
            layer.clone(),
            queues.clone(),
            events_tx,
        )
        .instrument(span.clone()),
    );
    let mut serving = dialog.clone();
    tokio::spawn(
        async move {
            if let Err(e) = serving.handle(&mut tx).await {
                debug!(error = %e, "INVITE transaction ended with an error");
            }
        }
        .instrument(span),
    );
    let offered = OfferedCall {
        sip_call_id,
        from: req
            .from_header()
            .map(|h| uri_text(h.value()))
            .unwrap_or_default(),
        to: req
            .to_header()
            .map(|h| uri_text(h.value()))
            .unwrap_or_default(),
        request_user: req.uri.auth.as_ref().map(|a| a.user.clone()),
        request_uri: req.uri.to_string(),
        source,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name().to_owned(), h.value().to_owned()))
            .collect(),
        offer: req.body.clone(),
        handle: CallHandle {
            dialog,
            keying: Default::default(),
        },
        events: events_rx,
        permit,
    };
    if let Err(refused) = calls.send(offered) {
        warn!("call offered while shutting down");
        refused.0.handle.reject(503);
    }
}

/// Whether the dialog is past its ACK (mid-dialog requests are handled then).
/// The answer to an in-dialog request that we give ourselves, or `None` to
/// queue it. Before the dialog is confirmed the stack only handles BYE,
/// CANCEL and PRACK. A new offer then waits its turn (491). After our 200 OK
/// the rest is held for the ACK (see `in_order`); in an early dialog it is
/// acknowledged and dropped.
fn answer_unconfirmed(method: Method, state: &DialogState) -> Option<StatusCode> {
    if confirmed(state) || matches!(method, Method::Bye | Method::Cancel | Method::PRack) {
        return None;
    }
    match method {
        Method::Invite | Method::Update => Some(StatusCode::RequestPending),
        _ if matches!(state, DialogState::WaitAck(..)) => None,
        _ => Some(StatusCode::OK),
    }
}

fn confirmed(state: &DialogState) -> bool {
    !matches!(
        state,
        DialogState::Calling(_)
            | DialogState::Trying(_)
            | DialogState::Early(..)
            | DialogState::WaitAck(..)
    )
}

/// `"Alice" <sip:alice@host>;tag=x` → `sip:alice@host`
fn uri_text(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
        _ => value.split(';').next().unwrap_or(value).trim().to_owned(),
    }
}

/// rsipstack dialog states → our call events; removes the dialog at the end.
async fn translate_states(
    mut states: DialogStateReceiver,
    id: DialogId,
    layer: Arc<DialogLayer>,
    queues: DialogQueues,
    events: mpsc::UnboundedSender<CallEvent>,
) {
    let mut confirmed = false;
    while let Some(state) = states.recv().await {
        let event = match state {
            DialogState::Confirmed(..) if !confirmed => {
                confirmed = true;
                // The call hears of the ACK before any request held for it.
                if events.send(CallEvent::Confirmed).is_err() {
                    break;
                }
                queues.confirmed(&id);
                continue;
            }
            DialogState::Terminated(_, reason) => {
                let event = match reason {
                    TerminatedReason::UacCancel => CallEvent::Cancelled,
                    TerminatedReason::UacBye => CallEvent::Bye,
                    other => CallEvent::Ended(format!("{other:?}")),
                };
                events.send(event).ok();
                break;
            }
            other => match in_dialog_event(other).await {
                Some(event) => event,
                None => continue,
            },
        };
        if events.send(event).is_err() {
            break;
        }
    }
    queues.close(&id);
    layer.remove_dialog(&id);
}
