//! Configuration: the documented `config.toml` (embedded as the default),
//! `--set KEY=VALUE` overrides, and validation that names the faulty key
//! before any socket is bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::call::admission::AdmissionRules;
use crate::dtmf::DtmfMode;
use crate::ivr::directory::{Cidr, Directory, RoomEntry, RoomRules};
use crate::ivr::keypad::{KeyAction, KeyBindings, KeyError};
use crate::ivr::pin::PinRules;
use crate::media::codec::Codec;
use crate::rtp::sdes::Policy;

mod cluster;
mod tls;
pub use cluster::{ClusterConfig, ClusterSettings};
pub use tls::{server_config as tls_server_config, PemFile, TlsListen, Transport};

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
    pub dtmf: DtmfConfig,
    pub pin: PinConfig,
    pub rooms: RoomsConfig,
    pub control: ControlConfig,
    pub metrics: MetricsConfig,
    pub web: WebConfig,
    pub shutdown: ShutdownConfig,
    pub trunk: TrunkConfig,
    pub recordings: RecordingsConfig,
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    pub listen: String,
    pub room_links: bool,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    pub socket: PathBuf,
    pub tcp: String,
    pub token: String,
    pub token_file: PathBuf,
    pub max_clients: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub proxy: String,
    pub username: String,
    pub password: String,
    pub from_user: String,
    pub from_domain: String,
    pub register: bool,
    pub register_expires_secs: u32,
    pub ring_timeout_secs: u64,
    pub allow: Vec<String>,
    pub max_outbound: usize,
    pub dials_per_minute: usize,
    // SIP over TLS to the trunk.
    pub transport: String,
    pub tls_ca: PathBuf,
    pub srtp: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    pub listen: String,
    pub public_address: String,
    pub early_media: bool,
    pub early_media_ms: u64,
    pub allow: Vec<String>,
    pub timer_t1_ms: u64,
    pub timer_t4_ms: u64,
    pub user_agent: String,
    // SIP over TLS.
    pub tls_listen: String,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpConfig {
    pub port_range: String,
    pub timeout_secs: u64,
    pub strict: bool,
    pub quality_alarm_mos: f64,
    pub srtp: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub codecs: Vec<String>,
    pub threads: usize,
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
    pub max_duration_secs: u64,
    pub max_calls: usize,
    pub max_per_source: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtmfConfig {
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    pub min_len: usize,
    pub max_len: usize,
    pub attempts: u32,
    pub first_digit_timeout_secs: u64,
    pub inter_digit_timeout_secs: u64,
    pub caller_failures: usize,
    pub number_failures: usize,
    pub failure_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    pub open: bool,
    pub trusted: Vec<String>,
    pub direct_uri: String,
    pub upstream: String,
    pub max_members: usize,
    pub announce: String,
    pub max_duration_secs: u64,
    pub announce_names: bool,
    pub keys: BTreeMap<String, String>,
    pub room: Vec<RoomConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    pub id: String,
    pub pin: String,
    pub moderator_pin: Option<String>,
    #[serde(default)]
    pub wait_for_moderator: bool,
    #[serde(default)]
    pub end_with_moderator: bool,
    #[serde(default)]
    pub record: bool,
}

/// Limits of the PIN guessing defence.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleRules {
    pub caller_failures: usize,
    pub number_failures: usize,
    pub window: Duration,
}

/// SIP timers (RFC 3261 §17): T1, the round-trip estimate, from which
/// retransmission intervals and transaction lifetimes (64·T1) follow; T4,
/// how long a message may stay in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipTimers {
    pub t1: Duration,
    pub t4: Duration,
}

/// The configuration after validation, in the types the daemon uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sip_listen: SocketAddr,
    /// SIP over TLS: where it listens and with which certificate; `None`: off.
    pub sip_tls: Option<TlsListen>,
    /// `User-Agent` and `Server` in what confgate sends.
    pub user_agent: String,
    pub sip_timers: SipTimers,
    pub public_address: Option<IpAddr>,
    pub early_media: Option<Duration>,
    pub rtp_ports: RangeInclusive<u16>,
    pub codecs: Vec<Codec>,
    /// Media threads (each with its share of calls and rooms); at least 1.
    pub media_threads: usize,
    pub prompts_dir: PathBuf,
    pub voice: String,
    pub words_per_minute: u32,
    pub prompt_texts: BTreeMap<String, String>,
    pub idle_timeout: Duration,
    /// A call is ended this long after it was answered (a warning a minute before).
    pub max_call: Option<Duration>,
    pub dtmf_mode: DtmfMode,
    pub pin: PinRules,
    pub throttle: ThrottleRules,
    pub directory: Directory,
    pub rtp_timeout: Duration,
    /// Strict RTP source learning (see `rtp::learning`).
    pub rtp_strict: bool,
    /// `member_quality` fires when a member's MOS stays below this for 10 s.
    pub quality_alarm_mos: f64,
    /// SRTP (SDES) on calls that come in.
    pub srtp: Policy,
    /// Who may call and how many calls at once.
    pub admission: AdmissionRules,
    pub max_members: usize,
    /// Join/leave tones for the others.
    pub announce_tones: bool,
    /// Ask callers their name after the PIN, and announce it.
    pub announce_names: bool,
    /// Keypad controls in rooms.
    pub keys: Arc<KeyBindings>,
    /// Where recordings are written.
    pub recordings_dir: PathBuf,
    pub control: ControlSettings,
    /// Where Prometheus scrapes `/metrics`; `None`: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// The web endpoint; `None`: off.
    pub web: Option<WebSettings>,
    pub trunk: TrunkSettings,
    /// How long `drain` waits for the last call before hanging up the rest.
    pub drain: Duration,
    /// The room directory shared with other nodes; `None`: standalone.
    pub cluster: Option<ClusterSettings>,
    /// Where these settings were read from, to read them again on reload.
    pub origin: Origin,
}

