//! A test phone built on rsipstack's client transactions and dialogs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::Uri;
use rsipstack::transport::{udp::UdpConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio_util::sync::CancellationToken;

/// What the phone saw of one INVITE.
pub struct Call {
    pub dialog: InviteDialog,
    /// Status codes of the responses, in order of arrival (100 may be absent
    /// from the states if the final came first).
    pub progress: Vec<(u16, Duration, bool)>,
    pub final_code: u16,
    pub answer_sdp: String,
    pub invite_to_final: Duration,
    pub states: DialogStateReceiver,
}

pub struct Uac {
    layer: Arc<DialogLayer>,
    local: SocketAddr,
    cancel: CancellationToken,
}

impl Uac {
    pub async fn new() -> Uac {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let udp = UdpConnection::create_connection(
            "127.0.0.1:0".parse().unwrap(),
            None,
            Some(cancel.child_token()),
        )
        .await
        .expect("uac socket");
        let local = udp.get_addr().get_socketaddr().expect("uac addr");
        transport.add_transport(udp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent("confgate-test-phone")
            .with_transport_layer(transport)
            .with_cancel_token(cancel.child_token())
            .build();
        let inner = endpoint.inner.clone();
        tokio::spawn(async move { inner.serve().await });
        let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        Uac {
            layer,
            local,
            cancel,
        }
    }

    /// Dial `sip:{user}@{server}` with `sdp`; returns once a final response arrived.
    pub async fn dial(&self, server: SocketAddr, user: &str, sdp: String) -> Call {
        let (state_tx, mut states) = self.layer.new_dialog_state_channel();
        let opt = InviteOption {
            caller: Uri::try_from(format!("sip:phone@{}", self.local)).unwrap(),
            callee: Uri::try_from(format!("sip:{user}@{server}")).unwrap(),
            contact: Uri::try_from(format!("sip:phone@{}", self.local)).unwrap(),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp.into_bytes()),
            ..Default::default()
        };
        let started = Instant::now();
        let layer = self.layer.clone();
        let mut invite = tokio::spawn(async move { layer.do_invite(opt, state_tx).await });
        let mut progress = Vec::new();
        // Record provisional responses while the INVITE runs; states queued
        // before the final response are read first (biased).
        let (dialog, resp) = loop {
            tokio::select! {
                biased;
                st = states.recv() => match st {
                    Some(DialogState::Trying(_)) => progress.push((100, started.elapsed(), false)),
                    Some(DialogState::Early(_, r)) => progress.push((
                        u16::from(r.status_code.clone()),
                        started.elapsed(),
                        !r.body.is_empty(),
                    )),
                    _ => {}
                },
                r = &mut invite => break r.expect("invite task").expect("INVITE sent"),
            }
        };
        let invite_to_final = started.elapsed();
        let resp = resp.expect("a final response");
        Call {
            dialog,
            progress,
            final_code: u16::from(resp.status_code.clone()),
            answer_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
            invite_to_final,
            states,
        }
    }
}

impl Drop for Uac {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
