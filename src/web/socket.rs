//! WebSocket upgrades over hyper: the handshake checks (RFC 6455 and the
//! same-origin rule), and the control bridge for logged-in room pages.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, HOST, ORIGIN, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::control::lines::MAX_LINE;
use crate::control::protocol::error_line;
use crate::control::{ControlCounters, Switchboard};

/// How long a send may wait for a browser that does not read.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a logged-in socket checks that its session still holds.
const SESSION_CHECK: Duration = Duration::from_secs(1);
/// How long a socket without a session is kept open.
const UNAUTHORIZED_LIFETIME: Duration = Duration::from_secs(30);

pub(super) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Why an upgrade was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Not a WebSocket handshake (400).
    Malformed,
    /// Another site's page (403).
    CrossOrigin,
}

/// The `Sec-WebSocket-Accept` for a valid upgrade request from the page's
/// own origin. `https`: whether the request came over TLS (for the
/// default port of its origin).
pub(super) fn accept_key(headers: &HeaderMap, https: bool) -> Result<String, Refused> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v: &HeaderValue| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err(Refused::Malformed);
    }
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Refused::Malformed);
    }
    let Some(key) = headers.get("sec-websocket-key") else {
        return Err(Refused::Malformed);
    };
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().ok();
        match (origin, host) {
            (Some(origin), Some(host)) if same_origin(origin, host, https) => {}
            _ => return Err(Refused::CrossOrigin),
        }
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Whether the `Origin` names the host (and port) the request was sent to.
fn same_origin(origin: &str, host: &str, https: bool) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    let origin_default = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let host_default = if https { ":443" } else { ":80" };
    let strip = |s: &str, default: &str| {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix(default) {
            Some(bare) => bare.to_owned(),
            None => s,
        }
    };
    !authority.is_empty()
        && !authority.contains('/')
        && strip(authority, origin_default) == strip(host, host_default)
}

/// A server-side WebSocket on an upgraded connection, its messages no
/// longer than a control line.
pub(super) async fn socket(upgraded: Upgraded) -> Socket {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_LINE))
        .max_frame_size(Some(MAX_LINE));
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await
}

/// Send one text message, or fail if the browser does not take it in time.
pub(super) async fn send(ws: &mut Socket, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}

/// What woke a bridge.
enum Wake {
    Browser(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Control(std::io::Result<Option<String>>),
    Check,
}

/// A logged-in room page: each text message is a control request line for
/// the control handler, each line it writes is a text message.
/// `logged_in` is asked every [`SESSION_CHECK`]: when the session has
/// ended (logout, expiry) the socket is closed.
pub(super) async fn control(
    mut ws: Socket,
    board: Arc<dyn Switchboard>,
    counters: Arc<ControlCounters>,
    logged_in: impl Fn() -> bool + Send,
) {
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (ours, theirs) = tokio::io::duplex(2 * MAX_LINE);
    let handler = tokio::spawn(crate::control::serve(theirs, board, counters.clone()));
    let (reader, mut writer) = tokio::io::split(ours);
    let mut lines = BufReader::new(reader).lines();
    loop {
        let wake = tokio::select! {
            m = ws.next() => Wake::Browser(m),
            l = lines.next_line() => Wake::Control(l),
            _ = check.tick() => Wake::Check,
        };
        match wake {
            Wake::Browser(Some(Ok(Message::Text(text)))) => {
                // One message is one line: a newline in it is JSON whitespace.
                let mut line = text.as_str().replace(['\r', '\n'], " ");
                line.push('\n');
                if writer.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            Wake::Browser(Some(Ok(Message::Binary(_)))) => {
                counters.error("bad_json");
                let reply = error_line(&Value::Null, "bad_json", "send requests as text messages");
                if !send(&mut ws, reply).await {
                    break;
                }
            }
            // Pings are answered by the socket itself; a close is echoed.
            Wake::Browser(Some(Ok(_))) => {}
            Wake::Browser(None) => break,
            Wake::Browser(Some(Err(e))) => {
                debug!(error = %e, "room page socket ended");
                break;
            }
            Wake::Control(Ok(Some(line))) => {
                if !send(&mut ws, line).await {
                    break;
                }
            }
            Wake::Control(Ok(None) | Err(_)) => break,
            Wake::Check if !logged_in() => break,
            Wake::Check => {}
        }
    }
    handler.abort();
    ws.close(None).await.ok();
}

/// A room page without a session: every request is answered
/// `unauthorized` and nothing is done.
pub(super) async fn refuse(mut ws: Socket, counters: Arc<ControlCounters>) {
    // It holds a connection slot and can do nothing: not for long.
    tokio::time::timeout(UNAUTHORIZED_LIFETIME, refuse_all(&mut ws, counters))
        .await
        .ok();
    ws.close(None).await.ok();
}

async fn refuse_all(ws: &mut Socket, counters: Arc<ControlCounters>) {
    while let Some(message) = ws.next().await {
        let reply = match message {
            Ok(Message::Text(text)) => {
                let id = serde_json::from_str::<Value>(text.as_str())
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(Value::Null);
                counters.error("unauthorized");
                error_line(&id, "unauthorized", "log in first")
            }
            Ok(Message::Binary(_)) => {
                counters.error("bad_json");
                error_line(&Value::Null, "bad_json", "send requests as text messages")
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        if !send(ws, reply).await {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(same_origin(
            "http://127.0.0.1:8080",
            "127.0.0.1:8080",
            false
        ));
        assert!(same_origin("http://Example.org", "example.org:80", false));
        assert!(same_origin("https://example.org", "example.org", true));
        assert!(!same_origin(
            "http://evil.example:8080",
            "127.0.0.1:8080",
            false
        ));
        assert!(!same_origin(
            "http://127.0.0.1:8081",
            "127.0.0.1:8080",
            false
        ));
        assert!(!same_origin("null", "127.0.0.1:8080", false));
        assert!(!same_origin(
            "http://127.0.0.1:8080/x",
            "127.0.0.1:8080",
            false
        ));
    }
}
