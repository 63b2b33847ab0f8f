//! The voice codecs a call can speak, and a call's encoder and decoder.
//!
//! G.711 (PCMU, PCMA) is narrowband, 8 kHz; G.722 and Opus are wideband.
//! Opus runs at 16 kHz here, the room's rate: a phone call gains nothing
//! from its 48 kHz modes, whatever its RTP clock (always 48 kHz, RFC 7587).
//! G.722 samples at 16 kHz although its RTP clock is 8 kHz (RFC 3551).
//!
//! G.711 is ours (`g711.rs`); G.722 comes from `audio-codec` (a pure-Rust
//! translation of the ITU-T reference) and Opus from libopus through the
//! `opus` binding.

use std::fmt;

use audio_codec::g722::{Bitrate, G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};

use super::g711::G711;
use super::halfband::{Downsampler, Upsampler};

/// The room's sample rate.
pub const ROOM_RATE: u32 = 16_000;
/// One 20 ms frame at the room's rate.
pub const ROOM_FRAME: usize = 320;
/// One 20 ms frame at 8 kHz.
pub const NARROW_FRAME: usize = 160;
/// The largest Opus payload we send or take (RFC 6716 allows 1275).
pub const MAX_PAYLOAD: usize = 1275;

/// A voice codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// G.722, payload type 9.
    G722,
    /// Opus, a dynamic payload type.
    Opus,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    /// The SDP `a=rtpmap` encoding name.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// The codec an SDP or configuration name stands for (case-insensitive).
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name.trim()))
    }

    /// The static RTP payload type (RFC 3551), if it has one.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// The RTP clock rate, as SDP writes it.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 8000,
        }
    }

    /// The channel count SDP writes after the clock rate (`opus/48000/2`).
    pub const fn sdp_channels(self) -> Option<u8> {
        match self {
            Codec::Opus => Some(2),
            _ => None,
        }
    }

    /// The rate its audio is sampled at here.
    pub const fn sample_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 | Codec::Opus => ROOM_RATE,
        }
    }

    /// Samples in a 20 ms frame at [`sample_rate`](Self::sample_rate).
    pub const fn frame_samples(self) -> usize {
        (self.sample_rate() / 50) as usize
    }

    /// RTP timestamp units in a 20 ms frame.
    pub const fn frame_ts(self) -> u32 {
        self.clock_rate() / 50
    }

    /// Carries audio above 4 kHz.
    pub const fn wideband(self) -> bool {
        matches!(self, Codec::G722 | Codec::Opus)
    }

    /// The G.711 law, for the narrowband codecs.
    pub const fn g711(self) -> Option<G711> {
        match self {
            Codec::Pcmu => Some(G711::Pcmu),
            Codec::Pcma => Some(G711::Pcma),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// What a codec refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// libopus would not set up a codec (out of memory, bad settings).
    #[error("opus: {0}")]
    Opus(String),
    /// The peer sent a payload that does not decode.
    #[error("undecodable {codec} payload of {len} bytes")]
    Undecodable { codec: Codec, len: usize },
}

fn opus_error(e: opus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

/// Settings the far end asked for in its `a=fmtp` (RFC 7587).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpusParams {
    /// `maxplaybackrate`: the highest rate worth sending it, Hz.
    pub max_playback_rate: Option<u32>,
    /// `useinbandfec=1`: its decoder uses FEC, so we send it.
    pub inband_fec: bool,
}

/// One call's encoder: 20 ms frames at the codec's sample rate in, RTP
/// payloads out.
pub struct Encoder {
    codec: Codec,
    kind: EncoderKind,
}

enum EncoderKind {
    G711(G711),
    G722(Box<G722Encoder>),
    Opus(Box<opus::Encoder>),
}

impl Encoder {
    pub fn new(codec: Codec, opus: OpusParams) -> Result<Encoder, CodecError> {
        let kind = match codec {
            Codec::Pcmu => EncoderKind::G711(G711::Pcmu),
            Codec::Pcma => EncoderKind::G711(G711::Pcma),
            Codec::G722 => EncoderKind::G722(Box::new(G722Encoder::with_options(
                Bitrate::Mode1_64000,
                false,
                false,
            ))),
            Codec::Opus => {
                let mut e =
                    opus::Encoder::new(ROOM_RATE, opus::Channels::Mono, opus::Application::Voip)
                        .map_err(opus_error)?;
                e.set_bitrate(opus::Bitrate::Bits(32_000))
                    .map_err(opus_error)?;
                // FEC costs bits only once the encoder expects loss.
                e.set_inband_fec(opus.inband_fec).map_err(opus_error)?;
                e.set_packet_loss_perc(if opus.inband_fec { 10 } else { 0 })
                    .map_err(opus_error)?;
                if opus.max_playback_rate.is_some_and(|r| r <= 8000) {
                    e.set_max_bandwidth(opus::Bandwidth::Narrowband)
                        .map_err(opus_error)?;
                }
                EncoderKind::Opus(Box::new(e))
            }
        };
        Ok(Encoder { codec, kind })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Encode one frame (`codec.frame_samples()` samples; shorter input is
    /// padded with silence) into `out`, replacing what it held.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut frame = [0i16; ROOM_FRAME];
        let n = self.codec.frame_samples();
        let len = pcm.len().min(n);
        frame[..len].copy_from_slice(&pcm[..len]);
        let frame = &frame[..n];
        out.clear();
        match &mut self.kind {
            EncoderKind::G711(law) => {
                out.resize(n, 0);
                law.encode(frame, out);
            }
            EncoderKind::G722(e) => {
                out.resize(n / 2, 0);
                let written = e.encode_into(frame, out).unwrap_or(0);
                out.truncate(written);
            }
            EncoderKind::Opus(e) => {
                out.resize(MAX_PAYLOAD, 0);
                let written = e.encode(frame, out).map_err(opus_error)?;
                out.truncate(written);
            }
        }
        Ok(())
    }
}

/// One call's decoder: RTP payloads in, audio out at the rate it was made
/// for (8 kHz for the tone detector, or the room's 16 kHz).
pub struct Decoder {
    codec: Codec,
    rate: u32,
    kind: DecoderKind,
}

enum DecoderKind {
    G711 {
        law: G711,
        up: Option<Box<Upsampler>>,
    },
    G722 {
        dec: Box<G722Decoder>,
    },
    Opus(Box<opus::Decoder>),
}

impl Decoder {
    /// A decoder whose output is at `rate`: 8,000 or 16,000 Hz.
    pub fn new(codec: Codec, rate: u32) -> Result<Decoder, CodecError> {
        let narrow = rate <= 8000;
        let rate = if narrow { 8000 } else { ROOM_RATE };
        let kind = match codec {
            Codec::Pcmu | Codec::Pcma => DecoderKind::G711 {
                law: codec.g711().unwrap_or(G711::Pcmu),
                up: (!narrow).then(Box::default),
            },
            // In its 8 kHz mode the decoder gives the lower sub-band alone,
            // which is the 0–4 kHz band already decimated.
            Codec::G722 => DecoderKind::G722 {
                dec: Box::new(G722Decoder::with_options(
                    Bitrate::Mode1_64000,
                    false,
                    narrow,
                )),
            },
            Codec::Opus => DecoderKind::Opus(Box::new(
                opus::Decoder::new(rate, opus::Channels::Mono).map_err(opus_error)?,
            )),
        };
        Ok(Decoder { codec, rate, kind })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Samples in 20 ms of output.
    pub fn frame_samples(&self) -> usize {
        (self.rate / 50) as usize
    }

    /// RTP timestamp units one payload of `len` bytes covers, so a payload
    /// of several frames can be split (G.711, G.722); Opus payloads are
    /// taken as one 20 ms frame.
    pub fn payload_ts(&self, len: usize) -> u32 {
        match self.codec {
            Codec::Pcmu | Codec::Pcma => len as u32,
            Codec::G722 => len as u32,
            Codec::Opus => self.codec.frame_ts(),
        }
    }

    /// Decode one 20 ms payload into `out` (one frame at the decoder's rate;
    /// a short payload leaves the rest silent).
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<(), CodecError> {
        let n = self.frame_samples().min(out.len());
        let out = &mut out[..n];
        out.fill(0);
        let bad = CodecError::Undecodable {
            codec: self.codec,
            len: payload.len(),
        };
        match &mut self.kind {
            DecoderKind::G711 { law, up } => match up {
                None => {
                    let len = payload.len().min(n);
                    law.decode(&payload[..len], &mut out[..len]);
                }
                Some(up) => {
                    let mut narrow = [0i16; NARROW_FRAME];
                    let len = payload.len().min(NARROW_FRAME);
                    law.decode(&payload[..len], &mut narrow[..len]);
                    up.process(&narrow, out);
                }
            },
            DecoderKind::G722 { dec } => {
                // Two samples (one at 8 kHz) per byte.
                let per_byte = if self.rate == 8000 { 1 } else { 2 };
                let len = payload.len().min(n / per_byte);
                dec.decode_into(&payload[..len], out).map_err(|_| bad)?;
            }
            DecoderKind::Opus(dec) => {
                if payload.is_empty() {
                    return Err(bad);
                }
                let got = dec.decode(payload, out, false).map_err(|_| bad)?;
                if got != n {
                    return Err(CodecError::Undecodable {
                        codec: self.codec,
                        len: payload.len(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Opus only: recover the frame before `next` from the in-band FEC it
    /// carries (libopus's own concealment if it carries none). `false` for
    /// codecs without it.
    pub fn recover(&mut self, next: &[u8], out: &mut [i16]) -> bool {
        let n = self.frame_samples().min(out.len());
        match &mut self.kind {
            DecoderKind::Opus(dec) => dec.decode(next, &mut out[..n], true).is_ok_and(|g| g == n),
            _ => false,
        }
    }

    /// Opus only: libopus's concealment for one lost frame.
    pub fn conceal(&mut self, out: &mut [i16]) -> bool {
        let n = self.frame_samples().min(out.len());
        match &mut self.kind {
            DecoderKind::Opus(dec) => dec.decode(&[], &mut out[..n], false).is_ok_and(|g| g == n),
            _ => false,
        }
    }
}

/// The room's mix, as a narrowband member hears it: downsampled, then
/// G.711. Kept per stream so its filter history runs on.
#[derive(Default, Clone)]
pub struct NarrowOut {
    down: Downsampler,
}

impl NarrowOut {
    /// One room frame into G.711 `law`.
    pub fn encode(&mut self, law: G711, room: &[i16; ROOM_FRAME], out: &mut [u8; NARROW_FRAME]) {
        let mut narrow = [0i16; NARROW_FRAME];
        self.down.process(room, &mut narrow);
        law.encode(&narrow, out);
    }

    /// One room frame at 8 kHz.
    pub fn downsample(&mut self, room: &[i16; ROOM_FRAME], out: &mut [i16; NARROW_FRAME]) {
        self.down.process(room, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, f: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate)).sin()) as i16
            })
            .collect()
    }

    fn level(x: &[i16], rate: u32, f: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let p = 2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate);
            re += f64::from(s) * p.cos();
            im += f64::from(s) * p.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    /// Encode a signal frame by frame and decode it at `rate`.
    fn round_trip(codec: Codec, signal: &[i16], rate: u32) -> Vec<i16> {
        let mut enc = Encoder::new(codec, OpusParams::default()).unwrap();
        let mut dec = Decoder::new(codec, rate).unwrap();
        let mut payload = Vec::new();
        let mut out = Vec::new();
        for frame in signal.chunks(codec.frame_samples()) {
            enc.encode(frame, &mut payload).unwrap();
            let mut pcm = [0i16; ROOM_FRAME];
            dec.decode(&payload, &mut pcm).unwrap();
            out.extend_from_slice(&pcm[..dec.frame_samples()]);
        }
        out
    }

    #[test]
    fn names_rates_and_clocks() {
        assert_eq!(Codec::from_name("OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_name("g722"), Some(Codec::G722));
        assert_eq!(Codec::from_name("G729"), None);
        // RFC 3551: G.722's clock is 8 kHz though it samples at 16.
        assert_eq!(Codec::G722.frame_ts(), 160);
        assert_eq!(Codec::G722.frame_samples(), 320);
        assert_eq!(Codec::Opus.frame_ts(), 960);
        assert_eq!(Codec::Opus.frame_samples(), 320);
        assert_eq!(Codec::Pcmu.frame_ts(), 160);
    }

    #[test]
    fn wideband_codecs_carry_6_khz_and_g711_does_not() {
        for codec in [Codec::G722, Codec::Opus] {
            let tone = sine(16_000, 6000.0, 8000.0, 16_000);
            let out = round_trip(codec, &tone, 16_000);
            let heard = level(&out[4000..], 16_000, 6000.0);
            assert!(heard > 4000.0, "{codec} carries 6 kHz at {heard}");
        }
        let mut up = Decoder::new(Codec::Pcmu, 16_000).unwrap();
        let mut enc = Encoder::new(Codec::Pcmu, OpusParams::default()).unwrap();
        let mut payload = Vec::new();
        enc.encode(&sine(8000, 1000.0, 8000.0, 160), &mut payload)
            .unwrap();
        let mut pcm = [0i16; ROOM_FRAME];
        up.decode(&payload, &mut pcm).unwrap();
        assert_eq!(payload.len(), 160);
    }

    #[test]
    fn narrow_decoders_give_the_low_band_at_8_khz() {
        for codec in [Codec::G722, Codec::Opus] {
            let tone = sine(16_000, 1209.0, 8000.0, 16_000);
            let out = round_trip(codec, &tone, 8000);
            assert_eq!(out.len(), 8000);
            let heard = level(&out[2000..], 8000, 1209.0);
            assert!(heard > 5000.0, "{codec} at 8 kHz gives 1209 Hz at {heard}");
        }
    }

    #[test]
    fn opus_recovers_a_lost_frame_from_fec() {
        let params = OpusParams {
            inband_fec: true,
            ..Default::default()
        };
        let mut enc = Encoder::new(Codec::Opus, params).unwrap();
        let mut dec = Decoder::new(Codec::Opus, 16_000).unwrap();
        let speechy: Vec<i16> = (0..16_000)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                (6000.0
                    * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    * (1.0 + (2.0 * std::f64::consts::PI * 3.0 * t).sin())
                    / 2.0) as i16
            })
            .collect();
        let mut packets = Vec::new();
        for frame in speechy.chunks(320) {
            let mut p = Vec::new();
            enc.encode(frame, &mut p).unwrap();
            packets.push(p);
        }
        let mut pcm = [0i16; ROOM_FRAME];
        for p in &packets[..20] {
            dec.decode(p, &mut pcm).unwrap();
        }
        // Frame 20 is lost: recovered from 21.
        assert!(dec.recover(&packets[21], &mut pcm));
        let recovered = level(&pcm, 16_000, 440.0);
        let original = level(&speechy[20 * 320..21 * 320], 16_000, 440.0);
        assert!(
            recovered > original * 0.3,
            "FEC gives {recovered} of {original}"
        );
        dec.decode(&packets[21], &mut pcm).unwrap();
        assert!(dec.conceal(&mut pcm));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = Decoder::new(Codec::Opus, 16_000).unwrap();
        let mut pcm = [0i16; ROOM_FRAME];
        // A TOC byte for a 60 ms SILK frame: longer than one room frame.
        assert!(dec.decode(&[0x18, 1, 2, 3], &mut pcm).is_err());
        assert!(dec.decode(&[], &mut pcm).is_err());
        let mut g = Decoder::new(Codec::G722, 16_000).unwrap();
        g.decode(&[0xAB; 400], &mut pcm).unwrap();
    }
}
