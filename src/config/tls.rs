//! The SIP-over-TLS keys: `sip.tls_listen`, `sip.tls_cert`, `sip.tls_key`,
//! `trunk.transport` and `trunk.tls_ca`. The PEM files are read and checked
//! here, with the rest of the configuration, before any socket is bound: a
//! certificate that does not parse, or a key that is not the certificate's,
//! is a configuration error naming its key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ConfigError, SipConfig};

/// How SIP reaches a peer: `trunk.transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The `transport=` URI parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PEM file as read when the configuration was loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

/// The contents stay out of logs and `Debug` (a private key is one of them).
impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

/// SIP over TLS: the address and the certificate chain with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    pub listen: SocketAddr,
    pub cert: PemFile,
    pub key: PemFile,
}

pub(super) fn transport(value: &str) -> Result<Transport, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        "tls" => Ok(Transport::Tls),
        other => Err(ConfigError::invalid(
            "trunk.transport",
            format!("`{other}` is not one of udp, tcp, tls"),
        )),
    }
}

/// `sip.tls_listen` with its certificate and key, read and checked.
pub(super) fn tls_listen(c: &SipConfig) -> Result<Option<TlsListen>, ConfigError> {
    let listen = match c.tls_listen.trim() {
        "" => return Ok(None),
        addr => addr.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid("sip.tls_listen", format!("`{addr}` is not IP:PORT"))
        })?,
    };
    // SIP over TCP holds sip.listen's port already.
    let same_port = c.listen.parse::<SocketAddr>().is_ok_and(|sip| {
        sip.port() == listen.port()
            && listen.port() != 0
            && (sip.ip() == listen.ip()
                || sip.ip().is_unspecified()
                || listen.ip().is_unspecified())
    });
    if same_port {
        return Err(ConfigError::invalid(
            "sip.tls_listen",
            format!(
                "port {} is sip.listen's (SIP over TCP listens there)",
                listen.port()
            ),
        ));
    }
    let (cert, key) = cert_and_key(
        ("sip.tls_cert", &c.tls_cert),
        ("sip.tls_key", &c.tls_key),
        "sip.tls_listen",
    )?;
    Ok(Some(TlsListen { listen, cert, key }))
}

/// A certificate chain and its private key, both named (`cert`, `key`:
/// the key and the path), read and checked to belong together; `needed_by`
/// is the key that asked for them. Shared by SIP over TLS and HTTPS.
pub(super) fn cert_and_key(
    (cert_key, cert_path): (&str, &Path),
    (key_key, key_path): (&str, &Path),
    needed_by: &str,
) -> Result<(PemFile, PemFile), ConfigError> {
    for (name, path) in [(cert_key, cert_path), (key_key, key_path)] {
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                name,
                format!("{needed_by} needs a certificate chain and its private key (PEM files)"),
            ));
        }
    }
    let cert = read(cert_key, cert_path)?;
    let chain = certificates(cert_key, &cert)?;
    let key = read(key_key, key_path)?;
    let private = private_key(key_key, &key)?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "{} is not the private key of the certificate in {}",
                key.path.display(),
                cert.path.display()
            ),
            other => format!("{}: unusable private key: {other}", key.path.display()),
        };
        ConfigError::invalid(key_key, reason)
    })?;
    Ok((cert, key))
}

/// A TLS server configuration (rustls, ring) from a chain and key that
/// [`cert_and_key`] accepted when the configuration was loaded.
pub fn server_config(cert: &PemFile, key: &PemFile) -> Result<rustls::ServerConfig, rustls::Error> {
    let chain = CertificateDer::pem_slice_iter(&cert.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| rustls::Error::General(format!("{}: {e}", cert.path.display())))?;
    let private = PrivateKeyDer::from_pem_slice(&key.pem)
        .map_err(|e| rustls::Error::General(format!("{}: {e}", key.path.display())))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)
}

