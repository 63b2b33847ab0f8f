//! One call's SDP session (RFC 3264), sans-IO: our current local
//! description with its origin version, the media it negotiated, who owes
//! whom an answer, and the codec locked while the call is in a room.
//!
//! Inbound and outbound calls share it, so an offer-less re-INVITE gets our
//! offer on either, and a re-INVITE in a room is held to the room's codec on
//! either: the mixer decodes one codec per member, chosen at the join, so
//! an offer without it is refused with 488 rather than answered with media
//! the room cannot hear.

use std::net::{IpAddr, SocketAddr};

use crate::media::codec::{Codec, OpusParams};
use crate::rtp::sdes::{self, Agreed, Crypto, Policy};
use crate::rtp::srtp::{MasterKey, SrtpKeys};
use crate::sip::sdp::{self, Negotiated, SdpError};

/// How media flows, from the negotiated SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaParams {
    pub codec: Codec,
    pub payload_type: u8,
    /// Where the SDP says to send; a caller behind NAT is learned from its
    /// packets (see `rtp::learning`).
    pub remote: Option<SocketAddr>,
    /// False while the far end holds the call (sendonly/inactive/0.0.0.0).
    pub send: bool,
    /// The negotiated telephone-event payload type, when events are listened to.
    pub dtmf_pt: Option<u8>,
    /// RTCP shares the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Where the SDP says to send RTCP when it does not.
    pub rtcp: Option<SocketAddr>,
    /// What the far end asked of our Opus stream.
    pub opus: OpusParams,
    /// SRTP keys, when the media is protected (SDES).
    pub srtp: Option<SrtpKeys>,
}

impl MediaParams {
    fn from_negotiated(n: &Negotiated) -> MediaParams {
        MediaParams {
            codec: n.codec,
            payload_type: n.codec_pt,
            remote: n.remote,
            send: n.answer_direction.sends(),
            dtmf_pt: n.dtmf_pt,
            rtcp_mux: n.rtcp_mux,
            rtcp: n.rtcp,
            opus: n.opus,
            srtp: None,
        }
    }
}

/// Where our media is received, and how we describe it.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// Our codecs, most preferred first (validated non-empty by the config).
    pub codecs: Vec<Codec>,
    /// Offer and accept telephone-event (RFC 4733 events are listened to).
    pub events: bool,
    /// The address in `c=` and the RTP port in `m=`.
    pub address: IpAddr,
    pub port: u16,
    /// The origin's session id (`o=`), fixed for the call.
    pub session_id: u64,
    /// Whether the media uses SRTP.
    pub srtp: Policy,
    /// Our SRTP master key and salt, the same in every description of the call.
    pub srtp_key: MasterKey,
}

/// One call's offer/answer state.
#[derive(Debug, Clone)]
pub struct SdpSession {
    local: LocalMedia,
    /// The origin version of `description`; it grows whenever the description changes.
    version: u64,
    /// Our current description: the last offer or answer we sent.
    description: Vec<u8>,
    /// The media agreed on; `None` until an answer has come (late offer, outbound).
    media: Option<MediaParams>,
    /// The codec the room mixes this call in.
    locked: Option<Codec>,
    /// Our `a=crypto` lines in our last offer.
    offered: Vec<Crypto>,
    /// The SRTP in use: the m-line's transport and our line.
    secure: Option<(String, Crypto)>,
}

/// `body` with the transport and our `a=crypto` line of `agreed`, if any.
fn protect(body: String, proto: &str, agreed: Option<&Crypto>) -> String {
    match agreed {
        Some(c) => sdp::secure(&body, proto, &[sdes::format(c)]),
        None => body,
    }
}

impl SdpSession {
    pub fn new(local: LocalMedia) -> SdpSession {
        SdpSession {
            version: local.session_id,
            local,
            description: Vec::new(),
            media: None,
            locked: None,
            offered: Vec::new(),
            secure: None,
        }
    }

    /// The codecs we may use now: ours, or only the room's once locked.
    fn codecs(&self) -> Vec<Codec> {
        match self.locked {
            Some(c) => vec![c],
            None => self.local.codecs.clone(),
        }
    }

    /// Keep `body` as our description, with a new origin version when it
    /// differs from the current one (RFC 3264 §8).
    fn describe(&mut self, build: impl Fn(u64) -> String) -> &[u8] {
        let same = build(self.version).into_bytes();
        if self.description.is_empty() || same == self.description {
            self.description = same;
        } else {
            self.version += 1;
            self.description = build(self.version).into_bytes();
        }
        &self.description
    }

