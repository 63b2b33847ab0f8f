//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) companding.
//!
//! Decoding uses 256-entry tables built at compile time by `const fn`.
//! Encoding is computed: it costs a handful of integer operations (one
//! `leading_zeros`), while an encode table would need 8–16 KiB per law and
//! compete with the mixer's working set for cache. Both directions follow
//! G.711 bit-exactly, including one's-complement magnitudes for negative
//! samples (so -1 encodes as µ-law "negative zero" 0x7F) and the clipping
//! of 16-bit input to the 14-bit (µ-law) or 13-bit (A-law) range.

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl G711 {
    /// Static RTP payload type: 0 for PCMU, 8 for PCMA.
    pub const fn payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// SDP `a=rtpmap` encoding name.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    /// The codec an SDP or configuration name stands for (case-insensitive).
    pub fn from_name(name: &str) -> Option<G711> {
        [G711::Pcmu, G711::Pcma]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name.trim()))
    }

    /// Encode linear PCM into `out`. Callers pass equal lengths; if they
    /// differ, only the common prefix is processed.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) {
        debug_assert_eq!(pcm.len(), out.len());
        let f = match self {
            G711::Pcmu => ulaw_encode,
            G711::Pcma => alaw_encode,
        };
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = f(s);
        }
    }

    /// Decode G.711 bytes into `out`. Callers pass equal lengths; if they
    /// differ, only the common prefix is processed.
    pub fn decode(self, g711: &[u8], out: &mut [i16]) {
        debug_assert_eq!(g711.len(), out.len());
        let table = match self {
            G711::Pcmu => &ULAW_DECODE,
            G711::Pcma => &ALAW_DECODE,
        };
        for (o, &b) in out.iter_mut().zip(g711) {
            *o = table[b as usize];
        }
    }

    /// The code word for a zero sample (0xFF for µ-law, 0xD5 for A-law).
    pub fn silence_byte(self) -> u8 {
        match self {
            G711::Pcmu => 0xFF,
            G711::Pcma => 0xD5,
        }
    }
}

/// µ-law bias in 14-bit units (G.711 segment offset 33).
const ULAW_BIAS: i32 = 33;
/// Largest biased 14-bit µ-law magnitude (0x1FFF).
const ULAW_CLIP: i32 = 0x1FFF;

/// Encode one 16-bit sample to µ-law.
pub fn ulaw_encode(s: i16) -> u8 {
    let (neg, mag) = split_sign(s);
    let v = ((mag >> 2) + ULAW_BIAS).min(ULAW_CLIP);
    // v lies in 33..=8191: its top bit (5..=12) selects the segment.
    let exp = (31 - v.leading_zeros() as i32) - 5;
    let mant = (v >> (exp + 1)) & 0x0F;
    let code = ((neg as i32) << 7) | (exp << 4) | mant;
    !(code as u8)
}

/// Decode one µ-law byte to a 16-bit sample.
pub fn ulaw_decode(b: u8) -> i16 {
    ULAW_DECODE[b as usize]
}

/// Encode one 16-bit sample to A-law.
pub fn alaw_encode(s: i16) -> u8 {
    let (neg, mag) = split_sign(s);
    let m = mag >> 4; // 12-bit magnitude with the LSB dropped: 0..=2047
    let (exp, mant) = if m < 16 {
        (0, m)
    } else {
        let exp = (31 - m.leading_zeros() as i32) - 3;
        (exp, (m >> (exp - 1)) & 0x0F)
    };
    let code = ((!neg as i32) << 7) | (exp << 4) | mant;
    (code as u8) ^ 0x55
}

/// Decode one A-law byte to a 16-bit sample.
pub fn alaw_decode(b: u8) -> i16 {
    ALAW_DECODE[b as usize]
}

/// Sign and G.711 magnitude: negative samples use the one's complement,
/// so the magnitude of `s` is in `0..=32767`.
fn split_sign(s: i16) -> (bool, i32) {
    if s < 0 {
        (true, !(s as i32))
    } else {
        (false, s as i32)
    }
}

