//! Configuration: the documented `config.toml` (embedded as the default),
//! `--set KEY=VALUE` overrides, and validation that names the faulty key
//! before any socket is bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::media::g711::Codec;

/// The documented default configuration, built into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config.toml");

/// Why a configuration could not be used. Every variant names where the fault is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("--set {0}: expected KEY=VALUE")]
    BadOverride(String),
    #[error("--set {0}: no such key")]
    UnknownOverride(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    pub rtp: RtpConfig,
    pub media: MediaConfig,
    pub prompts: PromptsConfig,
    pub calls: CallsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    pub listen: String,
    pub public_address: String,
    pub early_media: bool,
    pub early_media_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpConfig {
    pub port_range: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub codecs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsConfig {
    pub dir: PathBuf,
    pub voice: String,
    pub words_per_minute: u32,
    pub text: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    pub idle_timeout_secs: u64,
}

/// The configuration after validation, in the types the daemon uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sip_listen: SocketAddr,
    pub public_address: Option<IpAddr>,
    pub early_media: Option<Duration>,
    pub rtp_ports: RangeInclusive<u16>,
    pub codecs: Vec<Codec>,
    pub prompts_dir: PathBuf,
    pub voice: String,
    pub words_per_minute: u32,
    pub prompt_texts: BTreeMap<String, String>,
    pub idle_timeout: Duration,
}

/// Prompts the call flow plays; each must have a text.
pub const REQUIRED_PROMPTS: &[&str] = &[
    "welcome",
    "invalid_pin",
    "goodbye",
    "joined",
    "only_participant",
    "conference_full",
    "try_later",
];

impl Config {
    /// Load `path` (or the embedded default), apply `--set` overrides, validate.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Settings, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
            ),
            None => ("the built-in configuration".to_owned(), DEFAULT_TOML.into()),
        };
        Self::from_toml(&origin, &text, overrides)?.validate()
    }

    /// Parse TOML text and apply overrides (no validation of values yet).
    pub fn from_toml(
        origin: &str,
        text: &str,
        overrides: &[String],
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_owned(),
                    message: e.message().to_owned(),
                })?;
        for ov in overrides {
            apply_override(&mut table, ov)?;
        }
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::invalid(&key, e.into_inner().message().to_owned())
        })
    }

    /// Check every value and convert it; the first fault is reported by key.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let sip_listen: SocketAddr = self.sip.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "sip.listen",
                format!("`{}` is not IP:PORT", self.sip.listen),
            )
        })?;
        let public_address = match self.sip.public_address.trim() {
            "" => None,
            s => Some(s.parse::<IpAddr>().map_err(|_| {
                ConfigError::invalid("sip.public_address", format!("`{s}` is not an IP address"))
            })?),
        };
        let early_media = match (self.sip.early_media, self.sip.early_media_ms) {
            (false, _) => None,
            (true, ms) if ms <= 60_000 => Some(Duration::from_millis(ms)),
            (true, ms) => {
                return Err(ConfigError::invalid(
                    "sip.early_media_ms",
                    format!("{ms} ms is longer than the 60000 ms a trunk waits"),
                ))
            }
        };
        let rtp_ports = parse_port_range(&self.rtp.port_range).ok_or_else(|| {
            ConfigError::invalid(
                "rtp.port_range",
                format!(
                    "`{}` is not FIRST-LAST with 1024 <= FIRST < LAST <= 65535",
                    self.rtp.port_range
                ),
            )
        })?;
        let mut codecs = Vec::new();
        for name in &self.media.codecs {
            let codec = Codec::from_name(name).ok_or_else(|| {
                ConfigError::invalid(
                    "media.codecs",
                    format!("unknown codec `{name}` (PCMU, PCMA)"),
                )
            })?;
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
        if codecs.is_empty() {
            return Err(ConfigError::invalid(
                "media.codecs",
                "needs at least one codec",
            ));
        }
        if self.prompts.voice.trim().is_empty() {
            return Err(ConfigError::invalid("prompts.voice", "must not be empty"));
        }
        if !(80..=450).contains(&self.prompts.words_per_minute) {
            return Err(ConfigError::invalid(
                "prompts.words_per_minute",
                format!("{} is outside 80-450", self.prompts.words_per_minute),
            ));
        }
        for name in REQUIRED_PROMPTS {
            match self.prompts.text.get(*name) {
                Some(t) if !t.trim().is_empty() => {}
                _ => {
                    return Err(ConfigError::invalid(
                        &format!("prompts.text.{name}"),
                        "missing or empty",
                    ))
                }
            }
        }
        if self.calls.idle_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "calls.idle_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(Settings {
            sip_listen,
            public_address,
            early_media,
            rtp_ports,
            codecs,
            prompts_dir: self.prompts.dir,
            voice: self.prompts.voice,
            words_per_minute: self.prompts.words_per_minute,
            prompt_texts: self.prompts.text,
            idle_timeout: Duration::from_secs(self.calls.idle_timeout_secs),
        })
    }
}