/// The file and `--set` overrides a configuration was loaded from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `None`: the built-in configuration alone.
    pub path: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// Where the control server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// The Unix socket (created with mode 0600); `None`: no Unix socket.
    pub socket: Option<PathBuf>,
    /// TCP address, with the token every client must send first (empty
    /// when it is in `token_file`).
    pub tcp: Option<(SocketAddr, String)>,
    /// Where the token is, if not in the configuration.
    pub token_file: Option<PathBuf>,
    /// `control.token` as configured (may be empty).
    pub token: String,
    pub max_clients: usize,
}

/// Where the web endpoint listens, and its certificate for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    pub listen: SocketAddr,
    /// The join page's `?room=NAME` link lets a browser in without a PIN
    /// (for deployments where whoever has the link may join).
    pub room_links: bool,
    /// `web.tls_cert` and `web.tls_key`; `None`: plain HTTP.
    pub tls: Option<(PemFile, PemFile)>,
}

/// The trunk outbound calls go through, and the rules they must pass.
#[derive(Debug, Clone)]
pub struct TrunkSettings {
    /// `host[:port]` (or `IP:PORT`) of the trunk's proxy; `None`: no trunk,
    /// only full `sip:` URIs can be dialled.
    pub proxy: Option<String>,
    pub username: String,
    pub password: String,
    pub from_user: String,
    /// From host; empty: the proxy's host.
    pub from_domain: String,
    pub register: bool,
    pub register_expires: u32,
    pub ring_timeout: Duration,
    /// Number prefixes (`+1555`), patterns with `X` for any digit
    /// (`+1555XXXXXXX`) or `*` (anything); empty: nothing may be dialled.
    pub allow: Vec<String>,
    pub max_outbound: usize,
    pub dials_per_minute: usize,
    /// How SIP reaches the proxy (calls to it and REGISTER).
    pub transport: Transport,
    /// The CA certificates (PEM) a TLS peer must chain to, from
    /// `trunk.tls_ca`; `None`: the system's roots.
    pub tls_ca: Option<PemFile>,
    /// SRTP (SDES) on calls placed.
    pub srtp: Policy,
}

/// The longest `shutdown.drain_secs`.
const MAX_DRAIN_SECS: u64 = 30 * 24 * 3600;

/// Prompts the call flow plays; each must have a text.
pub const REQUIRED_PROMPTS: &[&str] = &[
    "welcome",
    "invalid_pin",
    "goodbye",
    "joined",
    "only_participant",
    "conference_full",
    "conference_locked",
    "conference_ended",
    "try_later",
    "participants",
    "one_participant",
    "waiting_for_moderator",
    "muted",
    "unmuted",
    "now_locked",
    "now_unlocked",
    "all_muted",
    "all_unmuted",
    "member_removed",
    "moderator_only",
    "time_warning",
    "say_your_name",
    "has_joined",
    "has_left",
];

