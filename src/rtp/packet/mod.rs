//! RTP (RFC 3550) packet building and parsing.
//!
//! Sending marshals an `rtp::header::Header` kept inside [`RtpSender`]
//! straight into the caller's buffer. The header never carries CSRCs or
//! extensions, so its `Vec` fields stay empty and nothing is allocated per
//! packet; `rtp::packet::Packet` is not used because its payload is an owned
//! `Bytes`, which would force a copy-allocation of every payload.
//!
//! Receiving is a zero-copy parser written directly on the datagram bytes.
//! The `rtp` crate's `Unmarshal` allocates (CSRC `Vec`, copied payload and
//! extension `Bytes`), does not check the version, and indexes past the end
//! on some malformed RFC 8285 extensions, so it is unsuitable for peer input.

use rtp::header::Header;
use webrtc_util::marshal::{Marshal, MarshalSize};

mod parse;
mod seq;
pub use parse::{parse, HeaderExtension, RtpError, RtpView, RTCP_SECOND_BYTE};
pub use seq::SeqTracker;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// Stateful RTP sender for one outgoing stream (one SSRC).
#[derive(Debug, Clone)]
pub struct RtpSender {
    header: Header,
    seq: u16,
    timestamp: u32,
    marker_pending: bool,
    /// Packets and payload octets sent, for RTCP sender reports (wrapping).
    packets: u32,
    octets: u32,
}

impl RtpSender {
    /// A sender with explicit initial values. The first packet carries the
    /// marker bit, as it starts the first talkspurt.
    pub fn new(ssrc: u32, seq: u16, timestamp: u32) -> Self {
        let header = Header {
            version: 2,
            ssrc,
            ..Header::default()
        };
        Self {
            header,
            seq,
            timestamp,
            marker_pending: true,
            packets: 0,
            octets: 0,
        }
    }

    /// Packets and payload octets sent so far (RFC 3550 §6.4.1, modulo 2^32).
    pub fn counts(&self) -> (u32, u32) {
        (self.packets, self.octets)
    }

