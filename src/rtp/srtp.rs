//! SRTP and SRTCP (RFC 3711) for one call: the keys SDES negotiated, and
//! the contexts that protect what we send and check what comes in.
//!
//! The ciphers, key derivation, rollover counting and replay windows are
//! `webrtc-srtp`'s; this module keys it, guards it against input it would
//! choke on, and keeps a stranger's packets from growing its state: an
//! SSRC that has never authenticated is tried in a separate, disposable
//! context, so a flood of forged SSRCs costs a rebuild now and then, never
//! memory, and never the state of the genuine stream.

use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Packets behind the newest one that are still accepted once (RFC 3711 §3.3.2).
const REPLAY_WINDOW: usize = 128;
/// SSRCs remembered as the far end's once they authenticated.
const KNOWN_SSRCS: usize = 4;
/// Failures a probing context takes before it is built afresh.
const PROBE_FAILURES: u32 = 32;
/// The SRTCP index and E flag that follow the payload (RFC 3711 §3.4).
const SRTCP_INDEX_LEN: usize = 4;

/// The SDES crypto suites confgate speaks (RFC 4568 §6.2, RFC 7714 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
}

impl Suite {
    /// All of them, in our order of preference.
    pub const ALL: [Suite; 3] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
    ];

    /// The name in `a=crypto`.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master key and salt together, as `inline:` carries them.
    pub const fn key_material_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => 30,
            Suite::AeadAes128Gcm => 28,
        }
    }

    const fn key_len(self) -> usize {
        16
    }

    /// The longest SRTCP trailer after the payload: index and tag.
    const fn srtcp_trailer_len(self) -> usize {
        SRTCP_INDEX_LEN
            + match self {
                Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => 10,
                Suite::AeadAes128Gcm => 16,
            }
    }

    /// The authentication tag an SRTP packet carries.
    const fn srtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }
}

/// Master key and salt (the longest any suite uses; a suite takes its first
/// [`Suite::key_material_len`] bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey([u8; 30]);

impl MasterKey {
    /// A fresh key from the thread's CSPRNG.
    pub fn random() -> MasterKey {
        MasterKey(rand::random())
    }

    /// Key material of exactly `suite`'s length.
    pub fn from_slice(suite: Suite, bytes: &[u8]) -> Option<MasterKey> {
        if bytes.len() != suite.key_material_len() {
            return None;
        }
        let mut key = [0u8; 30];
        key[..bytes.len()].copy_from_slice(bytes);
        Some(MasterKey(key))
    }

    /// The bytes `suite` uses.
    pub fn material(&self, suite: Suite) -> &[u8] {
        &self.0[..suite.key_material_len()]
    }
}

impl std::fmt::Debug for MasterKey {
    /// Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// What SDES agreed for one call: the suite, our key (for what we send)
/// and theirs (for what we receive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub local: MasterKey,
    pub remote: MasterKey,
}

/// Why SRTP could not be set up or a packet could not be protected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The library refused the keys (a fault of ours: lengths are checked).
    #[error("SRTP keys refused: {0}")]
    Keys(String),
    /// The peer's packet failed authentication, was a replay or was malformed.
    #[error("SRTP packet rejected: {0}")]
    Rejected(String),
    /// Ours could not be protected (not RTP/RTCP, or the key is worn out).
    #[error("SRTP protect failed: {0}")]
    Protect(String),
}

fn context(suite: Suite, key: &MasterKey) -> Result<Context, SrtpError> {
    let material = key.material(suite);
    let (master, salt) = material.split_at(suite.key_len());
    Context::new(
        master,
        salt,
        suite.profile(),
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
    )
    .map_err(|e| SrtpError::Keys(e.to_string()))
}

/// The inbound side: the far end's key, with the probe for unknown SSRCs.
struct Inbound {
    suite: Suite,
    key: MasterKey,
    main: Context,
    probe: Context,
    probe_failures: u32,
    /// SSRCs that authenticated, newest last.
    known: Vec<u32>,
}

impl Inbound {
    fn new(suite: Suite, key: MasterKey) -> Result<Inbound, SrtpError> {
        Ok(Inbound {
            suite,
            key,
            main: context(suite, &key)?,
            probe: context(suite, &key)?,
            probe_failures: 0,
            known: Vec::with_capacity(KNOWN_SSRCS),
        })
    }