/// `trunk.tls_ca`, read and checked; `None` when empty (the system's roots).
pub(super) fn tls_ca(path: &Path) -> Result<Option<PemFile>, ConfigError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let file = read("trunk.tls_ca", path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates("trunk.tls_ca", &file)? {
        roots.add(cert).map_err(|e| {
            ConfigError::invalid(
                "trunk.tls_ca",
                format!("{}: not a CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(Some(file))
}

fn read(key: &str, path: &Path) -> Result<PemFile, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?;
    Ok(PemFile {
        path: path.to_owned(),
        pem,
    })
}

/// Every `CERTIFICATE` block, at least one.
fn certificates(key: &str, file: &PemFile) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(&file.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::invalid(
                key,
                format!("{}: not a PEM certificate: {e}", file.path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{}: no PEM CERTIFICATE in it", file.path.display()),
        ));
    }
    Ok(certs)
}

/// The private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA
/// PRIVATE KEY`), the forms the TLS listener loads.
fn private_key(key_key: &str, file: &PemFile) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bad = |reason: String| ConfigError::invalid(key_key, reason);
    let key = PrivateKeyDer::from_pem_slice(&file.pem).map_err(|e| {
        bad(format!(
            "{}: no PEM private key in it: {e}",
            file.path.display()
        ))
    })?;
    match key {
        PrivateKeyDer::Sec1(_) => Err(bad(format!(
            "{}: an `EC PRIVATE KEY` (SEC1) is not supported; convert it to PKCS#8 \
             (openssl pkcs8 -topk8 -nocrypt)",
            file.path.display()
        ))),
        key => Ok(key),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Settings};
    use super::*;

    /// A directory of its own for one test's files.
    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("confgate-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A self-signed certificate and its key, written as `cert.pem` and `key.pem`.
    fn pair(d: &Path, name: &str) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let (cert, key) = (
            d.join(format!("{name}-cert.pem")),
            d.join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn load(overrides: &[String]) -> Result<Settings, ConfigError> {
        Config::load(None, overrides)
    }

    fn tls(cert: &Path, key: &Path) -> Vec<String> {
        vec![
            "sip.tls_listen=127.0.0.1:0".to_owned(),
            format!("sip.tls_cert={}", cert.display()),
            format!("sip.tls_key={}", key.display()),
        ]
    }

    fn error(overrides: &[String]) -> String {
        load(overrides).unwrap_err().to_string()
    }

    fn web(cert: &Path, key: &Path) -> Vec<String> {
        vec![
            "web.listen=127.0.0.1:0".to_owned(),
            "control.token=0123456789abcdef".to_owned(),
            format!("web.tls_cert={}", cert.display()),
            format!("web.tls_key={}", key.display()),
        ]
    }

    #[test]
    fn https_for_the_web_endpoint() {
        let d = dir("web");
        let (cert, key) = pair(&d, "a");
        let (_, other_key) = pair(&d, "b");
        let s = load(&web(&cert, &key)).unwrap();
        let (c, k) = s.web.expect("web on").tls.expect("https");
        assert_eq!(c.path, cert);
        server_config(&c, &k).expect("a server configuration");
        // Both or neither.
        let mut only_cert = web(&cert, &key);
        only_cert.pop();
        let e = error(&only_cert);
        assert!(e.starts_with("web.tls_key:"), "{e}");
        let mut only_key = web(&cert, &key);
        only_key.remove(2);
        let e = error(&only_key);
        assert!(e.starts_with("web.tls_cert:"), "{e}");
        // A key of another certificate, a file that is not there.
        let e = error(&web(&cert, &other_key));
        assert!(
            e.starts_with("web.tls_key:") && e.contains("not the private key"),
            "{e}"
        );
        let e = error(&web(&d.join("none.pem"), &key));
        assert!(e.starts_with("web.tls_cert:"), "{e}");
    }

    #[test]
    fn off_by_default() {
        let s = load(&[]).unwrap();
        assert!(s.sip_tls.is_none());
        assert_eq!(s.trunk.transport, Transport::Udp);
        assert!(s.trunk.tls_ca.is_none());
    }

    #[test]
    fn a_matching_pair_loads() {
        let d = dir("ok");
        let (cert, key) = pair(&d, "a");
        let s = load(&tls(&cert, &key)).unwrap();
        let t = s.sip_tls.expect("tls on");
        assert_eq!(t.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(t.cert.path, cert);
        assert!(t.key.pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        // The key stays out of Debug.
        assert!(!format!("{t:?}").contains("PRIVATE"), "{t:?}");
    }

    #[test]
    fn tls_listen_needs_cert_and_key() {
        let d = dir("missing-keys");
        let (cert, key) = pair(&d, "a");
        let only_listen = vec!["sip.tls_listen=127.0.0.1:5061".to_owned()];
        assert!(error(&only_listen).starts_with("sip.tls_cert:"));
        let mut no_key = tls(&cert, &key);
        no_key[2] = "sip.tls_key=".into();
        assert!(
            error(&no_key).starts_with("sip.tls_key:"),
            "{}",
            error(&no_key)
        );
        let mut clash = tls(&cert, &key);
        clash[0] = "sip.tls_listen=0.0.0.0:5060".into();
        assert!(
            error(&clash).starts_with("sip.tls_listen:"),
            "{}",
            error(&clash)
        );
        let mut bad_addr = tls(&cert, &key);
        bad_addr[0] = "sip.tls_listen=5061".into();
        assert!(error(&bad_addr).starts_with("sip.tls_listen:"));
        // Cert and key without tls_listen: nothing is read.
        let mut off = tls(&d.join("nope.pem"), &d.join("nope.pem"));
        off[0] = "sip.tls_listen=".into();
        assert!(load(&off).unwrap().sip_tls.is_none());
    }

    #[test]
    fn missing_cert_file_is_named() {
        let d = dir("missing-file");
        let (_, key) = pair(&d, "a");
        let e = error(&tls(&d.join("absent.pem"), &key));
        assert!(e.starts_with("sip.tls_cert:"), "{e}");
        assert!(e.contains("absent.pem"), "{e}");
        let (cert, _) = pair(&d, "b");
        let e = error(&tls(&cert, &d.join("absent-key.pem")));
        assert!(e.starts_with("sip.tls_key:"), "{e}");
    }

    #[test]
    fn garbage_pem_is_named() {
        let d = dir("garbage");
        let (cert, key) = pair(&d, "a");
        let junk = d.join("junk.pem");
        std::fs::write(&junk, "this is not a certificate\n").unwrap();
        let e = error(&tls(&junk, &key));
        assert!(e.starts_with("sip.tls_cert:"), "{e}");
        let e = error(&tls(&cert, &junk));
        assert!(e.starts_with("sip.tls_key:"), "{e}");
        // A PEM block whose body is not base64.
        let broken = d.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = error(&tls(&broken, &key));
        assert!(e.starts_with("sip.tls_cert:"), "{e}");
        // A certificate given as the key.
        let e = error(&tls(&cert, &cert));
        assert!(e.starts_with("sip.tls_key:"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_named() {
        let d = dir("mismatch");
        let (cert, _) = pair(&d, "a");
        let (_, other_key) = pair(&d, "b");
        let e = error(&tls(&cert, &other_key));
        assert!(e.starts_with("sip.tls_key:"), "{e}");
        assert!(e.contains("not the private key"), "{e}");
    }

    #[test]
    fn trunk_transport_and_ca() {
        let d = dir("trunk");
        let (cert, _) = pair(&d, "a");
        let s = load(&[
            "trunk.transport=tls".to_owned(),
            format!("trunk.tls_ca={}", cert.display()),
        ])
        .unwrap();
        assert_eq!(s.trunk.transport, Transport::Tls);
        assert_eq!(s.trunk.tls_ca.map(|c| c.path), Some(cert));
        let e = error(&["trunk.transport=sctp".to_owned()]);
        assert!(e.starts_with("trunk.transport:"), "{e}");
        let e = error(&[format!("trunk.tls_ca={}", d.join("absent.pem").display())]);
        assert!(e.starts_with("trunk.tls_ca:"), "{e}");
        let junk = d.join("junk.pem");
        std::fs::write(&junk, "nothing here").unwrap();
        let e = error(&[format!("trunk.tls_ca={}", junk.display())]);
        assert!(e.starts_with("trunk.tls_ca:"), "{e}");
    }

    #[test]
    fn tls_changes_take_a_restart() {
        let d = dir("reload");
        let (cert, key) = pair(&d, "a");
        let old = load(&[]).unwrap();
        let mut ov = tls(&cert, &key);
        ov.push("trunk.transport=tcp".to_owned());
        let (applied, restart) = old.reloaded(load(&ov).unwrap());
        assert!(applied.sip_tls.is_none());
        assert_eq!(applied.trunk.transport, Transport::Udp);
        assert_eq!(
            restart,
            vec![
                "sip.tls_listen / sip.tls_cert / sip.tls_key",
                "trunk.transport"
            ]
        );
    }
}
