use super::*;
use crate::sip::sdp::parse_answer;

fn local() -> LocalMedia {
    LocalMedia {
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        events: true,
        address: IpAddr::from([192, 0, 2, 1]),
        port: 20000,
        session_id: 7000,
        srtp: crate::rtp::sdes::Policy::Optional,
        srtp_key: crate::rtp::srtp::MasterKey::random(),
    }
}

/// An offer from 198.51.100.2:4000 with `formats` and `direction`.
fn offer(formats: &str, direction: &str) -> Vec<u8> {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP {formats}\r\n"
    );
    for f in formats.split_whitespace() {
        match f {
            "0" => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            "8" => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "18" => s.push_str("a=rtpmap:18 G729/8000\r\n"),
            // G.722 by its static payload type alone.
            "9" => {}
            pt => s.push_str(&format!("a=rtpmap:{pt} telephone-event/8000\r\n")),
        }
    }
    s.push_str(&format!("a={direction}\r\n"));
    s.into_bytes()
}

fn origin_version(body: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(body);
    let o = text.lines().find(|l| l.starts_with("o=")).expect("o= line");
    o.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn answer_picks_our_first_codec_and_the_offers_event_type() {
    let mut s = SdpSession::new(local());
    let (body, media) = s.answer(&offer("8 0 96", "sendrecv")).unwrap();
    assert_eq!(media.codec, Codec::Pcmu);
    assert_eq!(media.dtmf_pt, Some(96));
    assert_eq!(media.remote, Some("198.51.100.2:4000".parse().unwrap()));
    let back = parse_answer(&body).unwrap();
    assert_eq!((back.codec, back.dtmf_pt), (Codec::Pcmu, Some(96)));
    assert_eq!(origin_version(&body), 7000);
}

#[test]
fn events_off_leave_telephone_event_out() {
    let mut s = SdpSession::new(LocalMedia {
        events: false,
        ..local()
    });
    let (body, media) = s.answer(&offer("0 101", "sendrecv")).unwrap();
    assert_eq!(media.dtmf_pt, None);
    assert!(!String::from_utf8_lossy(&body).contains("telephone-event"));
    assert!(!String::from_utf8_lossy(&s.offer()).contains("telephone-event"));
}

#[test]
fn the_origin_version_grows_only_when_the_description_changes() {
    let mut s = SdpSession::new(local());
    let (first, _) = s.answer(&offer("0 101", "sendrecv")).unwrap();
    // A refresh with the same offer: the same description, the same version.
    let (again, _) = s.answer(&offer("0 101", "sendrecv")).unwrap();
    assert_eq!(first, again);
    // Hold changes our direction: a new version.
    let (held, media) = s.answer(&offer("0 101", "sendonly")).unwrap();
    assert!(!media.send);
    assert_eq!(origin_version(&held), 7001);
    assert!(String::from_utf8_lossy(&held).contains("a=recvonly"));
    let (unheld, media) = s.answer(&offer("0 101", "sendrecv")).unwrap();
    assert!(media.send);
    assert_eq!(origin_version(&unheld), 7002);
    assert_eq!(s.version(), 7002);
    assert_eq!(s.description(), &unheld[..]);
}

#[test]
fn in_a_room_a_reinvite_keeps_the_rooms_codec_or_gets_488() {
    let mut s = SdpSession::new(local());
    let (_, media) = s.answer(&offer("0 8 101", "sendrecv")).unwrap();
    assert_eq!(media.codec, Codec::Pcmu);
    s.lock_codec();
    // PCMA preferred by the far end, PCMU still offered: PCMU is kept.
    let (_, media) = s.answer(&offer("8 0 101", "sendrecv")).unwrap();
    assert_eq!(media.codec, Codec::Pcmu);
    // Only PCMA: refused, and the session stays as it was.
    let before = s.description().to_vec();
    let refused = s.answer(&offer("8 101", "sendrecv")).unwrap_err();
    assert_eq!(refused.sip_status(), 488);
    assert_eq!(s.media().map(|m| m.codec), Some(Codec::Pcmu));
    assert_eq!(s.description(), &before[..]);
    // Our own offer in a room names only the room's codec.
    let ours = String::from_utf8_lossy(&s.offer()).into_owned();
    assert!(ours.contains("PCMU") && !ours.contains("PCMA"), "{ours}");
}

#[test]
fn before_a_room_a_reinvite_may_change_codec() {
    let mut s = SdpSession::new(local());
    s.answer(&offer("0", "sendrecv")).unwrap();
    let (_, media) = s.answer(&offer("8", "sendrecv")).unwrap();
    assert_eq!((media.codec, media.payload_type), (Codec::Pcma, 8));
}

#[test]
fn late_offer_takes_the_answer_from_the_ack() {
    let mut s = SdpSession::new(local());
    assert_eq!(s.media(), None);
    assert_eq!(s.provisional_media().remote, None);
    let ours = String::from_utf8_lossy(&s.offer()).into_owned();
    assert!(ours.contains("PCMU") && ours.contains("PCMA") && ours.contains("telephone-event"));
    let media = s.take_answer(&offer("8 101", "sendrecv")).unwrap();
    assert_eq!(media.codec, Codec::Pcma);
    assert_eq!(s.media(), Some(media));
}

#[test]
fn an_answer_with_a_codec_we_did_not_offer_is_refused() {
    let mut s = SdpSession::new(local());
    s.answer(&offer("0", "sendrecv")).unwrap();
    s.lock_codec();
    s.offer();
    assert_eq!(
        s.take_answer(&offer("8", "sendrecv")),
        Err(SdpError::NoCommonCodec)
    );
    assert!(matches!(
        s.take_answer(b"not sdp"),
        Err(SdpError::Unparseable(_))
    ));
}

#[test]
fn offers_without_a_common_codec_or_audio_are_refused() {
    let mut s = SdpSession::new(local());
    assert_eq!(
        s.answer(&offer("18", "sendrecv")).unwrap_err().sip_status(),
        488
    );
    assert_eq!(s.answer(b"\xff\xfe").unwrap_err().sip_status(), 400);
    assert_eq!(s.media(), None);
}

#[test]
fn an_offerless_reinvite_gets_the_current_media_as_offer() {
    let mut s = SdpSession::new(local());
    let (answer, _) = s.answer(&offer("8 0 96", "sendonly")).unwrap();
    let reoffer = String::from_utf8_lossy(&s.offer_current()).into_owned();
    // The codec and the telephone-event type the call uses, nothing else;
    // sendrecv again, as an offer is.
    assert!(reoffer.contains("m=audio 20000 RTP/AVP 0 96"), "{reoffer}");
    assert!(
        !reoffer.contains("PCMA") && reoffer.contains("a=sendrecv"),
        "{reoffer}"
    );
    assert!(origin_version(reoffer.as_bytes()) > origin_version(&answer));
    // Before any answer (late offer) it is our whole offer.
    let mut fresh = SdpSession::new(local());
    let full = String::from_utf8_lossy(&fresh.offer_current()).into_owned();
    assert!(full.contains("PCMU") && full.contains("PCMA"), "{full}");
}

/// An Opus offer: opus at `pt` (with `fmtp`), PCMU, and telephone-event
/// at 48 kHz on `te`.
fn opus_offer(pt: u8, te: u8, fmtp: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP {pt} 0 {te}\r\na=rtpmap:{pt} opus/48000/2\r\n\
         a=fmtp:{pt} {fmtp}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{te} telephone-event/48000\r\n\
         a=sendrecv\r\n"
    )
    .into_bytes()
}