impl Config {
    /// Load the embedded default with `path` (if any) merged over it, apply
    /// `--set` overrides, validate.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Settings, ConfigError> {
        let mut table = default_table()?;
        if let Some(p) = path {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            merge(&mut table, parse_table(&p.display().to_string(), &text)?);
        }
        let mut settings = Self::from_table(table, overrides)?.validate()?;
        settings.origin = Origin {
            path: path.map(Path::to_owned),
            overrides: overrides.to_vec(),
        };
        Ok(settings)
    }

    /// Parse TOML text, merge it over the embedded default (so it needs only
    /// the keys it changes) and apply overrides (no validation of values yet).
    pub fn from_toml(
        origin: &str,
        text: &str,
        overrides: &[String],
    ) -> Result<Config, ConfigError> {
        let mut table = default_table()?;
        merge(&mut table, parse_table(origin, text)?);
        Self::from_table(table, overrides)
    }

    /// Apply overrides to a complete table and deserialize it. Unknown keys
    /// and values of the wrong type are reported by their dotted path.
    fn from_table(mut table: toml::Table, overrides: &[String]) -> Result<Config, ConfigError> {
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
        if !(10..=4_000).contains(&self.sip.timer_t1_ms) {
            return Err(ConfigError::invalid(
                "sip.timer_t1_ms",
                format!("{} ms is outside 10-4000 (T2 is 4 s)", self.sip.timer_t1_ms),
            ));
        }
        if !(10..=60_000).contains(&self.sip.timer_t4_ms) {
            return Err(ConfigError::invalid(
                "sip.timer_t4_ms",
                format!("{} ms is outside 10-60000", self.sip.timer_t4_ms),
            ));
        }
        let sip_timers = SipTimers {
            t1: Duration::from_millis(self.sip.timer_t1_ms),
            t4: Duration::from_millis(self.sip.timer_t4_ms),
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
                    format!("unknown codec `{name}` (PCMU, PCMA, G722, opus)"),
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
        if !(1.0..=4.5).contains(&self.rtp.quality_alarm_mos) {
            return Err(ConfigError::invalid(
                "rtp.quality_alarm_mos",
                format!("{} is outside 1.0-4.5", self.rtp.quality_alarm_mos),
            ));
        }
        if self.calls.idle_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "calls.idle_timeout_secs",
                "must be at least 1",
            ));
        }
        let dtmf_mode = match self.dtmf.mode.as_str() {
            "auto" => DtmfMode::Auto,
            "rfc4733" => DtmfMode::Rfc4733,
            "info" => DtmfMode::Info,
            "inband" => DtmfMode::Inband,
            other => {
                return Err(ConfigError::invalid(
                    "dtmf.mode",
                    format!("`{other}` is not one of auto, rfc4733, info, inband"),
                ))
            }
        };
        let srtp = srtp_policy("rtp.srtp", &self.rtp.srtp)?;
        let pin = pin_rules(&self.pin)?;
        let throttle = throttle_rules(&self.pin)?;
        let directory = directory(&self.rooms, &pin)?;
        if self.rtp.timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "rtp.timeout_secs",
                "must be at least 1",
            ));
        }
        if self.rooms.max_members < 2 {
            return Err(ConfigError::invalid(
                "rooms.max_members",
                "a conference needs room for 2",
            ));
        }
        let announce_tones = match self.rooms.announce.as_str() {
            "tone" => true,
            "none" => false,
            other => {
                return Err(ConfigError::invalid(
                    "rooms.announce",
                    format!("`{other}` is not tone or none"),
                ))
            }
        };
        let keys = key_bindings(&self.rooms.keys)?;
        let max_call = match self.calls.max_duration_secs {
            0 => None,
            n if n < 120 => {
                return Err(ConfigError::invalid(
                    "calls.max_duration_secs",
                    "must be 0 (no limit) or at least 120 (a warning comes a minute before)",
                ))
            }
            n => Some(Duration::from_secs(n)),
        };
        if self.recordings.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("recordings.dir", "must not be empty"));
        }
        let control = control_settings(&self.control)?;
        let web = web_settings(&self.web, &self.control)?;
        let metrics_listen = match self.metrics.listen.trim() {
            "" => None,
            addr => Some(addr.parse().map_err(|_| {
                ConfigError::invalid("metrics.listen", format!("`{addr}` is not IP:PORT"))
            })?),
        };
        let trunk = trunk_settings(&self.trunk)?;
        let admission = AdmissionRules {
            max_calls: self.calls.max_calls,
            max_per_source: self.calls.max_per_source,
            allow: cidrs("sip.allow", &self.sip.allow)?,
        };
        if !(1..=MAX_DRAIN_SECS).contains(&self.shutdown.drain_secs) {
            return Err(ConfigError::invalid(
                "shutdown.drain_secs",
                format!("must be 1 to {MAX_DRAIN_SECS} (30 days)"),
            ));
        }
        let user_agent = self
            .sip
            .user_agent
            .trim()
            .replace("{version}", env!("CARGO_PKG_VERSION"));
        if user_agent.is_empty() || user_agent.chars().any(|c| c.is_control()) {
            return Err(ConfigError::invalid(
                "sip.user_agent",
                "must be one line of text (`confgate` hides the version)",
            ));
        }
        let sip_tls = tls::tls_listen(&self.sip)?;
        let cluster = cluster::cluster_settings(
            &self.cluster,
            &self.sip,
            sip_listen,
            public_address,
            control.tcp.as_ref().map(|(addr, _)| *addr),
        )?;
        Ok(Settings {
            cluster,
            user_agent,
            control,
            metrics_listen,
            web,
            drain: Duration::from_secs(self.shutdown.drain_secs),
            origin: Origin::default(),
            trunk,
            sip_listen,
            sip_tls,
            sip_timers,
            public_address,
            early_media,
            rtp_ports,
            codecs,
            media_threads: match self.media.threads {
                0 => crate::conference::default_threads(),
                n => n,
            },
            prompts_dir: self.prompts.dir,
            voice: self.prompts.voice,
            words_per_minute: self.prompts.words_per_minute,
            prompt_texts: self.prompts.text,
            idle_timeout: Duration::from_secs(self.calls.idle_timeout_secs),
            dtmf_mode,
            pin,
            throttle,
            directory,
            rtp_timeout: Duration::from_secs(self.rtp.timeout_secs),
            rtp_strict: self.rtp.strict,
            quality_alarm_mos: self.rtp.quality_alarm_mos,
            srtp,
            admission,
            max_members: self.rooms.max_members,
            announce_tones,
            announce_names: self.rooms.announce_names,
            keys: Arc::new(keys),
            max_call,
            recordings_dir: self.recordings.dir,
        })
    }
}

impl Settings {
    /// What a reload may apply of `new`: everything but the keys that take
    /// a restart (sockets bound, threads started, the registration), which
    /// keep their running values; the keys named are those that differ.
    pub fn reloaded(&self, mut new: Settings) -> (Settings, Vec<&'static str>) {
        let mut restart = Vec::new();
        macro_rules! keep {
            ($($field:ident).+ => $key:literal) => {
                if self.$($field).+ != new.$($field).+ {
                    restart.push($key);
                    new.$($field).+ = self.$($field).+.clone();
                }
            };
        }
        keep!(sip_listen => "sip.listen");
        keep!(sip_tls => "sip.tls_listen / sip.tls_cert / sip.tls_key");
        keep!(trunk.transport => "trunk.transport");
        keep!(trunk.tls_ca => "trunk.tls_ca");
        keep!(user_agent => "sip.user_agent");
        keep!(public_address => "sip.public_address");
        keep!(sip_timers => "sip.timer_t1_ms / sip.timer_t4_ms");
        keep!(rtp_ports => "rtp.port_range");
        keep!(media_threads => "media.threads");
        keep!(prompts_dir => "prompts.dir");
        keep!(recordings_dir => "recordings.dir");
        keep!(control => "control");
        keep!(metrics_listen => "metrics.listen");
        keep!(web => "web");
        keep!(trunk.proxy => "trunk.proxy");
        keep!(trunk.username => "trunk.username");
        keep!(trunk.password => "trunk.password");
        keep!(trunk.register => "trunk.register");
        keep!(trunk.register_expires => "trunk.register_expires_secs");
        keep!(cluster => "cluster");
        (new, restart)
    }
}

fn srtp_policy(key: &str, value: &str) -> Result<Policy, ConfigError> {
    Policy::from_name(value).ok_or_else(|| {
        ConfigError::invalid(
            key,
            format!("`{value}` is not one of off, optional, required"),
        )
    })
}

