//! SDP from the far end: an offer negotiated, answered, re-offered, and an
//! answer to our own offer.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use confgate::call::session::{LocalMedia, SdpSession};
use confgate::media::codec::Codec;
use confgate::sip::sdp;
use libfuzzer_sys::fuzz_target;

fn session() -> SdpSession {
    SdpSession::new(LocalMedia {
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        events: true,
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        port: 20000,
        session_id: 7,
        srtp: confgate::rtp::sdes::Policy::Optional,
        srtp_key: confgate::rtp::srtp::MasterKey::random(),
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = sdp::negotiate(data, &[Codec::Pcmu, Codec::Pcma]);
    let _ = sdp::parse_answer(data);
    // An inbound call: the offer, then the same bytes as a re-INVITE.
    let mut inbound = session();
    if inbound.answer(data).is_ok() {
        inbound.lock_codec();
        let _ = inbound.answer(data);
    }
    // An outbound call: our offer, these bytes as the answer.
    let mut outbound = session();
    let _ = outbound.offer();
    let _ = outbound.take_answer(data);
});
