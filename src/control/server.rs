//! The control server: a listener per socket (Unix, optionally TCP) that
//! accepts up to `max_clients` connections, and a handler per connection
//! that answers request lines and, after `subscribe`, writes events between
//! the responses. The handler is the only writer on its socket.
//!
//! Shutdown comes through the token: listeners stop accepting and remove
//! the Unix socket file, handlers drop their connections.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connection::Handler;
use super::protocol::{protocol_error_line, ProtocolError};
use super::switchboard::Switchboard;
use crate::config::ControlSettings;

/// How long a refused client gets to take its error line.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
/// How long an existing socket gets to answer before it is taken for stale.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the control server could not start. Every variant names the socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon answers on the socket: refuse rather than steal it.
    #[error("control socket {}: another process is listening on it", .path.display())]
    InUse { path: PathBuf },
    /// The path exists and is not a socket: leave it alone.
    #[error("control socket {}: the path exists and is not a socket", .path.display())]
    NotASocket { path: PathBuf },
    #[error("control socket {}: {source}", .path.display())]
    Unix { path: PathBuf, source: io::Error },
    #[error("control TCP {addr}: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// A running control server.
#[derive(Debug)]
pub struct ControlServer {
    unix_path: Option<PathBuf>,
    tcp_addr: Option<SocketAddr>,
    listeners: Vec<JoinHandle<()>>,
    counters: Arc<ControlCounters>,
}

/// What every connection shares.
struct Shared {
    board: Arc<dyn Switchboard>,
    slots: Arc<Semaphore>,
    max_clients: usize,
    shutdown: CancellationToken,
    counters: Arc<ControlCounters>,
}

/// Connections and error responses, for the metrics.
#[derive(Debug, Default)]
pub struct ControlCounters {
    accepted: AtomicU64,
    open: AtomicUsize,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl ControlCounters {
    /// Count an error response with `code`.
    pub fn error(&self, code: &'static str) {
        // A poisoned lock only means a counting thread panicked; the counts stand.
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// Connections served since the start (refused ones not counted).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Error responses so far, by code.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.iter().map(|(c, n)| (*c, *n)).collect()
    }
}

/// Serve one already-trusted connection (no token asked) with the
/// control protocol until it closes: how the web endpoint runs a logged-in
/// WebSocket. It counts in `counters` like a socket client.
pub async fn serve<S>(
    stream: S,
    board: Arc<dyn Switchboard>,
    counters: Arc<ControlCounters>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Counts the connection closed however the future ends (or is dropped).
    struct Open(Arc<ControlCounters>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    counters.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(counters.clone());
    Handler::new(stream, board, None, counters).run().await
}

impl ControlServer {
    /// Bind the configured sockets and start accepting. The Unix socket
    /// file is replaced if stale, created with mode 0600, and removed when
    /// `shutdown` is cancelled.
    pub async fn start(
        settings: &ControlSettings,
        board: Arc<dyn Switchboard>,
        shutdown: CancellationToken,
    ) -> Result<ControlServer, ControlError> {
        let max_clients = settings.max_clients.max(1);
        let shared = Arc::new(Shared {
            board,
            slots: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            shutdown,
            counters: Arc::default(),
        });
        // TCP first: if the Unix socket then fails, no file is left behind.
        let tcp = match &settings.tcp_with_token()? {
            Some((addr, token)) => {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ControlError::Tcp {
                            addr: *addr,
                            source,
                        })?;
                let bound = listener.local_addr().map_err(|source| ControlError::Tcp {
                    addr: *addr,
                    source,
                })?;
                Some((listener, bound, Arc::<str>::from(token.as_str())))
            }
            None => None,
        };
        let unix = match &settings.socket {
            Some(path) => Some((bind_unix(path).await?, path.clone())),
            None => None,
        };
        let mut server = ControlServer {
            unix_path: unix.as_ref().map(|(_, p)| p.clone()),
            tcp_addr: tcp.as_ref().map(|(_, a, _)| *a),
            listeners: Vec::new(),
            counters: shared.counters.clone(),
        };
        if let Some((listener, path)) = unix {
            server
                .listeners
                .push(tokio::spawn(accept_unix(listener, path, shared.clone())));
        }
        if let Some((listener, _, token)) = tcp {
            server
                .listeners
                .push(tokio::spawn(accept_tcp(listener, token, shared)));
        }
        Ok(server)
    }

    /// The Unix socket's path, if one is configured.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// Connections and errors so far.
    pub fn counters(&self) -> Arc<ControlCounters> {
        self.counters.clone()
    }

    /// The bound TCP address (the real port when the configured one was 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Wait until the listeners have stopped after shutdown (the socket
    /// file is gone by then).
    pub async fn stopped(self) {
        for listener in self.listeners {
            listener.await.ok();
        }
    }
}

/// Bind `path`, replacing a stale socket file but never a live one.
async fn bind_unix(path: &Path) -> Result<UnixListener, ControlError> {
    let unix_error = |source| ControlError::Unix {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ControlError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) => match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                debug!(path = %path.display(), "removing a stale control socket");
                std::fs::remove_file(path).map_err(unix_error)?;
            }
            Ok(Err(e)) => return Err(unix_error(e)),
            Ok(Ok(_)) | Err(_) => {
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                })
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(unix_error(e)),
    }
    let listener = UnixListener::bind(path).map_err(unix_error)?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        std::fs::remove_file(path).ok();
        return Err(unix_error(e));
    }
    Ok(listener)
}

async fn accept_unix(listener: UnixListener, path: PathBuf, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(&shared, stream, None),
                Err(e) => {
                    warn!(path = %path.display(), "control socket accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    // Only our own kind of file: never delete something put there since.
    let is_socket = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        std::fs::remove_file(&path).ok();
    }
}

async fn accept_tcp(listener: TcpListener, token: Arc<str>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "control TCP client");
                    stream.set_nodelay(true).ok();
                    admit(&shared, stream, Some(token.clone()));
                }
                Err(e) => {
                    warn!("control TCP accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// Serve a new connection if a slot is free; otherwise tell it and close.
fn admit<S>(shared: &Arc<Shared>, mut stream: S, token: Option<Arc<str>>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let permit = shared.slots.clone().try_acquire_owned();
    let board = shared.board.clone();
    let shutdown = shared.shutdown.clone();
    let max_clients = shared.max_clients;
    let counters = shared.counters.clone();
    tokio::spawn(async move {
        let Ok(permit) = permit else {
            debug!("control client refused: {max_clients} connected");
            let refusal = ProtocolError::TooManyClients(max_clients);
            counters.error(refusal.code());
            let mut line = protocol_error_line(&serde_json::Value::Null, &refusal);
            line.push('\n');
            tokio::time::timeout(REFUSAL_WRITE, async {
                stream.write_all(line.as_bytes()).await.ok();
                stream.shutdown().await.ok();
            })
            .await
            .ok();
            return;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let handler = Handler::new(stream, board, token, counters.clone());
        tokio::select! {
            _ = shutdown.cancelled() => {}
            outcome = handler.run() => {
                match outcome {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        info!("control client cut off: {e}");
                    }
                    Err(e) => debug!("control connection ended: {e}"),
                    Ok(()) => {}
                }
            }
        }
        counters.open.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    });
}
