//! SDES and SRTP from the far end: the input's text as an `a=crypto` value,
//! and its bytes as datagrams that an SRTP session unprotects (RTP and
//! RTCP), with genuine packets of the same key among them.
#![no_main]

use confgate::rtp::sdes;
use confgate::rtp::srtp::{MasterKey, SrtpKeys, SrtpSession, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sdes::parse(&String::from_utf8_lossy(data));
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let suite = Suite::ALL[usize::from(pick) % Suite::ALL.len()];
    let key = MasterKey::from_slice(suite, &[7u8; 30][..suite.key_material_len()]).unwrap();
    let keys = SrtpKeys {
        suite,
        local: key,
        remote: key,
    };
    let (Ok(mut peer), Ok(mut us)) = (SrtpSession::new(keys), SrtpSession::new(keys)) else {
        return;
    };
    // Datagrams: a length byte, then the bytes; an odd length byte is RTCP.
    let mut rest = rest;
    while let [len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, after) = tail.split_at(n);
        rest = after;
        let mut bytes = datagram.to_vec();
        let rtcp = len % 2 == 1;
        // Sometimes the peer protects it first, so genuine packets pass too.
        if len % 4 < 2 {
            let _ = match rtcp {
                true => peer.protect_rtcp(&mut bytes),
                false => peer.protect_rtp(&mut bytes),
            };
        }
        let _ = match rtcp {
            true => us.unprotect_rtcp(&mut bytes),
            false => us.unprotect_rtp(&mut bytes),
        };
    }
});