const fn ulaw_decode_calc(b: u8) -> i16 {
    let c = !b;
    let exp = ((c >> 4) & 0x07) as i32;
    let mant = (c & 0x0F) as i32;
    // Midpoint of the quantisation interval, biased, scaled to 16 bits.
    let mag = (0x80 << exp) + (mant << (exp + 3)) + (1 << (exp + 2)) - 4 * ULAW_BIAS;
    if c & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

const fn alaw_decode_calc(b: u8) -> i16 {
    let c = b ^ 0x55;
    let exp = ((c >> 4) & 0x07) as i32;
    let mut mag = (c & 0x0F) as i32;
    if exp > 0 {
        mag += 16;
    }
    mag = (mag << 4) + 8;
    if exp > 1 {
        mag <<= exp - 1;
    }
    if c & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_calc(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_calc(i as u8);
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = build_ulaw_table();
static ALAW_DECODE: [i16; 256] = build_alaw_table();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_ulaw() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(32767), 0x80);
        assert_eq!(ulaw_encode(-32768), 0x00);
        assert_eq!(ulaw_encode(-32767), 0x00);
        // G.711 Table 2a decision values (14-bit units, here scaled by 4).
        assert_eq!(ulaw_encode(4), 0xFE);
        assert_eq!(ulaw_encode(12), 0xFD);
        assert_eq!(ulaw_encode(31 * 4), 0xEF);
        assert_eq!(ulaw_encode(7902 * 4), 0x81);
        assert_eq!(ulaw_encode(7903 * 4), 0x80);
        // Negative magnitudes are one's complement (G.191 ulaw_compress),
        // unlike the common two's-complement variant that yields 0x00 here.
        assert_eq!(ulaw_encode(-31612), 0x01);
        assert_eq!(ulaw_encode(-31611), 0x01);
        assert_eq!(ulaw_encode(-31613), 0x00);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x81), 31100);
    }

    #[test]
    fn reference_values_alaw() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(32767), 0xAA);
        assert_eq!(alaw_encode(-32768), 0x2A);
        // G.711 Table 1a segment starts (13-bit units, here scaled by 8).
        assert_eq!(alaw_encode(32 * 8), 0xC5);
        assert_eq!(alaw_encode(2048 * 8), 0xA5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0x80), 5504);
        assert_eq!(alaw_decode(0x00), -5504);
        assert_eq!(alaw_decode(0xA5), 16896);
    }

    /// Quantisation error never exceeds half a step plus input truncation,
    /// which is below |x|/32 + 16 for both laws (steps are 1/16 of the
    /// segment base; the two lowest segments have a fixed small step).
    #[test]
    fn roundtrip_error_bounded_for_all_samples() {
        for x in i16::MIN..=i16::MAX {
            let bound = (x as i32).abs() / 32 + 16;
            let u = ulaw_decode(ulaw_encode(x)) as i32;
            let a = alaw_decode(alaw_encode(x)) as i32;
            // µ-law clips at ±32635 (14-bit 8159 less the bias).
            let clip_u = (x as i32).clamp(-32635, 32635);
            assert!((u - clip_u).abs() <= bound, "ulaw x={x} got {u}");
            assert!((a - x as i32).abs() <= bound, "alaw x={x} got {a}");
        }
    }

    #[test]
    fn encode_monotonic() {
        let mut prev_u = ulaw_decode(ulaw_encode(i16::MIN));
        let mut prev_a = alaw_decode(alaw_encode(i16::MIN));
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            assert!(u >= prev_u && a >= prev_a, "x={x}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn every_code_roundtrips() {
        for b in 0..=255u8 {
            // µ-law 0x7F is negative zero; it decodes to 0 which re-encodes
            // as the canonical positive zero 0xFF.
            let expect = if b == 0x7F { 0xFF } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), expect, "ulaw {b:#04x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "alaw {b:#04x}");
        }
    }

    #[test]
    fn codec_buffers() {
        let pcm = [0i16, 1000, -1000, 32767, -32768];
        for codec in [G711::Pcmu, G711::Pcma] {
            let mut enc = [0u8; 5];
            let mut dec = [0i16; 5];
            codec.encode(&pcm, &mut enc);
            assert_eq!(enc[0], codec.silence_byte());
            codec.decode(&enc, &mut dec);
            for (d, p) in dec.iter().zip(pcm) {
                assert!((*d as i32 - p as i32).abs() <= p.unsigned_abs() as i32 / 32 + 16);
            }
        }
        assert_eq!(G711::Pcmu.payload_type(), 0);
        assert_eq!(G711::Pcma.payload_type(), 8);
        assert_eq!(G711::Pcmu.encoding_name(), "PCMU");
        assert_eq!(G711::Pcma.encoding_name(), "PCMA");
    }
}