fn control_settings(c: &ControlConfig) -> Result<ControlSettings, ConfigError> {
    let socket = (!c.socket.as_os_str().is_empty()).then(|| c.socket.clone());
    let tcp = match c.tcp.trim() {
        "" => None,
        addr => {
            let addr: SocketAddr = addr.parse().map_err(|_| {
                ConfigError::invalid("control.tcp", format!("`{addr}` is not IP:PORT"))
            })?;
            // A token file is read when the server starts (by the daemon,
            // which may be the only one allowed to read it).
            if c.token_file.as_os_str().is_empty() {
                check_token("control.token", &c.token, "control.tcp")?;
            }
            Some((addr, c.token.clone()))
        }
    };
    if c.max_clients == 0 {
        return Err(ConfigError::invalid(
            "control.max_clients",
            "must be at least 1",
        ));
    }
    Ok(ControlSettings {
        socket,
        tcp,
        token_file: (!c.token_file.as_os_str().is_empty()).then(|| c.token_file.clone()),
        token: c.token.clone(),
        max_clients: c.max_clients,
    })
}

fn web_settings(w: &WebConfig, c: &ControlConfig) -> Result<Option<WebSettings>, ConfigError> {
    let listen = match w.listen.trim() {
        "" => return Ok(None),
        addr => addr
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::invalid("web.listen", format!("`{addr}` is not IP:PORT")))?,
    };
    // The room page's login is the control token; a token file is read
    // when the server starts, like control.tcp's.
    if c.token_file.as_os_str().is_empty() {
        check_token("control.token", &c.token, "web.listen")?;
    }
    let tls = match (
        w.tls_cert.as_os_str().is_empty(),
        w.tls_key.as_os_str().is_empty(),
    ) {
        (true, true) => None,
        _ => Some(tls::cert_and_key(
            ("web.tls_cert", &w.tls_cert),
            ("web.tls_key", &w.tls_key),
            "HTTPS",
        )?),
    };
    Ok(Some(WebSettings {
        listen,
        room_links: w.room_links,
        tls,
    }))
}

fn check_token(key: &str, token: &str, needed_by: &str) -> Result<(), ConfigError> {
    if token.len() < 16 {
        return Err(ConfigError::invalid(
            key,
            format!("{needed_by} needs a token of at least 16 characters"),
        ));
    }
    Ok(())
}

