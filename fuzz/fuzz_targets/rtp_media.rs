//! A call's whole media session fed hostile datagrams: RTP and RTCP from
//! the learned source and from strangers, in the order the input says.
#![no_main]
#![allow(clippy::disallowed_methods)] // the clock's starting point

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use confgate::call::media::{MediaParams, MediaSession, MediaSetup};
use confgate::media::codec::Codec;
use confgate::rtp::learning::SourceLearning;
use confgate::rtp::packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let remote = SocketAddr::from(([192, 0, 2, 7], 40000));
    let stranger = SocketAddr::from(([198, 51, 100, 9], 40002));
    let t0 = Instant::now();
    let params = MediaParams {
        codec: Codec::Pcmu,
        payload_type: 0,
        remote: Some(remote),
        send: true,
        dtmf_pt: Some(101),
        rtcp_mux: true,
        rtcp: None,
        opus: Default::default(),
        srtp: None,
    };
    let mut media = MediaSession::new(
        MediaSetup {
            params,
            inband: true,
            rtp_timeout: Duration::from_secs(30),
            learning: SourceLearning::new(Some(remote), remote.ip(), true),
            cname: "fuzz@confgate".into(),
            quality_alarm_mos: 3.5,
        },
        t0,
        SystemTime::UNIX_EPOCH,
    );
    let _ = packet::parse(data);
    // Datagrams: a length byte, a flags byte, then the bytes.
    let mut rest = data;
    let mut now = t0;
    while let [len, flags, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, after) = tail.split_at(n);
        rest = after;
        let from = if flags & 1 == 0 { remote } else { stranger };
        now += Duration::from_millis(u64::from(flags >> 2));
        let mut datagram = datagram.to_vec();
        if flags & 2 == 0 {
            let _ = media.on_rtp(&mut datagram, from, now);
        } else {
            media.on_rtcp(&mut datagram, from, now);
        }
        let _ = media.audio_frame(None);
        let _ = media.handle_timeout(now);
        while media.poll_event().is_some() {}
        let _ = media.take_quality();
    }
    let _ = media.bye(now);
    let _ = media.stats();
});
