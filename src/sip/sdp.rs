//! RFC 3264 offer/answer for telephony: G.711, G.722 and Opus (RFC 7587),
//! with telephone-event (RFC 4733) at the chosen codec's clock rate.
//!
//! Sans-IO: SDP bodies go in as bytes and come out as text. Parsing and
//! serialisation use the `sdp` crate; this module picks the audio stream,
//! codec, DTMF payload type, remote RTP address and media direction.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use ::sdp::description::common::{Address, Attribute, ConnectionInformation};
use ::sdp::description::media::{MediaDescription, MediaName, RangedPort};
use ::sdp::description::session::{Origin, SessionDescription, TimeDescription};

use crate::media::codec::{Codec, OpusParams};

/// Payload type of telephone-event/8000 (RFC 4733) in our own offers.
pub const OFFER_DTMF_PT: u8 = 101;
/// Payload type of telephone-event/48000 in our own offers that carry Opus.
pub const OFFER_DTMF_48K_PT: u8 = 102;
/// Payload type of Opus in our own offers.
pub const OFFER_OPUS_PT: u8 = 111;

/// The payload type our offers give `codec`.
pub fn offer_payload_type(codec: Codec) -> u8 {
    codec.static_payload_type().unwrap_or(OFFER_OPUS_PT)
}
/// Packetisation time we send, in milliseconds.
pub const PTIME_MS: u32 = 20;

/// Media direction attribute (RFC 3264 §5.1).
///
/// A value describes the stream from the viewpoint of the party that wrote it:
/// [`sends`](Self::sends) means "the writer transmits". Applied to
/// [`Negotiated::answer_direction`] (our side), it tells whether *we* send/receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction the other party must use to match this one.
    pub const fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The SDP attribute name (`a=<attr>`).
    pub const fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the party holding this direction transmits RTP.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the party holding this direction expects to receive RTP.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_attr(key: &str) -> Option<Self> {
        [
            Self::SendRecv,
            Self::SendOnly,
            Self::RecvOnly,
            Self::Inactive,
        ]
        .into_iter()
        .find(|d| key.trim().eq_ignore_ascii_case(d.as_attr()))
    }
}

/// One m= line of the remote SDP, kept so an answer can mirror the m-line layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// `audio`, `video`, ...
    pub media: String,
    /// Transport, e.g. `RTP/AVP`.
    pub proto: String,
    /// Format list as offered.
    pub formats: Vec<String>,
}

/// Outcome of negotiating one audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Chosen codec.
    pub codec: Codec,
    /// Payload type the remote SDP uses for `codec`.
    pub codec_pt: u8,
    /// The remote SDP's telephone-event payload type at the codec's clock
    /// rate, if any.
    pub dtmf_pt: Option<u8>,
    /// The clock rate the remote wrote for `dtmf_pt`.
    pub dtmf_rate: u32,
    /// What the remote's `a=fmtp` asks of our Opus stream.
    pub opus: OpusParams,
    /// Where to send RTP; `None` for `c=0.0.0.0` hold or an address that is not an IP literal.
    pub remote: Option<SocketAddr>,
    /// Direction as written in the remote SDP (media level overrides session level).
    pub offer_direction: Direction,
    /// Our direction: the reverse of `offer_direction`, or recvonly/inactive on `c=0.0.0.0` hold.
    pub answer_direction: Direction,
    /// Remote `a=ptime`, if any.
    pub ptime: Option<u32>,
    /// The remote SDP has `a=rtcp-mux` (RFC 5761): RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Where to send RTCP when not muxed: `a=rtcp` (RFC 3605), else the
    /// RTP port + 1.
    pub rtcp: Option<SocketAddr>,
    /// All m= lines of the remote SDP, in order.
    pub media_lines: Vec<MediaLine>,
    /// Index in `media_lines` of the audio stream that was negotiated.
    pub audio_index: usize,
    /// The stream's transport: `RTP/AVP`, `RTP/SAVP` or `RTP/SAVPF`.
    pub proto: String,
    /// The stream's `a=crypto` values (RFC 4568), as written.
    pub crypto: Vec<String>,
}

impl Negotiated {
    /// The remote put us on hold (sendonly, inactive or `c=0.0.0.0`),
    /// i.e. exactly when we must not transmit.
    pub fn on_hold(&self) -> bool {
        !self.answer_direction.sends()
    }
}