    fn unprotect(
        &mut self,
        bytes: &[u8],
        ssrc: u32,
        rtcp: bool,
    ) -> Result<bytes::Bytes, SrtpError> {
        let run = |c: &mut Context| match rtcp {
            true => c.decrypt_rtcp(bytes),
            false => c.decrypt_rtp(bytes),
        };
        if self.known.contains(&ssrc) {
            return run(&mut self.main).map_err(|e| SrtpError::Rejected(e.to_string()));
        }
        match run(&mut self.probe) {
            Ok(_) => {
                // Genuine: from now on the main context holds its state,
                // starting with this packet (so a replay of it is caught).
                if self.known.len() == KNOWN_SSRCS {
                    self.known.remove(0);
                }
                self.known.push(ssrc);
                self.probe = context(self.suite, &self.key)?;
                self.probe_failures = 0;
                run(&mut self.main).map_err(|e| SrtpError::Rejected(e.to_string()))
            }
            Err(e) => {
                self.probe_failures += 1;
                if self.probe_failures >= PROBE_FAILURES {
                    self.probe = context(self.suite, &self.key)?;
                    self.probe_failures = 0;
                }
                Err(SrtpError::Rejected(e.to_string()))
            }
        }
    }
}

/// One call's SRTP: protects what we send, unprotects what we receive.
pub struct SrtpSession {
    keys: SrtpKeys,
    outbound: Context,
    inbound: Inbound,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("suite", &self.keys.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    pub fn new(keys: SrtpKeys) -> Result<SrtpSession, SrtpError> {
        Ok(SrtpSession {
            outbound: context(keys.suite, &keys.local)?,
            inbound: Inbound::new(keys.suite, keys.remote)?,
            keys,
        })
    }

    pub fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// New keys from a re-INVITE: a context is kept where its key and
    /// suite did not change (its rollover counter and replay window with it).
    pub fn rekey(&mut self, keys: SrtpKeys) -> Result<(), SrtpError> {
        if keys.suite != self.keys.suite || keys.local != self.keys.local {
            self.outbound = context(keys.suite, &keys.local)?;
        }
        if keys.suite != self.keys.suite || keys.remote != self.keys.remote {
            self.inbound = Inbound::new(keys.suite, keys.remote)?;
        }
        self.keys = keys;
        Ok(())
    }

    /// Protect the RTP packet in `packet`, in place of its plain text.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let sealed = self
            .outbound
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError::Protect(e.to_string()))?;
        packet.clear();
        packet.extend_from_slice(&sealed);
        Ok(())
    }

    /// Protect the compound RTCP packet in `packet` (SRTCP), in place.
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let sealed = self
            .outbound
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError::Protect(e.to_string()))?;
        packet.clear();
        packet.extend_from_slice(&sealed);
        Ok(())
    }

    /// Check and decrypt an SRTP packet in place; returns the plain
    /// packet's length (a prefix of `packet`).
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        // A header and a tag at least, and RTP version 2.
        if packet.len() < 12 + self.keys.suite.srtp_tag_len() || packet[0] >> 6 != 2 {
            return Err(SrtpError::Rejected("too short for SRTP".into()));
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let plain = self.inbound.unprotect(packet, ssrc, false)?;
        put(packet, &plain)
    }

    /// Check and decrypt an SRTCP packet in place; returns the plain
    /// packet's length.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        // The library reads the SSRC and the trailer without looking first.
        if packet.len() < 8 + self.keys.suite.srtcp_trailer_len() || packet[0] >> 6 != 2 {
            return Err(SrtpError::Rejected("too short for SRTCP".into()));
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let plain = self.inbound.unprotect(packet, ssrc, true)?;
        put(packet, &plain)
    }
}

fn put(packet: &mut [u8], plain: &[u8]) -> Result<usize, SrtpError> {
    let dst = packet
        .get_mut(..plain.len())
        .ok_or_else(|| SrtpError::Rejected("plain text longer than the packet".into()))?;
    dst.copy_from_slice(plain);
    Ok(plain.len())
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