/// `sip.listen=127.0.0.1:5070`: walk the dotted key (it must exist) and set the
/// value, read as TOML when it parses as such, else as a plain string.
fn apply_override(table: &mut toml::Table, ov: &str) -> Result<(), ConfigError> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(ov.to_owned()))?;
    let key = key.trim();
    let mut parts = key.split('.').peekable();
    let mut node = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            let Some(slot) = node.get_mut(part) else {
                return Err(ConfigError::UnknownOverride(key.to_owned()));
            };
            *slot = parse_value(raw);
            return Ok(());
        }
        node = match node.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(ConfigError::UnknownOverride(key.to_owned())),
        };
    }
    Err(ConfigError::UnknownOverride(key.to_owned()))
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn parse_port_range(s: &str) -> Option<RangeInclusive<u16>> {
    let (a, b) = s.split_once('-')?;
    let first: u16 = a.trim().parse().ok()?;
    let last: u16 = b.trim().parse().ok()?;
    (first >= 1024 && first < last).then_some(first..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(overrides: &[&str]) -> Result<Settings, ConfigError> {
        let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::load(None, &ov)
    }

    #[test]
    fn embedded_default_is_valid() {
        let s = load(&[]).expect("default config");
        assert_eq!(s.sip_listen, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(s.codecs, vec![Codec::Pcmu, Codec::Pcma]);
        assert_eq!(s.rtp_ports, 20000..=29999);
    }

    #[test]
    fn overrides_apply_by_dotted_key() {
        let s = load(&[
            "sip.listen=127.0.0.1:5070",
            "media.codecs=[\"PCMA\"]",
            "sip.early_media=false",
        ])
        .unwrap();
        assert_eq!(s.sip_listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(s.codecs, vec![Codec::Pcma]);
        assert!(s.early_media.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let msg = |ov: &[&str]| load(ov).unwrap_err().to_string();
        assert!(msg(&["sip.listen=nonsense"]).starts_with("sip.listen:"));
        assert!(msg(&["rtp.port_range=9-5"]).starts_with("rtp.port_range:"));
        assert!(msg(&["media.codecs=[\"G729\"]"]).starts_with("media.codecs:"));
        assert!(msg(&["sip.early_media=7"]).starts_with("sip.early_media:"));
        assert!(msg(&["sip.listn=1"]).contains("sip.listn: no such key"));
        assert!(msg(&["prompts.text.welcome="]).starts_with("prompts.text.welcome:"));
        assert!(msg(&["novalue"]).contains("KEY=VALUE"));
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let text = DEFAULT_TOML.replace("[calls]", "[calls]\nbogus = 1");
        let err = Config::from_toml("x.toml", &text, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("calls") && err.contains("bogus"), "{err}");
    }
}