/// Why an SDP body could not be negotiated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not valid SDP.
    #[error("unparseable SDP: {0}")]
    Unparseable(String),
    /// No active `m=audio ... RTP/AVP` stream.
    #[error("no usable RTP/AVP audio stream")]
    NoAudio,
    /// Audio offered, but neither PCMU nor PCMA.
    #[error("no common codec (PCMU/PCMA)")]
    NoCommonCodec,
    /// The stream's SRTP (or its absence) does not meet our policy.
    #[error("SRTP: {0}")]
    Srtp(#[from] crate::rtp::sdes::Refusal),
}

impl SdpError {
    /// SIP response code to reject the request with.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Unparseable(_) => 400,
            SdpError::NoAudio | SdpError::NoCommonCodec | SdpError::Srtp(_) => 488,
        }
    }
}

/// Negotiate an offer against our codec preference list (first = most preferred).
///
/// RFC 3264 §6.1: the answerer may order by its own preference, so the first codec
/// in `prefs` that the offer contains wins. The first active RTP/AVP audio stream
/// with a common codec is chosen; rejected (port 0) m-lines are skipped.
pub fn negotiate(offer: &[u8], prefs: &[Codec]) -> Result<Negotiated, SdpError> {
    select(offer, |offered| {
        prefs
            .iter()
            .find_map(|want| offered.iter().find(|(_, c)| c == want).copied())
    })
}

/// Parse the far end's answer to our offer; the codec is the first PCMU/PCMA it lists.
///
/// `offer_direction` is the direction the far end wrote and `answer_direction`
/// our resulting one, exactly as for [`negotiate`].
pub fn parse_answer(answer: &[u8]) -> Result<Negotiated, SdpError> {
    select(answer, |offered| offered.first().copied())
}

/// Build the answer SDP for `neg`: the negotiated audio stream at `port`, every other
/// m-line of the offer rejected with port 0, in the offer's order.
pub fn answer(neg: &Negotiated, local: IpAddr, port: u16, session_id: u64, version: u64) -> String {
    let dtmf: Vec<(u8, u32)> = neg
        .dtmf_pt
        .map(|pt| (pt, neg.dtmf_rate))
        .into_iter()
        .collect();
    let audio = audio_media(
        &[(neg.codec_pt, neg.codec)],
        &dtmf,
        port,
        neg.answer_direction,
        neg.rtcp_mux,
    );
    let mut media = Vec::with_capacity(neg.media_lines.len() + 1);
    for (i, line) in neg.media_lines.iter().enumerate() {
        if i == neg.audio_index {
            media.push(audio.clone());
        } else {
            media.push(rejected_media(line));
        }
    }
    if neg.audio_index >= media.len() {
        media.push(audio);
    }
    session(local, session_id, version, media).marshal()
}

/// Our offer: `prefs` in order, telephone-event at [`OFFER_DTMF_PT`] when
/// `telephone_event`, ptime 20, sendrecv.
pub fn offer(
    prefs: &[Codec],
    telephone_event: bool,
    local: IpAddr,
    port: u16,
    session_id: u64,
    version: u64,
) -> String {
    let mut codecs: Vec<(u8, Codec)> = Vec::with_capacity(prefs.len());
    for &c in prefs {
        if !codecs.iter().any(|&(_, have)| have == c) {
            codecs.push((offer_payload_type(c), c));
        }
    }
    // telephone-event at each clock rate the codecs use.
    let mut dtmf = Vec::new();
    if telephone_event {
        if codecs.iter().any(|(_, c)| c.clock_rate() == 8000) {
            dtmf.push((OFFER_DTMF_PT, 8000));
        }
        if codecs.iter().any(|(_, c)| c.clock_rate() == 48_000) {
            dtmf.push((OFFER_DTMF_48K_PT, 48_000));
        }
    }
    let media = audio_media(&codecs, &dtmf, port, Direction::SendRecv, true);
    session(local, session_id, version, vec![media]).marshal()
}

/// An offer of exactly these formats: `(payload type, codec)` in order and
/// telephone-event at `dtmf`, ptime 20, sendrecv. Used to offer again the
/// media a call already has, keeping the payload types it uses.
pub fn offer_formats(
    codecs: &[(u8, Codec)],
    dtmf: Option<u8>,
    local: IpAddr,
    port: u16,
    session_id: u64,
    version: u64,
) -> String {
    let rate = codecs.first().map_or(8000, |(_, c)| c.clock_rate());
    let dtmf: Vec<(u8, u32)> = dtmf.map(|pt| (pt, rate)).into_iter().collect();
    let media = audio_media(codecs, &dtmf, port, Direction::SendRecv, true);
    session(local, session_id, version, vec![media]).marshal()
}

