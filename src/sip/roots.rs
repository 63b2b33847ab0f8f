//! The system's CA roots, for the peers we dial over TLS when
//! `trunk.tls_ca` names none: read from the operating system's store
//! (Debian's ca-certificates, or SSL_CERT_FILE / SSL_CERT_DIR) and handed to
//! rsipstack as PEM, the form its TLS client takes.

use std::fmt::Write;

use base64::Engine;
use tracing::{debug, info, warn};

/// Every certificate the system trusts, as PEM; empty (every server
/// certificate then fails to verify) when the store cannot be read.
pub(super) fn system_roots_pem() -> Vec<u8> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        warn!(error = %e, "reading the system's CA certificates");
    }
    if found.certs.is_empty() {
        info!("no system CA certificates: TLS peers will not verify (set trunk.tls_ca)");
    }
    debug!(roots = found.certs.len(), "system CA certificates loaded");
    pem(found.certs.iter().map(|c| c.as_ref()))
}

/// DER certificates as PEM `CERTIFICATE` blocks.
fn pem<'a>(certs: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = String::new();
    for der in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            // base64 output is ASCII.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        writeln!(out, "-----END CERTIFICATE-----").ok();
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn der_round_trips_through_pem() {
        let ders: Vec<Vec<u8>> = vec![(0..200u8).collect(), vec![0x30, 0x03, 1, 2, 3]];
        let text = pem(ders.iter().map(|d| d.as_slice()));
        let back: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&text)
            .map(|c| c.unwrap().as_ref().to_vec())
            .collect();
        assert_eq!(back, ders);
        assert!(String::from_utf8(text)
            .unwrap()
            .lines()
            .all(|l| l.len() <= 64));
    }
}
