//! The `confgate` command: the daemon and its tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use confgate::config::{Config, Settings};
use confgate::control::cli::{self as control_cli, Show};
use confgate::control::Endpoint;
use confgate::daemon::{prompts::specs, Daemon};
use confgate::dtmf::inband::InbandDetector;
use confgate::logging::{self, LogFormat};
use confgate::tts::prompts;

/// Exit status for bad usage or configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "confgate",
    version,
    about = "SIP conference gateway: answers trunk calls, collects a PIN by DTMF, bridges callers into conference rooms"
)]
struct Cli {
    /// Configuration file (default: the built-in configuration).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set sip.listen=127.0.0.1:5070 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Log level (error, warn, info, debug, trace); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run,
    /// Validate a configuration file (default: --config, else the built-in one).
    CheckConfig {
        /// The file to check.
        path: Option<PathBuf>,
    },
    /// Render every prompt whose text or voice changed into prompts.dir.
    Prompts,
    /// Print the DTMF digits the in-band detector finds in a WAV file.
    Dtmf {
        /// The recording (8 kHz 16-bit mono; other formats are converted).
        file: PathBuf,
        /// One line per digit: time, digit, tone levels and twist.
        #[arg(long)]
        verbose: bool,
    },
    /// List the rooms and their members.
    Rooms {
        /// Print the JSON array of rooms.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Show one room.
    Room {
        room: String,
        /// Print the room as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Call TO (a number or a sip: URI) and bring it into ROOM; prints the call id.
    Dial {
        room: String,
        to: String,
        /// The From user to present (default: trunk.from_user).
        #[arg(long, value_name = "USER")]
        from: Option<String>,
        /// How long to let it ring (default: trunk.ring_timeout_secs).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Keys to send once it has answered (e.g. another bridge's PIN: 1234#).
        #[arg(long, value_name = "DIGITS")]
        dtmf: Option<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Key DIGITS into CALL (telephone-events, or SIP INFO without them).
    DtmfSend {
        call: String,
        digits: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Record ROOM's mix to a WAV in recordings.dir; prints its path.
    Record {
        room: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Stop recording ROOM.
    StopRecording {
        room: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// End a call.
    Hangup(Member),
    /// Mute a member.
    Mute(Member),
    /// Unmute a member.
    Unmute(Member),
    /// Stop a member hearing the room.
    Deaf(Member),
    /// Let a member hear the room again.
    Undeaf(Member),
    /// Remove a member from its room and hang up.
    Kick(Member),
    /// Speak TEXT to ROOM, or with --call to one call: `say ROOM TEXT`, `say --call CALL TEXT`.
    Say {
        /// Speak to this call instead of a room.
        #[arg(long, value_name = "CALL")]
        call: Option<String>,
        /// ROOM TEXT, or TEXT with --call.
        #[arg(value_name = "ROOM TEXT", num_args = 1..=2, required = true)]
        words: Vec<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Print events as JSON lines until interrupted or the daemon closes the socket.
    Events {
        /// Only these events (e.g. member_joined dial_failed); default: all.
        #[arg(value_name = "EVENT")]
        names: Vec<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Close ROOM to newcomers (they hear "this conference is locked").
    Lock {
        room: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Open a locked ROOM again.
    Unlock {
        room: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Take no new calls (INVITEs get 503), and exit once the last call has ended.
    Drain {
        #[command(flatten)]
        connect: Connect,
    },
    /// Read the configuration file again and apply it (as SIGHUP does).
    Reload {
        #[command(flatten)]
        connect: Connect,
    },
    /// The daemon's version, uptime, calls, rooms and registration.
    Status {
        /// Print the JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: Connect,
    },
}

/// A command on one call.
#[derive(Args)]
struct Member {
    /// The call id (as `rooms` and the events name it).
    call: String,
    #[command(flatten)]
    connect: Connect,
}

/// Where the control commands find the daemon.
#[derive(Args)]
struct Connect {
    /// The control socket (default: control.socket of the configuration).
    #[arg(long, value_name = "PATH", conflicts_with = "tcp")]
    socket: Option<PathBuf>,
    /// Connect over TCP to ADDR (HOST:PORT) instead; needs the token
    /// (CONFGATE_TOKEN, --token-file or --token).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// The daemon's control.token, for --tcp (seen by `ps`: prefer
    /// CONFGATE_TOKEN or --token-file).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONFGATE_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Read the token from this file (its first line), for --tcp; it wins
    /// over CONFGATE_TOKEN.
    #[arg(long, value_name = "PATH", requires = "tcp")]
    token_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage_error = e.use_stderr();
            e.print().ok();
            return if usage_error {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(e) = logging::init(&cli.log_level, cli.log_format) {
        eprintln!("confgate: {e}");
        return ExitCode::from(EX_USAGE);
    }
    let config_path = match &cli.command {
        Command::CheckConfig { path: Some(p) } => Some(p.clone()),
        _ => cli.config.clone(),
    };
    let settings = match Config::load(config_path.as_deref(), &cli.overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("confgate: configuration error: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            let web_token = match settings.web {
                Some(_) => settings.control.token("web.listen").map(drop),
                None => Ok(()),
            };
            if let Err(e) = settings.control.tcp_with_token().map(drop).and(web_token) {
                eprintln!("confgate: configuration error: {e}");
                return ExitCode::from(EX_USAGE);
            }
            let origin = config_path.map_or("the built-in configuration".to_owned(), |p| {
                p.display().to_string()
            });
            println!("{origin}: ok");
            ExitCode::SUCCESS
        }
        Command::Prompts => render_prompts(&settings),
        Command::Dtmf { file, verbose } => detect_dtmf(&file, verbose),
        Command::Run => run(settings),
        Command::Rooms { json, connect } => control(
            &settings,
            connect,
            json!({"cmd": "rooms"}),
            Show::Rooms { json },
        ),
        Command::Room {
            room,
            json,
            connect,
        } => control(
            &settings,
            connect,
            json!({"cmd": "room", "room": room}),
            Show::Room { json },
        ),
        Command::Dial {
            room,
            to,
            from,
            timeout,
            dtmf,
            connect,
        } => {
            let mut request = json!({"cmd": "dial", "room": room, "to": to});
            if let Some(dtmf) = dtmf {
                request["dtmf"] = json!(dtmf);
            }
            if let Some(from) = from {
                request["from"] = json!(from);
            }
            if let Some(secs) = timeout {
                request["timeout"] = json!(secs);
            }
            control(&settings, connect, request, Show::Call)
        }
        Command::Hangup(m) => member(&settings, "hangup", m),
        Command::Mute(m) => member(&settings, "mute", m),
        Command::Unmute(m) => member(&settings, "unmute", m),
        Command::Deaf(m) => member(&settings, "deaf", m),
        Command::Undeaf(m) => member(&settings, "undeaf", m),
        Command::Kick(m) => member(&settings, "kick", m),
        Command::Say {
            call,
            words,
            connect,
        } => {
            let request = match (call, words.as_slice()) {
                (Some(call), [text]) => json!({"cmd": "say", "call": call, "text": text}),
                (None, [room, text]) => json!({"cmd": "say", "room": room, "text": text}),
                (Some(_), _) => return usage("say --call CALL TEXT: one TEXT after the call"),
                (None, _) => return usage("say ROOM TEXT: give the room and the text"),
            };
            control(&settings, connect, request, Show::Nothing)
        }
        Command::Events { names, connect } => events(&settings, connect, names),
        Command::DtmfSend {
            call,
            digits,
            connect,
        } => control(
            &settings,
            connect,
            json!({"cmd": "dtmf", "call": call, "digits": digits}),
            Show::Nothing,
        ),
        Command::Record { room, connect } => control(
            &settings,
            connect,
            json!({"cmd": "record", "room": room}),
            Show::Path,
        ),
        Command::StopRecording { room, connect } => control(
            &settings,
            connect,
            json!({"cmd": "stop_recording", "room": room}),
            Show::Path,
        ),
        Command::Lock { room, connect } => control(
            &settings,
            connect,
            json!({"cmd": "lock", "room": room}),
            Show::Nothing,
        ),
        Command::Unlock { room, connect } => control(
            &settings,
            connect,
            json!({"cmd": "unlock", "room": room}),
            Show::Nothing,
        ),
        Command::Drain { connect } => {
            control(&settings, connect, json!({"cmd": "drain"}), Show::Drain)
        }
        Command::Reload { connect } => {
            control(&settings, connect, json!({"cmd": "reload"}), Show::Reload)
        }
        Command::Status { json, connect } => control(
            &settings,
            connect,
            json!({"cmd": "status"}),
            Show::Status { json },
        ),
    }
}

/// Where `connect` points: --tcp, --socket, else control.socket.
fn endpoint(settings: &Settings, connect: Connect) -> Result<Endpoint, String> {
    if let Some(addr) = connect.tcp {
        let token = match (connect.token_file, connect.token) {
            (Some(path), _) => std::fs::read_to_string(&path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
            (None, Some(token)) => token.trim().to_owned(),
            (None, None) => {
                return Err("--tcp needs the token: CONFGATE_TOKEN, --token-file or --token".into())
            }
        };
        return Ok(Endpoint::Tcp { addr, token });
    }
    match connect.socket.or_else(|| settings.control.socket.clone()) {
        Some(path) => Ok(Endpoint::Unix(path)),
        None => Err(
            "no control socket configured (control.socket is empty): give --socket or --tcp".into(),
        ),
    }
}

/// Send one request and show its result.
fn control(
    settings: &Settings,
    connect: Connect,
    request: serde_json::Value,
    show: Show,
) -> ExitCode {
    match endpoint(settings, connect) {
        Ok(endpoint) => control_cli::request(&endpoint, request, show),
        Err(why) => usage(&why),
    }
}

fn member(settings: &Settings, cmd: &str, m: Member) -> ExitCode {
    let request = json!({"cmd": cmd, "call": m.call});
    control(settings, m.connect, request, Show::Nothing)
}

fn events(settings: &Settings, connect: Connect, names: Vec<String>) -> ExitCode {
    match endpoint(settings, connect) {
        Ok(endpoint) => control_cli::follow(&endpoint, names),
        Err(why) => usage(&why),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("confgate: {message}");
    ExitCode::from(EX_USAGE)
}

fn render_prompts(settings: &Settings) -> ExitCode {
    let specs = specs(settings);
    match prompts::render(
        &settings.prompts_dir,
        &settings.voice,
        settings.words_per_minute,
        &specs,
    ) {
        Ok(outcomes) => {
            for (name, outcome) in outcomes {
                println!("{name}: {outcome:?}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("confgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn detect_dtmf(file: &std::path::Path, verbose: bool) -> ExitCode {
    let samples = match prompts::load_wav(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("confgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut found = Vec::new();
    InbandDetector::new().feed(&samples, &mut found);
    if verbose {
        for d in &found {
            println!(
                "{:9.3} s  {}  low {:6.1} dBm0  high {:6.1} dBm0  twist {:+5.1} dB",
                d.at_sample as f64 / 8000.0,
                d.digit,
                d.low_dbm0,
                d.high_dbm0,
                d.twist_db
            );
        }
    }
    println!("{}", found.iter().map(|d| d.digit).collect::<String>());
    ExitCode::SUCCESS
}

fn run(settings: Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Before anything else: a SIGHUP (systemctl reload) or SIGTERM that
        // comes early must find its handler, not the default (exit).
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("confgate: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let daemon = match Daemon::start(settings).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("confgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(sip = %daemon.sip_addr(), "confgate {} running", env!("CARGO_PKG_VERSION"));
        // SIP and the control socket are up: systemd (Type=notify) may go on.
        notify(&[sd_notify::NotifyState::Ready]);
        signals.serve_until_stopped(&daemon).await;
        notify(&[sd_notify::NotifyState::Stopping]);
        daemon.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Tell systemd, when it started us with a notify socket; otherwise nothing.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "systemd notification not sent");
    }
}

/// The signals the daemon acts on, each a stream that keeps what arrives
/// while the daemon is busy (a reload).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Until SIGINT or SIGTERM, or a drain that is over; SIGHUP reloads
    /// the configuration (a failure is logged and changes nothing).
    async fn serve_until_stopped(&mut self, daemon: &Daemon) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = daemon.drained() => return,
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
                        notify(&[sd_notify::NotifyState::Reloading, now]);
                    }
                    // The outcome is logged and published by the reload itself.
                    daemon.reload().await.ok();
                    notify(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
    }
}