fn select(
    body: &[u8],
    pick: impl Fn(&[(u8, Codec)]) -> Option<(u8, Codec)>,
) -> Result<Negotiated, SdpError> {
    let sd = SessionDescription::unmarshal(&mut Cursor::new(body))
        .map_err(|e| SdpError::Unparseable(e.to_string()))?;
    let mut saw_audio = false;
    for (index, md) in sd.media_descriptions.iter().enumerate() {
        let name = &md.media_name;
        if name.media != "audio" || name.port.value == 0 || !is_rtp_proto(&name.protos.join("/")) {
            continue;
        }
        saw_audio = true;
        let (codecs, events) = payloads(md);
        if let Some(chosen) = pick(&codecs) {
            let rate = chosen.1.clock_rate();
            // RFC 4733: the events share the audio's clock; phones that
            // offer Opus with telephone-event/8000 alone are common, and
            // their events are taken too (the receiver reads no durations).
            let dtmf = events
                .iter()
                .find(|&&(_, r)| r == rate)
                .or_else(|| events.iter().find(|&&(_, r)| r == 8000))
                .copied();
            return build(&sd, index, md, chosen, dtmf);
        }
    }
    Err(if saw_audio {
        SdpError::NoCommonCodec
    } else {
        SdpError::NoAudio
    })
}