impl ControlSettings {
    /// The TCP address and the token its clients must send, read from
    /// `control.token_file` (its first line) when one is named.
    pub fn tcp_with_token(&self) -> Result<Option<(SocketAddr, String)>, ConfigError> {
        let (Some((addr, _)), Some(path)) = (&self.tcp, &self.token_file) else {
            return Ok(self.tcp.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("control.token_file", format!("{}: {e}", path.display()))
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        check_token("control.token_file", &token, "control.tcp")?;
        Ok(Some((*addr, token)))
    }

    /// The control token, wherever it is configured: the first line of
    /// `control.token_file` when one is named, else `control.token`; at
    /// least 16 characters, or an error naming the key. `needed_by` names
    /// what asks for it (`web.listen`).
    pub fn token(&self, needed_by: &str) -> Result<String, ConfigError> {
        let Some(path) = &self.token_file else {
            check_token("control.token", &self.token, needed_by)?;
            return Ok(self.token.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("control.token_file", format!("{}: {e}", path.display()))
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        check_token("control.token_file", &token, needed_by)?;
        Ok(token)
    }
}

fn trunk_settings(c: &TrunkConfig) -> Result<TrunkSettings, ConfigError> {
    let proxy = match c.proxy.trim() {
        "" => None,
        p if p.contains(char::is_whitespace) || p.contains('@') || p.starts_with("sip:") => {
            return Err(ConfigError::invalid(
                "trunk.proxy",
                format!("`{p}` is not HOST[:PORT]"),
            ))
        }
        p => Some(p.to_owned()),
    };
    if c.register && proxy.is_none() {
        return Err(ConfigError::invalid(
            "trunk.register",
            "registration needs trunk.proxy",
        ));
    }
    if c.register && c.username.is_empty() {
        return Err(ConfigError::invalid(
            "trunk.username",
            "registration needs a username",
        ));
    }
    if c.register && !(60..=86_400).contains(&c.register_expires_secs) {
        return Err(ConfigError::invalid(
            "trunk.register_expires_secs",
            format!("{} is outside 60-86400", c.register_expires_secs),
        ));
    }
    if !(1..=600).contains(&c.ring_timeout_secs) {
        return Err(ConfigError::invalid(
            "trunk.ring_timeout_secs",
            format!("{} is outside 1-600", c.ring_timeout_secs),
        ));
    }
    for (i, rule) in c.allow.iter().enumerate() {
        let ok = rule == "*"
            || (!rule.is_empty()
                && rule
                    .chars()
                    .enumerate()
                    .all(|(k, ch)| ch.is_ascii_digit() || ch == 'X' || (k == 0 && ch == '+')));
        if !ok {
            return Err(ConfigError::invalid(
                &format!("trunk.allow[{i}]"),
                format!("`{rule}` is not a number prefix, a pattern of digits and X, or *"),
            ));
        }
    }
    for (key, value) in [
        ("trunk.max_outbound", c.max_outbound),
        ("trunk.dials_per_minute", c.dials_per_minute),
    ] {
        if value == 0 {
            return Err(ConfigError::invalid(key, "must be at least 1"));
        }
    }
    Ok(TrunkSettings {
        proxy,
        username: c.username.clone(),
        password: c.password.clone(),
        from_user: c.from_user.clone(),
        from_domain: c.from_domain.clone(),
        register: c.register,
        register_expires: c.register_expires_secs,
        ring_timeout: Duration::from_secs(c.ring_timeout_secs),
        allow: c.allow.clone(),
        max_outbound: c.max_outbound,
        dials_per_minute: c.dials_per_minute,
        transport: tls::transport(&c.transport)?,
        tls_ca: tls::tls_ca(&c.tls_ca)?,
        srtp: srtp_policy("trunk.srtp", &c.srtp)?,
    })
}

fn pin_rules(c: &PinConfig) -> Result<PinRules, ConfigError> {
    if !(1..=32).contains(&c.min_len) {
        return Err(ConfigError::invalid(
            "pin.min_len",
            format!("{} is outside 1-32", c.min_len),
        ));
    }
    if !(c.min_len..=32).contains(&c.max_len) {
        return Err(ConfigError::invalid(
            "pin.max_len",
            format!("{} is outside pin.min_len-32", c.max_len),
        ));
    }
    let at_least_one = [
        ("pin.attempts", u64::from(c.attempts)),
        ("pin.first_digit_timeout_secs", c.first_digit_timeout_secs),
        ("pin.inter_digit_timeout_secs", c.inter_digit_timeout_secs),
    ];
    for (key, value) in at_least_one {
        if value == 0 {
            return Err(ConfigError::invalid(key, "must be at least 1"));
        }
    }
    Ok(PinRules {
        min_len: c.min_len,
        max_len: c.max_len,
        attempts: c.attempts,
        first_digit: Duration::from_secs(c.first_digit_timeout_secs),
        inter_digit: Duration::from_secs(c.inter_digit_timeout_secs),
    })
}

fn throttle_rules(c: &PinConfig) -> Result<ThrottleRules, ConfigError> {
    let at_least_one = [
        ("pin.caller_failures", c.caller_failures as u64),
        ("pin.number_failures", c.number_failures as u64),
        ("pin.failure_window_secs", c.failure_window_secs),
    ];
    for (key, value) in at_least_one {
        if value == 0 {
            return Err(ConfigError::invalid(key, "must be at least 1"));
        }
    }
    Ok(ThrottleRules {
        caller_failures: c.caller_failures,
        number_failures: c.number_failures,
        window: Duration::from_secs(c.failure_window_secs),
    })
}

/// A list of addresses and networks; a bad entry is named by its index.
fn cidrs(key: &str, list: &[String]) -> Result<Vec<Cidr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            Cidr::parse(t).ok_or_else(|| {
                ConfigError::invalid(
                    &format!("{key}[{i}]"),
                    format!("`{t}` is not an address or CIDR"),
                )
            })
        })
        .collect()
}

fn directory(c: &RoomsConfig, pin: &PinRules) -> Result<Directory, ConfigError> {
    let trusted = cidrs("rooms.trusted", &c.trusted)?;
    let direct_uri = match c.direct_uri.trim() {
        "" => None,
        pattern => match pattern.split_once("{id}") {
            Some((pre, post)) if !post.contains("{id}") => Some((pre.to_owned(), post.to_owned())),
            _ => {
                return Err(ConfigError::invalid(
                    "rooms.direct_uri",
                    format!("`{pattern}` must contain {{id}} once"),
                ))
            }
        },
    };
    let upstream = match c.upstream.trim() {
        "" => None,
        uri if (uri.starts_with("sip:") || uri.starts_with("sips:"))
            && uri.matches("{room}").count() == 1
            && uri.contains('@') =>
        {
            Some(uri.to_owned())
        }
        uri => {
            return Err(ConfigError::invalid(
                "rooms.upstream",
                format!(
                    "`{uri}` must be a sip: URI with {{room}} once, e.g. sip:conf_{{room}}@host"
                ),
            ))
        }
    };
    let mut rooms: Vec<RoomEntry> = Vec::new();
    let mut pins: Vec<&str> = Vec::new();
    for (i, r) in c.room.iter().enumerate() {
        let key = |field: &str| format!("rooms.room[{i}].{field}");
        if r.id.trim().is_empty() {
            return Err(ConfigError::invalid(&key("id"), "must not be empty"));
        }
        if rooms.iter().any(|have| have.id == r.id) {
            return Err(ConfigError::invalid(
                &key("id"),
                format!("room `{}` is listed twice", r.id),
            ));
        }
        for (field, value) in [
            ("pin", Some(&r.pin)),
            ("moderator_pin", r.moderator_pin.as_ref()),
        ] {
            let Some(value) = value else { continue };
            let digits = value.bytes().all(|b| b.is_ascii_digit());
            if !digits || !(pin.min_len..=pin.max_len).contains(&value.len()) {
                return Err(ConfigError::invalid(
                    &key(field),
                    format!(
                        "must be {}-{} digits (pin.min_len-pin.max_len)",
                        pin.min_len, pin.max_len
                    ),
                ));
            }
            if pins.contains(&value.as_str()) {
                return Err(ConfigError::invalid(
                    &key(field),
                    "is already the PIN of another room",
                ));
            }
            pins.push(value);
        }
        if (r.wait_for_moderator || r.end_with_moderator) && r.moderator_pin.is_none() {
            let field = match r.wait_for_moderator {
                true => "wait_for_moderator",
                false => "end_with_moderator",
            };
            return Err(ConfigError::invalid(&key(field), "needs a moderator_pin"));
        }
        rooms.push(RoomEntry {
            id: r.id.clone(),
            pin: r.pin.clone(),
            moderator_pin: r.moderator_pin.clone(),
            rules: RoomRules {
                wait_for_moderator: r.wait_for_moderator,
                end_with_moderator: r.end_with_moderator,
                record: r.record,
                max_duration: None,
                bridge: false,
            },
        });
    }
    let max_duration = match c.max_duration_secs {
        0 => None,
        n => Some(Duration::from_secs(n)),
    };
    for r in &mut rooms {
        r.rules.max_duration = max_duration;
    }
    Ok(Directory {
        open: c.open,
        rooms,
        trusted,
        direct_uri,
        upstream,
        max_duration,
    })
}

fn key_bindings(keys: &BTreeMap<String, String>) -> Result<KeyBindings, ConfigError> {
    let mut pairs = Vec::new();
    for (name, seq) in keys {
        let action = KeyAction::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = KeyAction::ALL.iter().map(|a| a.name()).collect();
                ConfigError::invalid(
                    &format!("rooms.keys.{name}"),
                    format!("no such action (one of {})", names.join(", ")),
                )
            })?;
        pairs.push((action, seq.as_str()));
    }
    KeyBindings::new(pairs).map_err(|e| {
        let action = match &e {
            KeyError::Malformed { action, .. } | KeyError::Clash { action, .. } => *action,
        };
        ConfigError::invalid(&format!("rooms.keys.{action}"), e.to_string())
    })
}

