//! Registration with the trunk: REGISTER (digest answered by rsipstack),
//! refreshed at 75 % of the granted expiry, retried with backoff (1 s
//! doubling to 60 s) after a failure, each outcome reported.

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::{RefreshOutcome, Registration};
use rsipstack::sip::{StatusCodeKind, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use tokio_util::sync::CancellationToken;

use crate::config::Transport;

/// One registration attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    Registered,
    /// A final response other than 2xx (403, 404, a second 401...).
    Rejected(u16),
    /// No response: the registrar is unreachable.
    Failed(String),
}

/// Keep registering `username` at `registrar` (HOST[:PORT]) over
/// `transport` until `stop`; over TCP or TLS `contact` is the binding (our
/// listener, with its transport), over UDP the stack's own.
#[allow(clippy::too_many_arguments)]
pub(super) fn keep_registered(
    endpoint: EndpointInnerRef,
    registrar: &str,
    transport: Transport,
    contact: Uri,
    username: String,
    password: String,
    expires: u32,
    stop: CancellationToken,
    mut report: impl FnMut(RegistrationOutcome) + Send + 'static,
) -> Result<(), String> {
    let param = match transport {
        Transport::Udp => String::new(),
        t => format!(";transport={t}"),
    };
    let server = Uri::try_from(format!("sip:{registrar}{param}")).map_err(|e| e.to_string())?;
    let mut binding = contact;
    if let Some(auth) = binding.auth.as_mut() {
        auth.user = username.clone();
    }
    let mut registration = Registration::new(
        endpoint,
        Some(Credential {
            username,
            password,
            realm: None,
            auth_username: None,
        }),
    );
    if transport != Transport::Udp {
        registration.contact = Some(rsipstack::sip::typed::Contact {
            display_name: None,
            uri: binding,
            params: vec![],
        });
    }
    tokio::spawn(async move {
        registration
            .keep_alive(server.clone(), expires, stop.clone(), |outcome| {
                report(match outcome {
                    RefreshOutcome::Registered(_) => RegistrationOutcome::Registered,
                    RefreshOutcome::Rejected(r)
                        if r.status_code.kind() == StatusCodeKind::Successful =>
                    {
                        RegistrationOutcome::Registered
                    }
                    RefreshOutcome::Rejected(r) => {
                        RegistrationOutcome::Rejected(r.status_code.code())
                    }
                    RefreshOutcome::Failed(e) => RegistrationOutcome::Failed(e.to_string()),
                })
            })
            .await;
        // Leaving: take the binding away (expires=0), best effort.
        registration.register(server, Some(0)).await.ok();
    });
    Ok(())
}
