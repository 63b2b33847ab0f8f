//! Test certificates for SIP over TLS, made fresh by each test: a CA, and
//! a server certificate it signs for 127.0.0.1 and localhost.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// PEM files in a directory of their own.
pub struct TestPki {
    /// The CA certificate: what a peer verifies with.
    pub ca: PathBuf,
    /// The server's certificate followed by the CA's (a chain).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
    /// The server's certificate and key in one file (what baresip loads).
    pub combined: PathBuf,
}

/// A CA named `name` and a server certificate for 127.0.0.1 and localhost,
/// written under `dir`.
pub fn make(dir: &Path, name: &str) -> TestPki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} server"));
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let pki = TestPki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
        combined: dir.join(format!("{name}-combined.pem")),
    };
    std::fs::write(&pki.ca, ca.pem()).expect("write ca");
    std::fs::write(&pki.cert, format!("{}{}", cert.pem(), ca.pem())).expect("write cert");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
    std::fs::write(
        &pki.combined,
        format!("{}{}", cert.pem(), key.serialize_pem()),
    )
    .expect("write combined");
    pki
}
