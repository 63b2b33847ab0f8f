//! The join page's WebSocket: `{"join":{..}}` in, `{"joined":{..}}` or an
//! error out, `{"ended":{..}}` when the call ends from our side. The member
//! leaves when the socket goes.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::socket::{send, Socket};
use super::{JoinAsk, Joiner};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
enum Request {
    #[serde(rename = "join")]
    Join(JoinFields),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinFields {
    room: String,
    #[serde(default)]
    pin: String,
    sdp: String,
}

/// A member in a room through this socket.
struct Member {
    ended: oneshot::Receiver<String>,
    leave: oneshot::Sender<()>,
}

fn error(code: &str, message: &str) -> String {
    json!({ "error": { "code": code, "message": message } }).to_string()
}

/// The next end of the member's call, or never when there is none.
async fn ended(member: &mut Option<Member>) -> String {
    match member {
        Some(m) => (&mut m.ended).await.unwrap_or_else(|_| "ended".to_owned()),
        None => std::future::pending().await,
    }
}

enum Wake {
    Browser(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Ended(String),
}

pub(super) async fn serve(mut ws: Socket, joiner: Arc<dyn Joiner>, peer: SocketAddr) {
    let mut member: Option<Member> = None;
    loop {
        let wake = tokio::select! {
            m = ws.next() => Wake::Browser(m),
            reason = ended(&mut member) => Wake::Ended(reason),
        };
        let text = match wake {
            Wake::Ended(reason) => {
                member = None;
                let line = json!({ "ended": { "reason": reason } }).to_string();
                send(&mut ws, line).await;
                break;
            }
            Wake::Browser(Some(Ok(Message::Text(text)))) => text,
            Wake::Browser(Some(Ok(Message::Binary(_)))) => {
                if !send(&mut ws, error("bad_json", "send text messages")).await {
                    break;
                }
                continue;
            }
            Wake::Browser(Some(Ok(_))) => continue,
            Wake::Browser(None) => break,
            Wake::Browser(Some(Err(e))) => {
                debug!(%peer, error = %e, "join socket ended");
                break;
            }
        };
        let reply = match serde_json::from_str::<Request>(text.as_str()) {
            Err(e) => error("bad_json", &e.to_string()),
            Ok(_) if member.is_some() => error("already_joined", "this page is in a room already"),
            Ok(Request::Join(fields)) => {
                let ask = JoinAsk {
                    room: fields.room,
                    pin: fields.pin,
                    offer: fields.sdp,
                    peer,
                };
                match joiner.join(ask).await {
                    Ok(joined) => {
                        member = Some(Member {
                            ended: joined.ended,
                            leave: joined.leave,
                        });
                        json!({ "joined": { "call": joined.call, "sdp": joined.answer } })
                            .to_string()
                    }
                    Err(refused) => error(refused.code(), &refused.to_string()),
                }
            }
        };
        if !send(&mut ws, reply).await {
            break;
        }
    }
    if let Some(m) = member.take() {
        m.leave.send(()).ok();
    }
    ws.close(None).await.ok();
}