fn parse_table(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.message().to_owned(),
        })
}

fn default_table() -> Result<toml::Table, ConfigError> {
    parse_table("the built-in configuration", DEFAULT_TOML)
}

/// Merge `over` into `base`: a table merges into a table key by key; any
/// other value (an array, including an array of tables) replaces the value in
/// `base` whole. Keys absent from `base` are added, so deserialization still
/// rejects the ones no struct knows.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (Some(slot), value) => *slot = value,
            (None, value) => {
                base.insert(key, value);
            }
        }
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

    const TOKEN: &str = "control.token=0123456789abcdef";

    #[test]
    fn web_is_off_by_default_and_needs_a_token() {
        assert!(load(&[]).unwrap().web.is_none());
        let e = load(&["web.listen=127.0.0.1:8080"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("control.token:"), "{e}");
        assert!(e.contains("web.listen needs a token of at least 16"), "{e}");
        let e = load(&["web.listen=127.0.0.1:8080", "control.token=short"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("control.token:"), "{e}");
        let e = load(&["web.listen=8080", TOKEN]).unwrap_err().to_string();
        assert!(e.starts_with("web.listen:"), "{e}");
        let s = load(&["web.listen=127.0.0.1:8080", TOKEN]).unwrap();
        let web = s.web.expect("web on");
        assert_eq!(web.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(web.tls.is_none());
        // Without control.tcp, the token is there for the web login.
        assert!(s.control.tcp.is_none());
        assert_eq!(s.control.token("web.listen").unwrap(), "0123456789abcdef");
    }

    #[test]
    fn web_token_from_a_file() {
        let path = std::env::temp_dir().join(format!("confgate-web-token-{}", std::process::id()));
        std::fs::write(&path, "fedcba9876543210fedc\nsecond line\n").unwrap();
        let file = format!("control.token_file={}", path.display());
        // Read when the server starts, not at load.
        let s = load(&["web.listen=127.0.0.1:0", &file]).unwrap();
        assert_eq!(
            s.control.token("web.listen").unwrap(),
            "fedcba9876543210fedc"
        );
        std::fs::write(&path, "short\n").unwrap();
        let e = s.control.token("web.listen").unwrap_err().to_string();
        assert!(e.starts_with("control.token_file:"), "{e}");
        assert!(e.contains("web.listen"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = s.control.token("web.listen").unwrap_err().to_string();
        assert!(e.starts_with("control.token_file:"), "{e}");
    }

    #[test]
    fn web_takes_a_restart() {
        let old = load(&[]).unwrap();
        let new = load(&["web.listen=127.0.0.1:8080", TOKEN]).unwrap();
        let (applied, restart) = old.reloaded(new);
        assert!(restart.contains(&"web"), "{restart:?}");
        assert!(applied.web.is_none());
    }

    #[test]
    fn cluster_is_off_by_default_and_names_its_keys() {
        assert!(load(&[]).unwrap().cluster.is_none());
        let redis = "cluster.redis=redis://127.0.0.1:6379";
        let msg = |ov: &[&str]| load(ov).unwrap_err().to_string();
        // sip.listen is 0.0.0.0 by default: nothing the others can reach.
        assert!(
            msg(&[redis]).starts_with("cluster.node:"),
            "{}",
            msg(&[redis])
        );
        let s = load(&[redis, "sip.public_address=192.0.2.7"]).unwrap();
        let c = s.cluster.expect("cluster on");
        assert_eq!(c.node, "192.0.2.7:5060".parse().unwrap());
        assert_eq!(c.claim_ttl, Duration::from_secs(15));
        assert_eq!(c.redis, "redis://127.0.0.1:6379");
        assert!(!c.refer, "callers are bridged unless cluster.refer");
        let s = load(&[redis, "sip.public_address=192.0.2.7", "cluster.refer=true"]).unwrap();
        assert!(s.cluster.unwrap().refer);
        let s = load(&[redis, "sip.listen=10.0.0.5:5070"]).unwrap();
        assert_eq!(s.cluster.unwrap().node, "10.0.0.5:5070".parse().unwrap());
        let s = load(&[
            redis,
            "cluster.node=10.1.1.1:5080",
            "cluster.claim_ttl_secs=3",
        ])
        .unwrap();
        let c = s.cluster.unwrap();
        assert_eq!(
            (c.node, c.claim_ttl),
            ("10.1.1.1:5080".parse().unwrap(), Duration::from_secs(3))
        );
        assert!(msg(&["cluster.redis=localhost:6379"]).starts_with("cluster.redis:"));
        assert!(msg(&[redis, "cluster.node=10.1.1.1"]).starts_with("cluster.node:"));
        assert!(msg(&[redis, "cluster.node=0.0.0.0:5060"]).starts_with("cluster.node:"));
        let ttl = msg(&[
            redis,
            "cluster.node=10.1.1.1:5080",
            "cluster.claim_ttl_secs=2",
        ]);
        assert!(ttl.starts_with("cluster.claim_ttl_secs:"), "{ttl}");
        // Standalone ignores the other keys.
        assert!(load(&["cluster.node=bogus"]).unwrap().cluster.is_none());
    }

    #[test]
    fn cluster_control_defaults_to_control_tcp() {
        let redis = "cluster.redis=redis://127.0.0.1:6379";
        let node = "cluster.node=10.1.1.1:5080";
        let token = "control.token=0123456789abcdef";
        let msg = |ov: &[&str]| load(ov).unwrap_err().to_string();
        // No control TCP: nothing to announce.
        assert_eq!(load(&[redis, node]).unwrap().cluster.unwrap().control, None);
        // A wildcard control.tcp is announced at the node's address.
        let s = load(&[redis, node, token, "control.tcp=0.0.0.0:7070"]).unwrap();
        assert_eq!(
            s.cluster.unwrap().control,
            Some("10.1.1.1:7070".parse().unwrap())
        );
        let s = load(&[
            redis,
            node,
            token,
            "control.tcp=0.0.0.0:7070",
            "cluster.control=192.0.2.1:7171",
        ])
        .unwrap();
        assert_eq!(
            s.cluster.unwrap().control,
            Some("192.0.2.1:7171".parse().unwrap())
        );
        for bad in [
            vec![redis, node, "cluster.control=192.0.2.1:7171"],
            vec![
                redis,
                node,
                token,
                "control.tcp=0.0.0.0:7070",
                "cluster.control=x",
            ],
            vec![
                redis,
                node,
                token,
                "control.tcp=0.0.0.0:7070",
                "cluster.control=0.0.0.0:7070",
            ],
        ] {
            let e = msg(&bad);
            assert!(e.starts_with("cluster.control:"), "{e}");
        }
    }

    #[test]
    fn cluster_takes_a_restart() {
        let old = load(&[]).unwrap();
        let new = load(&[
            "cluster.redis=redis://127.0.0.1:6379",
            "cluster.node=10.1.1.1:5080",
        ])
        .unwrap();
        let (applied, restart) = old.reloaded(new);
        assert_eq!(restart, vec!["cluster"]);
        assert!(applied.cluster.is_none());
    }

    #[test]
    fn embedded_default_is_valid() {
        let s = load(&[]).expect("default config");
        assert_eq!(s.sip_listen, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(s.codecs, vec![Codec::Pcmu, Codec::Pcma]);
        assert_eq!(s.rtp_ports, 20000..=29999);
        // Long enough for a phone that holds SIP INFO digits for T4 (5 s).
        assert_eq!(s.pin.inter_digit, Duration::from_secs(10));
        assert_eq!(s.pin.first_digit, Duration::from_secs(10));
    }

    #[test]
    fn srtp_policies_and_their_errors() {
        let s = load(&[]).unwrap();
        assert_eq!((s.srtp, s.trunk.srtp), (Policy::Optional, Policy::Off));
        let s = load(&["rtp.srtp=required", "trunk.srtp=optional"]).unwrap();
        assert_eq!((s.srtp, s.trunk.srtp), (Policy::Required, Policy::Optional));
        let s = load(&["rtp.srtp=off", "trunk.srtp=required"]).unwrap();
        assert_eq!((s.srtp, s.trunk.srtp), (Policy::Off, Policy::Required));
        for (ov, key) in [
            ("rtp.srtp=mandatory", "rtp.srtp:"),
            ("rtp.srtp=Optional", "rtp.srtp:"),
            ("trunk.srtp=yes", "trunk.srtp:"),
            ("rtp.srtp=1", "rtp.srtp:"),
        ] {
            let e = load(&[ov]).unwrap_err().to_string();
            assert!(e.starts_with(key), "{ov}: {e}");
        }
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
    fn rooms_pins_and_dtmf() {
        let s = load(&[
            "rooms.open=false",
            "rooms.trusted=[\"10.0.0.0/8\"]",
            "rooms.room=[{id=\"sales\", pin=\"4321\", moderator_pin=\"98765\"}]",
            "dtmf.mode=inband",
            "pin.first_digit_timeout_secs=7",
        ])
        .unwrap();
        assert_eq!(s.dtmf_mode, DtmfMode::Inband);
        assert_eq!(s.pin.first_digit, Duration::from_secs(7));
        assert!(!s.directory.open);
        assert_eq!(
            s.directory.by_pin("98765").map(|a| a.room),
            Some("sales".into())
        );
        assert_eq!(
            s.directory.direct_uri,
            Some(("room-".to_owned(), String::new()))
        );

        let msg = |ov: &[&str]| load(ov).unwrap_err().to_string();
        assert!(msg(&["dtmf.mode=loud"]).starts_with("dtmf.mode:"));
        assert!(msg(&["pin.max_len=2"]).starts_with("pin.max_len:"));
        assert!(msg(&["pin.attempts=0"]).starts_with("pin.attempts:"));
        assert!(msg(&["rooms.trusted=[\"10.0.0.0/40\"]"]).starts_with("rooms.trusted[0]:"));
        assert!(msg(&["rooms.direct_uri=room"]).starts_with("rooms.direct_uri:"));
        assert!(msg(&["rooms.announce=bell"]).starts_with("rooms.announce:"));
        assert!(msg(&["rooms.max_members=1"]).starts_with("rooms.max_members:"));
        assert!(msg(&["rtp.timeout_secs=0"]).starts_with("rtp.timeout_secs:"));
        let twice = "rooms.room=[{id=\"a\", pin=\"1111\"}, {id=\"b\", pin=\"1111\"}]";
        assert!(
            msg(&[twice]).starts_with("rooms.room[1].pin:"),
            "{}",
            msg(&[twice])
        );
        assert!(msg(&["rooms.room=[{id=\"a\", pin=\"12\"}]"]).starts_with("rooms.room[0].pin:"));
        assert!(msg(&["rooms.room=[{id=\"a\"}]"]).contains("pin"));

        // The documented way: one [[rooms.room]] block per room in place of `room = []`.
        let text = DEFAULT_TOML.replace(
            "room = []",
            "[[rooms.room]]\nid = \"sales\"\npin = \"4321\"\n\n[[rooms.room]]\nid = \"ops\"\npin = \"5678\"",
        );
        let s = Config::from_toml("x.toml", &text, &[])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.directory.rooms.len(), 2);
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let text = DEFAULT_TOML.replace("[calls]", "[calls]\nbogus = 1");
        let err = Config::from_toml("x.toml", &text, &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("calls.bogus:"), "{err}");
    }

    /// Write `text` to a file of its own under the temp dir and load it.
    fn load_file(text: &str, overrides: &[&str]) -> Result<Settings, ConfigError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "confgate-config-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let result = Config::load(Some(&path), &ov);
        std::fs::remove_file(&path).unwrap();
        result
    }

    #[test]
    fn a_reload_keeps_what_takes_a_restart_and_names_it() {
        let old = load(&[]).unwrap();
        let new = load(&[
            "sip.listen=127.0.0.1:5070",
            "control.max_clients=3",
            "pin.attempts=5",
            "trunk.allow=[\"+1555\"]",
        ])
        .unwrap();
        let (applied, restart) = old.reloaded(new);
        assert_eq!(restart, vec!["sip.listen", "control"]);
        assert_eq!(applied.sip_listen, old.sip_listen);
        assert_eq!(applied.control, old.control);
        assert_eq!(applied.pin.attempts, 5);
        assert_eq!(applied.trunk.allow, vec!["+1555".to_owned()]);
        let (_, restart) = old.reloaded(load(&[]).unwrap());
        assert!(restart.is_empty(), "{restart:?}");
    }

    #[test]
    fn partial_file_keeps_the_other_defaults() {
        let s = load_file("[sip]\nlisten = \"127.0.0.1:5070\"\n", &[]).unwrap();
        assert_eq!(s.sip_listen, "127.0.0.1:5070".parse().unwrap());
        let mut d = load(&[]).unwrap();
        d.sip_listen = s.sip_listen;
        d.origin = s.origin.clone();
        // Settings has no PartialEq; its Debug form covers every field.
        assert_eq!(format!("{s:?}"), format!("{d:?}"));
    }

    #[test]
    fn partial_file_unknown_key_is_named() {
        let err = load_file("[sip]\nlistn = \"127.0.0.1:5070\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sip.listn:"), "{err}");
        let err = load_file("[calls]\nbogus = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("calls.bogus:"), "{err}");
        let err = load_file("[nosuch]\nx = 1\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("nosuch:"), "{err}");
        let err = load_file(
            "[[rooms.room]]\nid = \"a\"\npin = \"1234\"\npn = \"1\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("rooms.room[0].pn:"), "{err}");
    }

    #[test]
    fn partial_file_bad_value_is_named() {
        let err = load_file("[rtp]\ntimeout_secs = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rtp.timeout_secs:"), "{err}");
        let err = load_file("[rtp]\nport_range = \"9-5\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rtp.port_range:"), "{err}");
        let err = load_file("sip = 1\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("sip:"), "{err}");
    }

    #[test]
    fn partial_file_syntax_error_names_the_file() {
        let err = load_file("[sip\n", &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Syntax { origin, .. } if origin.contains("confgate-config-")),
            "{err}"
        );
    }

    #[test]
    fn partial_prompt_texts_keep_the_other_defaults() {
        let s = load_file("[prompts.text]\ngoodbye = \"see you.\"\n", &[]).unwrap();
        let d = load(&[]).unwrap();
        assert_eq!(s.prompt_texts["goodbye"], "see you.");
        for (name, text) in &d.prompt_texts {
            if name != "goodbye" {
                assert_eq!(&s.prompt_texts[name], text, "{name}");
            }
        }
        assert_eq!(s.prompt_texts.len(), d.prompt_texts.len());
        // prompts.text takes any prompt name.
        let s = load_file("[prompts.text]\nhold = \"please hold.\"\n", &[]).unwrap();
        assert_eq!(s.prompt_texts["hold"], "please hold.");
        assert_eq!(s.prompt_texts["welcome"], d.prompt_texts["welcome"]);
    }

    #[test]
    fn partial_file_rooms_replace_the_default_list() {
        let text = "[[rooms.room]]\nid = \"sales\"\npin = \"4321\"\n";
        let s = load_file(text, &[]).unwrap();
        assert_eq!(s.directory.rooms.len(), 1);
        assert_eq!(s.directory.rooms[0].id, "sales");
        assert!(s.directory.open, "rooms.open keeps its default");

        let mut base: toml::Table = "a = [1, 2]\nb = [{x = 1}, {x = 2}]\n[t]\nk = 1\nm = 2"
            .parse()
            .unwrap();
        let over: toml::Table = "a = [3]\n[[b]]\ny = 3\n[t]\nk = 5".parse().unwrap();
        merge(&mut base, over);
        let want: toml::Table = "a = [3]\nb = [{y = 3}]\n[t]\nk = 5\nm = 2".parse().unwrap();
        assert_eq!(base, want);
    }

    #[test]
    fn overrides_apply_over_a_partial_file() {
        let text = "[sip]\nlisten = \"127.0.0.1:5070\"\n[rtp]\ntimeout_secs = 5\n";
        let s = load_file(text, &["sip.listen=127.0.0.1:5080", "dtmf.mode=info"]).unwrap();
        assert_eq!(s.sip_listen, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(s.rtp_timeout, Duration::from_secs(5));
        assert_eq!(s.dtmf_mode, DtmfMode::Info);
        let err = load_file(text, &["rtp.timeout_secs=0"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rtp.timeout_secs:"), "{err}");
    }
}