    /// A sender with random SSRC, sequence number and timestamp
    /// (RFC 3550 §5.1).
    pub fn random() -> Self {
        Self::new(rand::random(), rand::random(), rand::random())
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn seq(&self) -> u16 {
        self.seq
    }

    /// Media timestamp the next [`packetize`](Self::packetize) will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Mark the next media packet as the start of a talkspurt.
    pub fn start_talkspurt(&mut self) {
        self.marker_pending = true;
    }

    /// Build one packet of `payload` with `pt`, advancing seq by 1 and
    /// timestamp by `samples`. Writes into `out` (cleared first); nothing is
    /// allocated when `out` already has room for header and payload.
    pub fn packetize(&mut self, pt: u8, payload: &[u8], samples: u32, out: &mut Vec<u8>) {
        let marker = std::mem::take(&mut self.marker_pending);
        self.write(pt, payload, self.timestamp, marker, out);
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Skip `samples` of timestamp without sending (silence suppression,
    /// gaps); the next media packet gets the marker bit.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker_pending = true;
    }

    /// For RFC 4733 events: a packet with explicit timestamp and marker that
    /// leaves the media timestamp and pending marker alone (seq advances).
    pub fn packetize_at(
        &mut self,
        pt: u8,
        payload: &[u8],
        timestamp: u32,
        marker: bool,
        out: &mut Vec<u8>,
    ) {
        self.write(pt, payload, timestamp, marker, out);
    }

    fn write(&mut self, pt: u8, payload: &[u8], timestamp: u32, marker: bool, out: &mut Vec<u8>) {
        debug_assert!(pt < 128, "payload type is 7 bits");
        let h = &mut self.header;
        h.payload_type = pt & 0x7F;
        h.marker = marker;
        h.sequence_number = self.seq;
        h.timestamp = timestamp;
        out.clear();
        out.resize(RTP_HEADER_LEN, 0);
        debug_assert_eq!(h.marshal_size(), RTP_HEADER_LEN);
        // Safe: the header has no CSRCs and no extension, so it marshals to
        // exactly RTP_HEADER_LEN bytes, and `out` is exactly that long;
        // marshal_to only fails on a short buffer or a bad extension.
        let n = h
            .marshal_to(&mut out[..])
            .expect("fixed 12-byte RTP header fits its buffer");
        debug_assert_eq!(n, RTP_HEADER_LEN);
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_no_realloc() {
        let mut tx = RtpSender::new(0xDEAD_BEEF, 1000, 5000);
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + 160);
        let ptr = out.as_ptr();
        for i in 0..10u16 {
            let payload = [i as u8; 160];
            tx.packetize(0, &payload, 160, &mut out);
            assert_eq!(out.as_ptr(), ptr, "no reallocation");
            assert_eq!(out.len(), RTP_HEADER_LEN + 160);
            let v = parse(&out).expect("valid");
            assert_eq!((v.pt, v.ssrc, v.seq), (0, 0xDEAD_BEEF, 1000 + i));
            assert_eq!(v.timestamp, 5000 + 160 * u32::from(i));
            assert_eq!(v.payload, &payload[..]);
            assert_eq!((v.csrc, v.extension), (&[][..], None));
        }
        assert_eq!(tx.counts(), (10, 1600), "packets and payload octets");
    }

    #[test]
    fn seq_and_timestamp_wrap() {
        let mut tx = RtpSender::new(1, 65535, u32::MAX - 79);
        let mut out = Vec::new();
        let mut tr = SeqTracker::new();
        let mut out2 = Vec::new();
        tx.packetize(8, &[0xD5; 160], 160, &mut out);
        tx.packetize(8, &[0xD5; 160], 160, &mut out2);
        let (a, b) = (parse(&out).expect("valid"), parse(&out2).expect("valid"));
        assert_eq!((a.seq, b.seq), (65535, 0));
        assert_eq!((a.timestamp, b.timestamp), (u32::MAX - 79, 80));
        assert_eq!(tr.update(a.seq) + 1, tr.update(b.seq));
    }

    #[test]
    fn marker_and_timing() {
        let mut tx = RtpSender::new(7, 0, 0);
        let mut out = Vec::new();
        let mut marks = Vec::new();
        for frame in 0..50u32 {
            if frame == 10 {
                tx.start_talkspurt();
            }
            assert_eq!(tx.timestamp(), frame * 160, "8 kHz, 20 ms frames");
            tx.packetize(0, &[0xFF; 160], 160, &mut out);
            marks.push(parse(&out).expect("valid").marker);
        }
        assert_eq!(tx.timestamp(), 8000, "one second of audio");
        let set: Vec<usize> = (0..50).filter(|&i| marks[i]).collect();
        assert_eq!(set, vec![0, 10]);

        tx.skip(800);
        tx.packetize(0, &[0xFF; 160], 160, &mut out);
        let v = parse(&out).expect("valid");
        assert!(v.marker);
        assert_eq!((v.timestamp, v.seq), (8800, 50));
    }

    #[test]
    fn packetize_at_leaves_media_clock() {
        let mut tx = RtpSender::new(7, 10, 1600);
        let mut out = Vec::new();
        tx.packetize(0, &[0xFF; 160], 160, &mut out);
        tx.packetize_at(101, &[1, 0x80, 0, 160], 1600, true, &mut out);
        let v = parse(&out).expect("valid");
        assert_eq!((v.pt, v.seq, v.timestamp, v.marker), (101, 11, 1600, true));
        assert_eq!(tx.timestamp(), 1760);
        tx.packetize(0, &[0xFF; 160], 160, &mut out);
        let v = parse(&out).expect("valid");
        assert_eq!((v.seq, v.timestamp, v.marker), (12, 1760, false));
    }
}
