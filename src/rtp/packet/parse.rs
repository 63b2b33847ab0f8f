//! Zero-copy RTP parsing of untrusted datagrams.

use super::RTP_HEADER_LEN;

/// Second header bytes that identify RTCP when multiplexed with RTP
/// (RFC 5761 §4: packet types 192..=223, which covers SR/RR/SDES/BYE/APP
/// at 200..=204 as well as feedback and XR).
pub const RTCP_SECOND_BYTE: std::ops::RangeInclusive<u8> = 192..=223;

/// A header extension block (RFC 3550 §5.3.1): profile and raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// The 16-bit "defined by profile" field (0xBEDE for RFC 8285 one-byte).
    pub profile: u16,
    /// Extension data, a multiple of 4 bytes.
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    /// Payload with any padding removed.
    pub payload: &'a [u8],
    /// Raw CSRC list, 4 bytes per entry; see [`RtpView::csrcs`].
    pub csrc: &'a [u8],
    pub extension: Option<HeaderExtension<'a>>,
}

impl RtpView<'_> {
    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Why a datagram was rejected: the peer sent something that is not a
/// well-formed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("datagram shorter than its RTP header")]
    TooShort,
    #[error("unsupported RTP version {0}")]
    BadVersion(u8),
    #[error("invalid RTP padding length")]
    BadPadding,
    #[error("truncated RTP header extension")]
    BadExtension,
    #[error("datagram is RTCP, not RTP")]
    NotRtp,
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse a datagram as RTP, zero-copy: version 2, CSRCs, header extension
/// and padding are handled; RTCP (second byte in [`RTCP_SECOND_BYTE`]) is
/// rejected as [`RtpError::NotRtp`]. Never panics on any input.
pub fn parse(datagram: &[u8]) -> Result<RtpView<'_>, RtpError> {
    let d = datagram;
    let (&b0, &b1) = match d {
        [b0, b1, ..] if d.len() >= RTP_HEADER_LEN => (b0, b1),
        _ => return Err(RtpError::TooShort),
    };
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    if RTCP_SECOND_BYTE.contains(&b1) {
        return Err(RtpError::NotRtp);
    }
    let seq = be_u16(d, 2).ok_or(RtpError::TooShort)?;
    let timestamp = be_u32(d, 4).ok_or(RtpError::TooShort)?;
    let ssrc = be_u32(d, 8).ok_or(RtpError::TooShort)?;

    let csrc_end = RTP_HEADER_LEN + 4 * usize::from(b0 & 0x0F);
    let csrc = d.get(RTP_HEADER_LEN..csrc_end).ok_or(RtpError::TooShort)?;

    let mut off = csrc_end;
    let extension = if b0 & 0x10 != 0 {
        let profile = be_u16(d, off).ok_or(RtpError::BadExtension)?;
        let words = be_u16(d, off + 2).ok_or(RtpError::BadExtension)?;
        let start = off + 4;
        let end = start + 4 * usize::from(words);
        let data = d.get(start..end).ok_or(RtpError::BadExtension)?;
        off = end;
        Some(HeaderExtension { profile, data })
    } else {
        None
    };

    let mut end = d.len();
    if b0 & 0x20 != 0 {
        // The last octet counts the padding, itself included (RFC 3550 §5.1).
        let pad = usize::from(*d.last().ok_or(RtpError::TooShort)?);
        if pad == 0 || pad > end - off {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }

    Ok(RtpView {
        pt: b1 & 0x7F,
        seq,
        timestamp,
        ssrc,
        marker: b1 & 0x80 != 0,
        payload: &d[off..end],
        csrc,
        extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use rtp::header::Header;
    use webrtc_util::marshal::Marshal;

    #[test]
    fn csrc_extension_padding() {
        let mut header = Header {
            version: 2,
            padding: true,
            marker: true,
            payload_type: 8,
            sequence_number: 42,
            timestamp: 99,
            ssrc: 5,
            csrc: vec![0x1111_1111, 0x2222_2222],
            ..Header::default()
        };
        header
            .set_extension(3, Bytes::from_static(&[9, 9, 9]))
            .expect("one-byte extension");
        let pkt = rtp::packet::Packet {
            header,
            payload: Bytes::from_static(&[1, 2, 3, 4, 5]),
        };
        let raw = pkt.marshal().expect("marshal");
        let v = parse(&raw).expect("valid");
        assert_eq!((v.pt, v.seq, v.timestamp, v.ssrc), (8, 42, 99, 5));
        assert!(v.marker);
        assert_eq!(v.csrcs().collect::<Vec<_>>(), [0x1111_1111, 0x2222_2222]);
        let ext = v.extension.expect("extension");
        assert_eq!(ext.profile, 0xBEDE);
        assert_eq!(ext.data, &[0x32, 9, 9, 9]);
        assert_eq!(v.payload, &[1, 2, 3, 4, 5]);

        // Truncations fail cleanly while the headers are incomplete; past
        // them, a cut payload can look like valid padding, which is fine.
        let headers = RTP_HEADER_LEN + 8 + 8;
        for n in 0..raw.len() {
            if let Ok(v) = parse(&raw[..n]) {
                assert!(n > headers && v.payload.len() < 5, "prefix {n}");
            }
        }
    }

    #[test]
    fn malformed() {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xAA, 0xBB];
        assert_eq!(parse(&p[..11]), Err(RtpError::TooShort));
        assert!(parse(&p).is_ok());
        p[0] = 0x40;
        assert_eq!(parse(&p), Err(RtpError::BadVersion(1)));
        for b1 in [200, 201, 202, 203, 204, 205, 206] {
            p[0] = 0x81;
            p[1] = b1;
            assert_eq!(parse(&p), Err(RtpError::NotRtp), "second byte {b1}");
        }
        p[1] = 0;
        p[0] = 0x81; // one CSRC, only 2 bytes present
        assert_eq!(parse(&p), Err(RtpError::TooShort));
        p[0] = 0x90; // extension header cut short
        assert_eq!(parse(&p), Err(RtpError::BadExtension));
        p.extend_from_slice(&[0, 1, 7, 7]); // one word promised, none present
        assert_eq!(parse(&p), Err(RtpError::BadExtension));
        p[0] = 0xA0;
        *p.last_mut().expect("non-empty") = 0;
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        *p.last_mut().expect("non-empty") = 7;
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        *p.last_mut().expect("non-empty") = 6;
        assert_eq!(parse(&p).map(|v| v.payload.len()), Ok(0));
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x5EED);
        let mut buf = [0u8; 96];
        let mut ok = 0;
        for _ in 0..100_000 {
            let len = rng.random_range(0..=buf.len());
            rng.fill(&mut buf[..len]);
            if len > 0 && rng.random_bool(0.75) {
                buf[0] = 0x80 | (buf[0] & 0x3F); // mostly version 2
            }
            if let Ok(v) = parse(&buf[..len]) {
                ok += 1;
                assert!(v.payload.len() + RTP_HEADER_LEN <= len);
            }
        }
        assert!(ok > 1000, "fuzzer reaches the accepting paths ({ok})");
    }
}
