//! The `confgate` command: the daemon and its tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use confgate::config::{Config, Settings};
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
            let origin = config_path.map_or("the built-in configuration".to_owned(), |p| {
                p.display().to_string()
            });
            println!("{origin}: ok");
            ExitCode::SUCCESS
        }
        Command::Prompts => render_prompts(&settings),
        Command::Dtmf { file, verbose } => detect_dtmf(&file, verbose),
        Command::Run => run(settings),
    }
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
        let daemon = match Daemon::start(settings).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("confgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(sip = %daemon.sip_addr(), "confgate {} running", env!("CARGO_PKG_VERSION"));
        wait_for_signal().await;
        daemon.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            tokio::signal::ctrl_c().await.ok();
        }
    }
}