#[test]
fn opus_keeps_its_clock_events_and_parameters_through_reinvites() {
    let mut s = SdpSession::new(LocalMedia {
        codecs: vec![Codec::Opus, Codec::Pcmu],
        ..local()
    });
    let (body, media) = s
        .answer(&opus_offer(
            111,
            110,
            "useinbandfec=1; maxplaybackrate=16000",
        ))
        .unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(
        (media.codec, media.payload_type, media.dtmf_pt),
        (Codec::Opus, 111, Some(110))
    );
    assert!(media.opus.inband_fec);
    assert!(text.contains("a=rtpmap:111 opus/48000/2"), "{text}");
    assert!(
        text.contains("a=rtpmap:110 telephone-event/48000"),
        "{text}"
    );
    assert!(
        text.contains(
            "a=fmtp:111 maxplaybackrate=16000; sprop-maxcapturerate=16000; useinbandfec=1"
        ),
        "{text}"
    );
    s.lock_codec();
    // In the room the far end renumbers and drops FEC: the same codec, its
    // new numbers, our parameters as before.
    let (body, media) = s
        .answer(&opus_offer(109, 101, "maxplaybackrate=8000"))
        .unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(
        (media.codec, media.payload_type, media.dtmf_pt),
        (Codec::Opus, 109, Some(101))
    );
    assert!(!media.opus.inband_fec);
    assert_eq!(media.opus.max_playback_rate, Some(8000));
    assert!(text.contains("a=rtpmap:109 opus/48000/2"), "{text}");
    assert!(
        text.contains("a=rtpmap:101 telephone-event/48000"),
        "{text}"
    );
    assert!(!text.contains("PCMU"), "{text}");
    // PCMU alone is not the room's codec: 488, nothing changed.
    let refused = s.answer(&offer("0 101", "sendrecv")).unwrap_err();
    assert_eq!(refused.sip_status(), 488);
    assert_eq!(s.media().map(|m| m.codec), Some(Codec::Opus));
    // Our own offer in the room: Opus and telephone-event/48000 only.
    let ours = String::from_utf8_lossy(&s.offer()).into_owned();
    assert!(
        ours.contains("opus/48000/2") && ours.contains("telephone-event/48000"),
        "{ours}"
    );
    assert!(
        !ours.contains("PCMU") && !ours.contains("telephone-event/8000"),
        "{ours}"
    );
}

#[test]
fn g722_is_offered_and_answered_at_its_rfc_3551_clock() {
    let mut s = SdpSession::new(LocalMedia {
        codecs: vec![Codec::G722, Codec::Pcmu],
        ..local()
    });
    let ours = String::from_utf8_lossy(&s.offer()).into_owned();
    assert!(ours.contains("a=rtpmap:9 G722/8000"), "{ours}");
    assert!(
        ours.contains("telephone-event/8000") && !ours.contains("/48000"),
        "{ours}"
    );
    // A static payload type without an rtpmap stands for its codec.
    let (body, media) = s.answer(&offer("9 0 101", "sendrecv")).unwrap();
    assert_eq!((media.codec, media.payload_type), (Codec::G722, 9));
    assert!(String::from_utf8_lossy(&body).contains("a=rtpmap:9 G722/8000"));
}
