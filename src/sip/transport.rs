//! Transports at the SIP edge: what SIP over TLS needs to start, which
//! transport a request came over (counted per transport), and our Contact
//! for a dialog on each one.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use rsipstack::sip::Uri;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tls::{TlsConfig, TlsListenerConnection};
use rsipstack::transport::{SipConnection, TransportLayer};

use super::ua::SipError;
use crate::config::Transport;

/// SIP over TLS for the user agent.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// Listen for TLS on this address with this certificate chain and
    /// private key (PEM, checked beforehand by the configuration).
    pub listen: Option<(SocketAddr, Vec<u8>, Vec<u8>)>,
    /// The CA certificates (PEM) that the peers we connect to over TLS must
    /// chain to; `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
}

/// The SIP requests received, by the transport they came over (in-dialog
/// ones included; the ACK of a 2xx goes to its transaction, uncounted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    pub udp: u64,
    pub tcp: u64,
    pub tls: u64,
}

#[derive(Debug, Default)]
pub(super) struct RequestCounters {
    udp: AtomicU64,
    tcp: AtomicU64,
    tls: AtomicU64,
}

impl RequestCounters {
    pub(super) fn count(&self, tx: &Transaction) {
        let counter = match transport_of(tx) {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
            Transport::Tls => &self.tls,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> RequestCounts {
        RequestCounts {
            udp: self.udp.load(Ordering::Relaxed),
            tcp: self.tcp.load(Ordering::Relaxed),
            tls: self.tls.load(Ordering::Relaxed),
        }
    }
}

/// What a request came over.
pub(super) fn transport_of(tx: &Transaction) -> Transport {
    match &tx.connection {
        Some(SipConnection::Tls(_)) => Transport::Tls,
        Some(c) if c.is_reliable() => Transport::Tcp,
        _ => Transport::Udp,
    }
}

/// Our Contact for each transport: a dialog that starts on TLS (or TCP)
/// names it, so that the far end sends the dialog's requests on it too.
#[derive(Debug, Clone)]
pub(super) struct Contacts {
    pub(super) udp: Uri,
    pub(super) tcp: Uri,
    pub(super) tls: Option<Uri>,
}

impl Contacts {
    /// The Contact for a dialog on `transport`; the plain one when there is
    /// no TLS listener.
    pub(super) fn on(&self, transport: Transport) -> &Uri {
        match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
            Transport::Tls => self.tls.as_ref().unwrap_or(&self.udp),
        }
    }
}

/// Add the TLS listener `tls` asks for to `transport` and set the CA roots
/// its TLS client connections verify against; the TLS address bound, if any.
pub(super) async fn add_tls(
    transport: &TransportLayer,
    tls: TlsOptions,
    public: Option<IpAddr>,
) -> Result<Option<SocketAddr>, SipError> {
    let tls_local = match tls.listen {
        Some((addr, cert, key)) => {
            // rsipstack binds in serve(): find the port (when 0) and
            // whether it is free first, so a taken one fails the start.
            let tls_local = std::net::TcpListener::bind(addr)
                .and_then(|l| l.local_addr())
                .map_err(|source| SipError::BindTls { addr, source })?;
            let listener = TlsListenerConnection::new(
                tls_local,
                public.map(|ip| SocketAddr::new(ip, tls_local.port())),
                TlsConfig {
                    cert: Some(cert),
                    key: Some(key),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| SipError::Stack(e.to_string()))?;
            transport.add_transport(listener.into());
            Some(tls_local)
        }
        None => None,
    };
    // Peers we dial over TLS (the trunk, a sips: URI) verify against these.
    transport.set_tls_config(TlsConfig {
        ca_certs: Some(match tls.ca {
            Some(pem) => pem,
            None => super::roots::system_roots_pem(),
        }),
        ..Default::default()
    });
    Ok(tls_local)
}