    /// Answer an offer (in the INVITE, a re-INVITE or an UPDATE). The
    /// answer picks the first of our codecs that the offer has; in a room
    /// only the room's codec will do.
    pub fn answer(&mut self, offer: &[u8]) -> Result<(Vec<u8>, MediaParams), SdpError> {
        let n = sdp::negotiate(offer, &self.codecs())?;
        let agreed = sdes::answer_offer(self.local.srtp, &n.proto, &n.crypto, self.local.srtp_key)?;
        let n = Negotiated {
            dtmf_pt: n.dtmf_pt.filter(|_| self.local.events),
            ..n
        };
        let (address, port, session_id) =
            (self.local.address, self.local.port, self.local.session_id);
        let ours = agreed.map(|a| a.ours);
        let body = self
            .describe(|version| {
                let plain = sdp::answer(&n, address, port, session_id, version);
                protect(plain, &n.proto, ours.as_ref())
            })
            .to_vec();
        let media = MediaParams {
            srtp: agreed.map(|a| a.keys),
            ..MediaParams::from_negotiated(&n)
        };
        self.secure = agreed.map(|a| (n.proto.clone(), a.ours));
        self.media = Some(media);
        Ok((body, media))
    }

    /// Our offer: for an INVITE without SDP (late offer), a re-INVITE
    /// without SDP, or an outbound INVITE. The answer comes back through
    /// [`SdpSession::take_answer`].
    pub fn offer(&mut self) -> Vec<u8> {
        let codecs = self.codecs();
        let local = self.local.clone();
        let (proto, offered) = sdes::offer(local.srtp, local.srtp_key);
        let lines: Vec<String> = offered.iter().map(sdes::format).collect();
        self.offered = offered;
        self.describe(|version| {
            let plain = sdp::offer(
                &codecs,
                local.events,
                local.address,
                local.port,
                local.session_id,
                version,
            );
            match lines.is_empty() {
                true => plain,
                false => sdp::secure(&plain, proto, &lines),
            }
        })
        .to_vec()
    }

    /// Our offer for a re-INVITE without SDP (RFC 3261 §14.2): the media
    /// the call has, with the payload types it uses, so whatever the answer
    /// in the ACK says, the media goes on as it is. Before any answer, our
    /// full offer.
    pub fn offer_current(&mut self) -> Vec<u8> {
        let Some(media) = self.media else {
            return self.offer();
        };
        let local = self.local.clone();
        let secure = self.secure.clone();
        self.offered = secure.iter().map(|(_, c)| *c).collect();
        self.describe(|version| {
            let plain = sdp::offer_formats(
                &[(media.payload_type, media.codec)],
                media.dtmf_pt,
                local.address,
                local.port,
                local.session_id,
                version,
            );
            match &secure {
                Some((proto, ours)) => protect(plain, proto, Some(ours)),
                None => plain,
            }
        })
        .to_vec()
    }

    /// The far end's answer to our offer: it must choose a codec we offered.
    pub fn take_answer(&mut self, answer: &[u8]) -> Result<MediaParams, SdpError> {
        let n = sdp::parse_answer(answer)?;
        if !self.codecs().contains(&n.codec) {
            return Err(SdpError::NoCommonCodec);
        }
        let agreed: Option<Agreed> =
            sdes::take_answer(self.local.srtp, &self.offered, &n.proto, &n.crypto)?;
        let n = Negotiated {
            dtmf_pt: n.dtmf_pt.filter(|_| self.local.events),
            ..n
        };
        let media = MediaParams {
            srtp: agreed.map(|a| a.keys),
            ..MediaParams::from_negotiated(&n)
        };
        self.secure = agreed.map(|a| (n.proto.clone(), a.ours));
        self.media = Some(media);
        Ok(media)
    }

    /// Media before any answer: our first codec, nowhere to send yet.
    pub fn provisional_media(&self) -> MediaParams {
        let codec = self.local.codecs.first().copied().unwrap_or(Codec::Pcmu);
        MediaParams {
            codec,
            payload_type: crate::sip::sdp::offer_payload_type(codec),
            remote: None,
            send: true,
            dtmf_pt: None,
            rtcp_mux: false,
            rtcp: None,
            opus: OpusParams::default(),
            srtp: None,
        }
    }

    /// The media agreed on, if an answer has come.
    pub fn media(&self) -> Option<MediaParams> {
        self.media
    }

    /// The call joined a room that mixes it in the current codec; from now
    /// on every offer and answer keeps that codec.
    pub fn lock_codec(&mut self) {
        self.locked = self.media.map(|m| m.codec);
    }

    /// The current local description.
    pub fn description(&self) -> &[u8] {
        &self.description
    }

    /// The origin version of the current local description.
    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_srtp_tests.rs"]
mod srtp_tests;
