//! Log setup: `tracing` with a level from `--log-level` or `RUST_LOG`, as
//! text or JSON lines on stderr, or, when stderr is systemd's journal
//! (`JOURNAL_STREAM` names it), as journal entries with structured fields.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber. `RUST_LOG`, when set, wins over `level`.
/// The SIP stack logs every datagram at info; it is kept at warn unless asked.
/// Text logs go to the journal itself when stderr is the journal, so each
/// field (`call`, `room`, `sip_call_id`, ...) is a field of the entry.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(format!("{level},rsipstack=warn")),
    }
    .map_err(|e| format!("bad log level: {e}"))?;
    if format == LogFormat::Text && stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            // Fields by their own names (`CALL`, `ROOM`, ...), not `F_CALL`:
            // none of ours is one journald keeps for itself.
            let journal = journal
                .with_syslog_identifier("confgate".to_owned())
                .with_field_prefix(None);
            return tracing_subscriber::registry()
                .with(filter)
                .with(journal)
                .try_init()
                .map_err(|e| e.to_string());
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| e.to_string())
}

/// Whether stderr is the stream systemd set up to the journal: its device
/// and inode are the ones `JOURNAL_STREAM` names (a child that inherited the
/// variable but not the stream does not match).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => names_stream(&var.to_string_lossy(), m.dev(), m.ino()),
        Err(_) => false,
    }
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, in decimal.
fn names_stream(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::names_stream;

    #[test]
    fn journal_stream_must_name_this_stderr() {
        assert!(names_stream("8:123456", 8, 123456));
        assert!(!names_stream("8:123457", 8, 123456));
        assert!(!names_stream("9:123456", 8, 123456));
        assert!(!names_stream("8-123456", 8, 123456));
        assert!(!names_stream("", 8, 123456));
    }
}