fn build(
    sd: &SessionDescription,
    index: usize,
    md: &MediaDescription,
    (codec_pt, codec): (u8, Codec),
    dtmf: Option<(u8, u32)>,
) -> Result<Negotiated, SdpError> {
    let address = md
        .connection_information
        .as_ref()
        .or(sd.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or_else(|| SdpError::Unparseable("audio stream has no c= address".into()))?;
    let ip = address
        .address
        .split('/')
        .next()
        .and_then(|a| a.parse::<IpAddr>().ok());
    let held = ip.is_some_and(|ip| ip.is_unspecified());
    let port = u16::try_from(md.media_name.port.value)
        .ok()
        .filter(|&p| p != 0);
    let remote = match (ip, port) {
        (Some(ip), Some(port)) if !held => Some(SocketAddr::new(ip, port)),
        _ => None,
    };
    let offer_direction = direction(&md.attributes)
        .or_else(|| direction(&sd.attributes))
        .unwrap_or_default();
    let answer_direction = match offer_direction {
        Direction::Inactive | Direction::RecvOnly if held => Direction::Inactive,
        _ if held => Direction::RecvOnly,
        d => d.reversed(),
    };
    let ptime = attr_values(&md.attributes, "ptime")
        .chain(attr_values(&sd.attributes, "ptime"))
        .find_map(|v| v.trim().parse::<u32>().ok().filter(|&p| p > 0));
    let rtcp_mux = md
        .attributes
        .iter()
        .any(|a| a.key.trim().eq_ignore_ascii_case("rtcp-mux"));
    let rtcp = remote.map(|r| {
        attr_values(&md.attributes, "rtcp")
            .find_map(|v| rtcp_attribute(v, r.ip()))
            .unwrap_or_else(|| SocketAddr::new(r.ip(), r.port().wrapping_add(1)))
    });
    let media_lines = sd
        .media_descriptions
        .iter()
        .map(|m| MediaLine {
            media: m.media_name.media.clone(),
            proto: m.media_name.protos.join("/"),
            formats: m.media_name.formats.clone(),
        })
        .collect();
    let opus = match codec {
        Codec::Opus => opus_params(md, codec_pt),
        _ => OpusParams::default(),
    };
    Ok(Negotiated {
        codec,
        codec_pt,
        dtmf_pt: dtmf.map(|(pt, _)| pt),
        dtmf_rate: dtmf.map_or(8000, |(_, rate)| rate),
        opus,
        remote,
        offer_direction,
        answer_direction,
        ptime,
        rtcp_mux,
        rtcp,
        media_lines,
        audio_index: index,
        proto: md.media_name.protos.join("/"),
        crypto: attr_values(&md.attributes, "crypto")
            .map(|v| v.trim().to_owned())
            .collect(),
    })
}

/// The RTP profiles an audio stream may use: plain, or SRTP keyed by SDES.
fn is_rtp_proto(proto: &str) -> bool {
    ["RTP/AVP", "RTP/SAVP", "RTP/SAVPF"]
        .iter()
        .any(|p| proto.eq_ignore_ascii_case(p))
}

/// Whether `proto` is a secure profile (RFC 3711 §12).
pub fn is_secure_proto(proto: &str) -> bool {
    ["RTP/SAVP", "RTP/SAVPF"]
        .iter()
        .any(|p| proto.eq_ignore_ascii_case(p))
}

/// Our description `body` with its active audio stream set to `proto` and
/// carrying `crypto` as `a=crypto` attributes (SDES, RFC 4568). Our own
/// descriptions always parse; should one not, it is returned unchanged.
pub fn secure(body: &str, proto: &str, crypto: &[String]) -> String {
    let Ok(mut sd) = SessionDescription::unmarshal(&mut Cursor::new(body.as_bytes())) else {
        return body.to_owned();
    };
    let Some(md) = sd
        .media_descriptions
        .iter_mut()
        .find(|m| m.media_name.media == "audio" && m.media_name.port.value != 0)
    else {
        return body.to_owned();
    };
    md.media_name.protos = proto.split('/').map(str::to_owned).collect();
    for c in crypto {
        md.attributes
            .push(Attribute::new("crypto".into(), Some(c.clone())));
    }
    sd.marshal()
}

/// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605); the address defaults to
/// the media's.
fn rtcp_attribute(value: &str, media_ip: IpAddr) -> Option<SocketAddr> {
    let mut parts = value.split_whitespace();
    let port: u16 = parts.next()?.parse().ok().filter(|&p| p != 0)?;
    let ip = match (parts.next(), parts.next(), parts.next()) {
        (Some(net), Some(_), Some(addr)) if net.eq_ignore_ascii_case("IN") => addr.parse().ok()?,
        (None, ..) => media_ip,
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `a=fmtp:<pt> useinbandfec=1; maxplaybackrate=16000; ...` (RFC 7587).
fn opus_params(md: &MediaDescription, pt: u8) -> OpusParams {
    let mut params = OpusParams::default();
    let Some(fmtp) = attr_values(&md.attributes, "fmtp").find_map(|v| {
        let (num, rest) = v.trim().split_once(char::is_whitespace)?;
        (num.parse::<u8>().ok()? == pt).then_some(rest)
    }) else {
        return params;
    };
    for (key, value) in fmtp.split(';').filter_map(|p| p.split_once('=')) {
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("useinbandfec") {
            params.inband_fec = value == "1";
        } else if key.eq_ignore_ascii_case("maxplaybackrate") {
            params.max_playback_rate = value.parse().ok();
        }
    }
    params
}

/// A telephone-event payload type and its clock rate.
type Event = (u8, u32);

/// The codecs we know in m-line order, and the telephone-event payload
/// types with their clock rates.
fn payloads(md: &MediaDescription) -> (Vec<(u8, Codec)>, Vec<Event>) {
    let (mut codecs, mut events) = (Vec::new(), Vec::new());
    let pts = md
        .media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok());
    for pt in pts.filter(|&pt| pt < 128) {
        let map = rtpmap(md, pt);
        let named = |c: Codec| {
            map.is_some_and(|(n, rate)| {
                n.eq_ignore_ascii_case(c.encoding_name()) && rate == c.clock_rate()
            })
        };
        // A static payload type without an rtpmap means its codec.
        let codec = Codec::ALL
            .into_iter()
            .find(|&c| named(c) || (map.is_none() && c.static_payload_type() == Some(pt)));
        match (codec, map) {
            (Some(c), _) => codecs.push((pt, c)),
            (None, Some((name, rate))) if name.eq_ignore_ascii_case("telephone-event") => {
                events.push((pt, rate))
            }
            _ => {}
        }
    }
    (codecs, events)
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` for `pt`, as (name, rate).
fn rtpmap(md: &MediaDescription, pt: u8) -> Option<(&str, u32)> {
    attr_values(&md.attributes, "rtpmap").find_map(|v| {
        let (num, rest) = v.trim().split_once(char::is_whitespace)?;
        if num.parse::<u8>().ok()? != pt {
            return None;
        }
        let mut parts = rest.trim().split('/');
        let name = parts.next()?.trim();
        let rate = parts.next()?.trim().parse().ok()?;
        Some((name, rate))
    })
}

fn attr_values<'a>(attrs: &'a [Attribute], key: &'a str) -> impl Iterator<Item = &'a str> {
    attrs
        .iter()
        .filter(move |a| a.key.trim().eq_ignore_ascii_case(key))
        .filter_map(|a| a.value.as_deref())
}

/// Last direction attribute in `attrs`, if any.
fn direction(attrs: &[Attribute]) -> Option<Direction> {
    attrs
        .iter()
        .rev()
        .find_map(|a| Direction::from_attr(&a.key))
}

/// Our audio m-section: `codecs` in order, optional telephone-event, ptime,
/// direction, and `a=rtcp-mux` when RTCP is to share the RTP port. Our
/// offers always propose it (RTCP is read on both ports either way).
fn audio_media(
    codecs: &[(u8, Codec)],
    dtmf: &[(u8, u32)],
    port: u16,
    dir: Direction,
    rtcp_mux: bool,
) -> MediaDescription {
    let mut md = media_desc("audio", port, "RTP/AVP", Vec::new());
    for &(pt, codec) in codecs {
        md.media_name.formats.push(pt.to_string());
        let channels = codec
            .sdp_channels()
            .map(|c| format!("/{c}"))
            .unwrap_or_default();
        md = md.with_value_attribute(
            "rtpmap".into(),
            format!(
                "{pt} {}/{}{channels}",
                codec.encoding_name(),
                codec.clock_rate()
            ),
        );
        if codec == Codec::Opus {
            // We decode at 16 kHz and use FEC the far end sends.
            md = md.with_value_attribute(
                "fmtp".into(),
                format!("{pt} maxplaybackrate=16000; sprop-maxcapturerate=16000; useinbandfec=1"),
            );
        }
    }
    for &(pt, rate) in dtmf {
        md.media_name.formats.push(pt.to_string());
        md = md
            .with_value_attribute("rtpmap".into(), format!("{pt} telephone-event/{rate}"))
            .with_value_attribute("fmtp".into(), format!("{pt} 0-16"));
    }
    let md = md
        .with_value_attribute("ptime".into(), PTIME_MS.to_string())
        .with_property_attribute(dir.as_attr().into());
    if rtcp_mux {
        md.with_property_attribute("rtcp-mux".into())
    } else {
        md
    }
}

/// A rejected copy (port 0) of a remote m-line.
fn rejected_media(line: &MediaLine) -> MediaDescription {
    media_desc(&line.media, 0, &line.proto, line.formats.clone())
}

fn media_desc(media: &str, port: u16, proto: &str, formats: Vec<String>) -> MediaDescription {
    let media_name = MediaName {
        media: media.into(),
        port: RangedPort {
            value: port as isize,
            range: None,
        },
        protos: proto.split('/').map(str::to_owned).collect(),
        formats,
    };
    MediaDescription {
        media_name,
        ..Default::default()
    }
}

fn session(
    local: IpAddr,
    session_id: u64,
    version: u64,
    media: Vec<MediaDescription>,
) -> SessionDescription {
    let addr_type = if local.is_ipv4() { "IP4" } else { "IP6" };
    SessionDescription {
        origin: Origin {
            username: "confgate".into(),
            session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: addr_type.into(),
            unicast_address: local.to_string(),
        },
        session_name: "confgate".into(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: addr_type.into(),
            address: Some(Address {
                address: local.to_string(),
                ..Default::default()
            }),
        }),
        time_descriptions: vec![TimeDescription::default()],
        media_descriptions: media,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Codec::{Pcma, Pcmu};
    use Direction::*;

    const BOTH: [Codec; 2] = [Pcmu, Pcma];
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 99));
    const HEAD: &str = "v=0|o=- 1 1 IN IP4 192.0.2.10|s=-|c=IN IP4 192.0.2.10|t=0 0|";

    /// A CRLF offer from 192.0.2.10; `media` lines are separated by `|`.
    fn sdp(media: &str) -> Vec<u8> {
        format!("{HEAD}{media}|").replace('|', "\r\n").into_bytes()
    }

    fn neg(media: &str) -> Negotiated {
        negotiate(&sdp(media), &BOTH).unwrap()
    }

    fn ans(n: &Negotiated) -> String {
        answer(n, LOCAL, 5000, 7, 1)
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    fn m_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with("m=")).collect()
    }

    #[test]
    fn single_codec_offers() {
        for (pt, codec) in [(0, Pcmu), (8, Pcma)] {
            let n = neg(&format!("m=audio 4000 RTP/AVP {pt}"));
            assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (codec, pt, None));
            assert_eq!(n.remote, Some("192.0.2.10:4000".parse().unwrap()));
            let a = ans(&n);
            assert_eq!(m_lines(&a), [format!("m=audio 5000 RTP/AVP {pt}")]);
            let rtpmap = format!("a=rtpmap:{pt} {}/8000", codec.encoding_name());
            assert!(has(&a, &rtpmap) && has(&a, "a=sendrecv") && has(&a, "a=ptime:20"));
        }
    }

    #[test]
    fn answer_follows_our_preference() {
        for fmts in ["0 8", "8 0"] {
            let o = sdp(&format!("m=audio 4000 RTP/AVP {fmts}"));
            let n = negotiate(&o, &[Pcmu, Pcma]).unwrap();
            assert_eq!((n.codec, n.codec_pt), (Pcmu, 0));
            assert_eq!(m_lines(&ans(&n)), ["m=audio 5000 RTP/AVP 0"]);
            let n = negotiate(&o, &[Pcma, Pcmu]).unwrap();
            assert_eq!((n.codec, n.codec_pt), (Pcma, 8));
            assert_eq!(m_lines(&ans(&n)), ["m=audio 5000 RTP/AVP 8"]);
        }
    }

    #[test]
    fn no_common_codec() {
        let e = negotiate(&sdp("m=audio 4000 RTP/AVP 18|a=rtpmap:18 G729/8000"), &BOTH);
        assert_eq!(e, Err(SdpError::NoCommonCodec));
        assert_eq!(SdpError::NoCommonCodec.sip_status(), 488);
        let pcma_only = sdp("m=audio 4000 RTP/AVP 8");
        assert_eq!(negotiate(&pcma_only, &[Pcmu]), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn telephone_event_pt_is_echoed() {
        for (pt, name) in [
            (96, "telephone-event"),
            (101, "telephone-event"),
            (120, "TELEPHONE-EVENT"),
        ] {
            let n = neg(&format!(
                "m=audio 4000 RTP/AVP 0 {pt}|a=rtpmap:{pt} {name}/8000|a=fmtp:{pt} 0-15"
            ));
            assert_eq!(n.dtmf_pt, Some(pt));
            let a = ans(&n);
            assert_eq!(m_lines(&a), [format!("m=audio 5000 RTP/AVP 0 {pt}")]);
            assert!(has(&a, &format!("a=rtpmap:{pt} telephone-event/8000")));
            assert!(has(&a, &format!("a=fmtp:{pt} 0-16")));
        }
        let n = neg("m=audio 4000 RTP/AVP 0 97|a=rtpmap:97 telephone-event/16000");
        assert_eq!(n.dtmf_pt, None);
        assert_eq!(m_lines(&ans(&n)), ["m=audio 5000 RTP/AVP 0"]);
    }

    #[test]
    fn dynamic_payload_type_g711() {
        let n = neg(
            "m=audio 4000 RTP/AVP 98 101|a=rtpmap:98 pcma/8000|a=rtpmap:101 telephone-event/8000",
        );
        assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (Pcma, 98, Some(101)));
        let a = ans(&n);
        assert_eq!(m_lines(&a), ["m=audio 5000 RTP/AVP 98 101"]);
        assert!(has(&a, "a=rtpmap:98 PCMA/8000"));
    }

    #[test]
    fn hold_and_unhold() {
        assert!(SendRecv.sends() && SendRecv.receives() && SendOnly.sends() && RecvOnly.receives());
        assert!(
            !SendOnly.receives() && !RecvOnly.sends() && !Inactive.sends() && !Inactive.receives()
        );
        let cases = [
            (
                "m=audio 4000 RTP/AVP 0|a=sendonly",
                SendOnly,
                RecvOnly,
                true,
            ),
            (
                "m=audio 4000 RTP/AVP 0|a=inactive",
                Inactive,
                Inactive,
                true,
            ),
            (
                "m=audio 4000 RTP/AVP 0|a=recvonly",
                RecvOnly,
                SendOnly,
                false,
            ),
            (
                "a=sendonly|m=audio 4000 RTP/AVP 0|a=sendrecv",
                SendRecv,
                SendRecv,
                false,
            ),
            (
                "a=inactive|m=audio 4000 RTP/AVP 0",
                Inactive,
                Inactive,
                true,
            ),
        ];
        for (media, offered, answered, hold) in cases {
            let n = neg(media);
            let got = (n.offer_direction, n.answer_direction, n.on_hold());
            assert_eq!(got, (offered, answered, hold), "{media}");
            assert!(n.remote.is_some());
            assert!(has(&ans(&n), &format!("a={}", answered.as_attr())));
        }
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 0.0.0.0");
        assert_eq!(
            (n.remote, n.answer_direction, n.on_hold()),
            (None, RecvOnly, true)
        );
        assert!(has(&ans(&n), "a=recvonly"));
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 0.0.0.0|a=inactive");
        assert_eq!((n.answer_direction, n.on_hold()), (Inactive, true));
        let n = neg("m=audio 4002 RTP/AVP 0|c=IN IP4 198.51.100.7|a=sendrecv");
        assert_eq!(n.remote, Some("198.51.100.7:4002".parse().unwrap()));
        assert_eq!((n.answer_direction, n.on_hold()), (SendRecv, false));
        assert!(has(&ans(&n), "a=sendrecv"));
    }

    #[test]
    fn rtcp_mux_is_answered_and_a_rtcp_names_the_rtcp_address() {
        // Offered: muxed, and our answer says so.
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 198.51.100.7|a=rtcp-mux");
        assert!(n.rtcp_mux);
        assert!(has(&ans(&n), "a=rtcp-mux"));
        // Not offered: RTCP on the next port, and no mux in the answer.
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 198.51.100.7");
        assert!(!n.rtcp_mux);
        assert!(!ans(&n).contains("rtcp-mux"));
        assert_eq!(n.rtcp, Some("198.51.100.7:4001".parse().unwrap()));
        // RFC 3605: a port, or a port and an address.
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 198.51.100.7|a=rtcp:5005");
        assert_eq!(n.rtcp, Some("198.51.100.7:5005".parse().unwrap()));
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 198.51.100.7|a=rtcp:5005 IN IP4 203.0.113.9");
        assert_eq!(n.rtcp, Some("203.0.113.9:5005".parse().unwrap()));
        // Nonsense falls back to the next port.
        for bad in [
            "a=rtcp:0",
            "a=rtcp:x",
            "a=rtcp:5005 IN IP4 not-an-ip",
            "a=rtcp:5005 IN",
        ] {
            let n = neg(&format!(
                "m=audio 4000 RTP/AVP 0|c=IN IP4 198.51.100.7|{bad}"
            ));
            assert_eq!(n.rtcp, Some("198.51.100.7:4001".parse().unwrap()), "{bad}");
        }
        // On hold: nowhere to send either.
        let n = neg("m=audio 4000 RTP/AVP 0|c=IN IP4 0.0.0.0");
        assert_eq!(n.rtcp, None);
        // Our offers propose muxing.
        let o = offer(
            &[Codec::Pcmu],
            true,
            "192.0.2.1".parse().unwrap(),
            20000,
            1,
            1,
        );
        assert!(o.contains("a=rtcp-mux"), "{o}");
    }

    #[test]
    fn other_m_lines_rejected_in_order() {
        let n = neg("m=video 4002 RTP/AVP 97|a=rtpmap:97 H264/90000|m=audio 0 RTP/AVP 0|m=audio 4000 RTP/AVP 8");
        assert_eq!((n.audio_index, n.remote.map(|r| r.port())), (2, Some(4000)));
        let a = ans(&n);
        let want = [
            "m=video 0 RTP/AVP 97",
            "m=audio 0 RTP/AVP 0",
            "m=audio 5000 RTP/AVP 8",
        ];
        assert_eq!(m_lines(&a), want);
        assert!(!has(&a, "a=rtpmap:97 H264/90000"));
    }

    #[test]
    fn bad_input_is_rejected() {
        let no_c = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let bad: [&[u8]; 7] = [
            b"garbage",
            b"",
            b"\xff\xfe\x00=",
            b"v=0\no=broken\n",
            b"v=1\n",
            b"====",
            no_c,
        ];
        for body in bad {
            let e = negotiate(body, &BOTH).unwrap_err();
            assert!(
                matches!(e, SdpError::Unparseable(_)) && e.sip_status() == 400,
                "{e}"
            );
        }
        for media in [
            "",
            "m=video 4000 RTP/AVP 97",
            "m=audio 4000 UDP/TLS/RTP/SAVPF 0",
            "m=audio 0 RTP/AVP 0",
        ] {
            assert_eq!(
                negotiate(&sdp(media), &BOTH),
                Err(SdpError::NoAudio),
                "{media}"
            );
        }
        assert_eq!(SdpError::NoAudio.sip_status(), 488);
    }

    #[test]
    fn never_panics_on_mangled_input() {
        let full = ASTERISK.as_bytes();
        for i in 0..full.len() {
            let _ = negotiate(&full[..i], &BOTH);
            let mut flipped = full.to_vec();
            flipped[i] ^= 0x5a;
            let _ = parse_answer(&flipped);
        }
    }

    #[test]
    fn answer_parses_back() {
        let n = neg(
            "m=audio 4000 RTP/AVP 0 101|a=rtpmap:101 telephone-event/8000|m=video 4002 RTP/AVP 97",
        );
        for local in [LOCAL, "2001:db8::1".parse().unwrap()] {
            let text = answer(&n, local, 5000, 7, 1);
            assert!(text.ends_with("\r\n") && !text.replace("\r\n", "").contains('\n'));
            let sd = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes())).unwrap();
            let o = &sd.origin;
            assert_eq!(
                (o.username.as_str(), o.session_id, o.session_version),
                ("confgate", 7, 1)
            );
            let ports: Vec<_> = sd
                .media_descriptions
                .iter()
                .map(|m| m.media_name.port.value)
                .collect();
            assert_eq!(ports, [5000, 0]);
            let ip = if local.is_ipv4() { "IP4" } else { "IP6" };
            assert!(has(&text, &format!("c=IN {ip} {local}")) && has(&text, "s=confgate"));
        }
    }

    #[test]
    fn offer_round_trips_through_parse_answer() {
        let without = offer(&[Pcmu], false, LOCAL, 6000, 42, 3);
        assert_eq!(m_lines(&without), ["m=audio 6000 RTP/AVP 0"]);
        assert!(!without.contains("telephone-event"));
        let o = offer(&[Pcma, Pcmu, Pcma], true, LOCAL, 6000, 42, 3);
        assert_eq!(m_lines(&o), ["m=audio 6000 RTP/AVP 8 0 101"]);
        let n = parse_answer(o.as_bytes()).unwrap();
        assert_eq!(
            (n.codec, n.codec_pt, n.dtmf_pt, n.ptime),
            (Pcma, 8, Some(101), Some(20))
        );
        assert_eq!(n.remote, Some(SocketAddr::new(LOCAL, 6000)));
        assert_eq!((n.offer_direction, n.on_hold()), (SendRecv, false));
        assert_eq!(negotiate(o.as_bytes(), &[Pcmu]).unwrap().codec, Pcmu);
    }

    /// baresip 3.x style: LF-only, trailing whitespace, opus and G.722 first.
    const BARESIP: &str = "v=0\n\
        o=- 1911417633 3429412880 IN IP4 192.0.2.33 \n\
        s=-\nc=IN IP4 192.0.2.33\nt=0 0\na=tool:baresip 3.10.1\n\
        m=audio 10866 RTP/AVP 96 9 0 8 101\nb=AS:96\n\
        a=rtpmap:96 opus/48000/2\na=fmtp:96 stereo=1;sprop-stereo=1\n\
        a=rtpmap:9 G722/8000\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n\
        a=rtpmap:101 telephone-event/8000 \na=fmtp:101 0-15\n\
        a=sendrecv\na=label:1\na=ssrc:3203846262 cname:6d5a3f4e-1e9f\n\
        a=rtcp-rsize\na=ptime:20 \n";

    /// Asterisk (chan_pjsip) style.
    const ASTERISK: &str = "v=0\r\n\
        o=- 1823428190 1823428192 IN IP4 203.0.113.5\r\n\
        s=Asterisk\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
        m=audio 17224 RTP/AVP 8 0 3 101\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:3 GSM/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
        a=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n";

    #[test]
    fn realistic_offers() {
        let n = negotiate(BARESIP.as_bytes(), &BOTH).unwrap();
        assert_eq!(
            (n.codec, n.codec_pt, n.dtmf_pt, n.ptime),
            (Pcmu, 0, Some(101), Some(20))
        );
        assert_eq!(n.remote, Some("192.0.2.33:10866".parse().unwrap()));
        assert_eq!(m_lines(&ans(&n)), ["m=audio 5000 RTP/AVP 0 101"]);
        let n = negotiate(ASTERISK.as_bytes(), &[Pcma, Pcmu]).unwrap();
        assert_eq!(
            (n.codec, n.codec_pt, n.dtmf_pt, n.ptime),
            (Pcma, 8, Some(101), Some(20))
        );
        assert_eq!(n.remote, Some("203.0.113.5:17224".parse().unwrap()));
        assert_eq!((n.answer_direction, n.on_hold()), (SendRecv, false));
        assert_eq!(m_lines(&ans(&n)), ["m=audio 5000 RTP/AVP 8 101"]);
    }
}
