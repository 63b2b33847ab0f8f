//! A small client for the control socket, used by the `confgate` commands:
//! connect (and authenticate on TCP), send a request and read its
//! response, or follow event lines.

use std::io;
use std::path::PathBuf;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT`, and the token sent first.
    Tcp {
        addr: String,
        token: String,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "control socket {}", path.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "control TCP {addr}"),
        }
    }
}

/// Why a request did not get a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing to talk to (the daemon is not running, or the path is wrong).
    #[error("cannot connect to {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    /// The daemon answered with an error response.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// The connection closed before the response came.
    #[error("the daemon closed the connection")]
    Closed,
    /// The daemon sent a line that is not a response or an event.
    #[error("unexpected line from the daemon: {0}")]
    BadLine(String),
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One connection to the control server.
pub struct ControlClient {
    stream: BufReader<Box<dyn Stream>>,
    next_id: u64,
    line: String,
}

impl ControlClient {
    /// Connect, and on TCP authenticate with the token.
    pub async fn connect(endpoint: &Endpoint) -> Result<ControlClient, ClientError> {
        let connect_error = |source| ClientError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let stream: Box<dyn Stream> = match endpoint {
            Endpoint::Unix(path) => {
                Box::new(UnixStream::connect(path).await.map_err(connect_error)?)
            }
            Endpoint::Tcp { addr, .. } => Box::new(
                TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_error)?,
            ),
        };
        let mut client = ControlClient {
            stream: BufReader::new(stream),
            next_id: 1,
            line: String::new(),
        };
        if let Endpoint::Tcp { token, .. } = endpoint {
            client
                .request(json!({"cmd": "auth", "token": token}))
                .await?;
        }
        Ok(client)
    }

    /// Send `request` (an object with `cmd`; its `id` is set here) and
    /// return the response's `result`. Event lines read meanwhile are dropped.
    pub async fn request(&mut self, mut request: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(object) = request.as_object_mut() {
            object.insert("id".into(), json!(id));
        }
        let mut line = request.to_string();
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).await?;
        loop {
            let value = self.read_value().await?.ok_or(ClientError::Closed)?;
            if value.get("event").is_some() {
                continue;
            }
            // A response to no request (`too_many_clients` on connect) is
            // still the answer to this one.
            let ours = value.get("id") == Some(&json!(id)) || value.get("id") == Some(&Value::Null);
            if !ours {
                continue;
            }
            return match value.get("ok").and_then(Value::as_bool) {
                Some(true) => Ok(value.get("result").cloned().unwrap_or(Value::Null)),
                Some(false) => Err(refusal(&value)),
                None => Err(ClientError::BadLine(value.to_string())),
            };
        }
    }

    /// The next event line (responses are skipped); `None` when the
    /// connection closed.
    pub async fn next_event(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            let Some(value) = self.read_value().await? else {
                return Ok(None);
            };
            if value.get("event").is_some() {
                return Ok(Some(value));
            }
            if value.get("ok") == Some(&Value::Bool(false)) {
                return Err(refusal(&value));
            }
        }
    }

    async fn read_value(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Ok(None);
            }
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            return serde_json::from_str(text)
                .map(Some)
                .map_err(|_| ClientError::BadLine(text.to_owned()));
        }
    }
}

fn refusal(response: &Value) -> ClientError {
    let field = |name: &str| {
        response["error"][name]
            .as_str()
            .unwrap_or("unknown")
            .to_owned()
    };
    ClientError::Refused {
        code: field("code"),
        message: field("message"),
    }
}
