//! One control connection: read request lines, answer each in order, and
//! after `subscribe` write the events as they happen. Responses and events
//! leave through this one task, so lines never interleave mid-line.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::broadcast::{self, error::RecvError};
use tracing::warn;

use super::lines::{Line, LineSplitter, MAX_LINE};
use super::peers::{ask, Answer, Peer, Peers};
use super::protocol::{self, Parsed, ProtocolError, Request};
use super::server::ControlCounters;
use super::switchboard::{CommandError, Switchboard, Target};
use crate::events::Event;
use crate::ivr::throttle::secrets_equal;

/// How long a TCP client has to send its `auth` line.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may wait for a client that does not read.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// Events a connection asked for.
struct Subscription {
    events: broadcast::Receiver<Event>,
    /// `None`: every event.
    filter: Option<Vec<&'static str>>,
}

/// Why a request got an error response.
enum Refusal {
    Protocol(ProtocolError),
    Command(CommandError),
    /// Another node's error response to a command forwarded there.
    Remote {
        code: String,
        message: String,
    },
}

impl From<ProtocolError> for Refusal {
    fn from(e: ProtocolError) -> Self {
        Refusal::Protocol(e)
    }
}

impl From<CommandError> for Refusal {
    fn from(e: CommandError) -> Self {
        Refusal::Command(e)
    }
}

/// Serves one connection until it closes or misbehaves past recovery.
pub(super) struct Handler<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    lines: LineSplitter,
    chunk: Vec<u8>,
    board: Arc<dyn Switchboard>,
    /// TCP: the token the first line must carry.
    token: Option<Arc<str>>,
    subscription: Option<Subscription>,
    counters: Arc<ControlCounters>,
    /// The other nodes, in a cluster.
    peers: Option<Arc<dyn Peers>>,
}

/// What woke the handler.
enum Wake {
    Read(io::Result<usize>),
    Event(Result<Event, RecvError>),
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Handler<S> {
    pub(super) fn new(
        stream: S,
        board: Arc<dyn Switchboard>,
        token: Option<Arc<str>>,
        counters: Arc<ControlCounters>,
    ) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        let peers = board.peers();
        Handler {
            reader,
            writer,
            lines: LineSplitter::new(MAX_LINE),
            chunk: vec![0; READ_CHUNK],
            board,
            token,
            subscription: None,
            counters,
            peers,
        }
    }

    /// Serve until the peer closes (`Ok`) or the socket fails.
    pub(super) async fn run(mut self) -> io::Result<()> {
        if self.token.is_some() {
            match tokio::time::timeout(AUTH_TIMEOUT, self.authenticate()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Err(_) => return Ok(()),
                Ok(Err(e)) => return Err(e),
            }
        }
        loop {
            while let Some(line) = self.lines.next_line() {
                if !self.answer(line).await? {
                    return Ok(());
                }
            }
            let wake = tokio::select! {
                read = self.reader.read(&mut self.chunk) => Wake::Read(read),
                event = next_event(&mut self.subscription) => Wake::Event(event),
            };
            match wake {
                Wake::Read(read) => match read? {
                    0 => return Ok(()),
                    n => self.lines.push(&self.chunk[..n]),
                },
                Wake::Event(Ok(event)) => self.write_event(&event).await?,
                Wake::Event(Err(RecvError::Lagged(count))) => {
                    self.write_line(protocol::events_lost_line(count)).await?;
                }
                Wake::Event(Err(RecvError::Closed)) => self.subscription = None,
            }
        }
    }

    /// Wait for the first line; true if it was `auth` with the right token.
    async fn authenticate(&mut self) -> io::Result<bool> {
        loop {
            let Some(line) = self.lines.next_line() else {
                match self.reader.read(&mut self.chunk).await? {
                    0 => return Ok(false),
                    n => self.lines.push(&self.chunk[..n]),
                }
                continue;
            };
            let (id, verdict) = match line {
                Line::Complete(bytes) if is_blank(&bytes) => continue,
                Line::Complete(bytes) => {
                    let parsed = protocol::parse(&bytes);
                    let verdict = match parsed.request {
                        Ok(Request::Auth { token }) => self.check_token(&token),
                        _ => Err(ProtocolError::AuthRequired),
                    };
                    (parsed.id, verdict)
                }
                Line::TooLong => (Value::Null, Err(ProtocolError::AuthRequired)),
            };
            let accepted = verdict.is_ok();
            let reply = match verdict {
                Ok(()) => protocol::ok_line(&id, json!({})),
                Err(e) => {
                    self.counters.error(e.code());
                    protocol::protocol_error_line(&id, &e)
                }
            };
            self.write_line(reply).await?;
            if !accepted {
                self.writer.shutdown().await.ok();
            }
            return Ok(accepted);
        }
    }

    fn check_token(&self, given: &str) -> Result<(), ProtocolError> {
        match &self.token {
            None => Ok(()),
            Some(expected) if secrets_equal(given, expected) => Ok(()),
            Some(_) => Err(ProtocolError::AuthFailed),
        }
    }

    /// Answer one line; false when the connection must close.
    async fn answer(&mut self, line: Line) -> io::Result<bool> {
        let parsed = match line {
            Line::Complete(bytes) if is_blank(&bytes) => return Ok(true),
            Line::Complete(bytes) => protocol::parse(&bytes),
            Line::TooLong => Parsed::refused(ProtocolError::LineTooLong(MAX_LINE)),
        };
        let id = parsed.id;
        let outcome = match (parsed.request, self.peers.clone()) {
            (Ok(request), Some(peers)) if !parsed.local => {
                self.execute_in_cluster(request, &parsed.fields, peers)
                    .await
            }
            (Ok(request), _) => self.execute(request).await,
            (Err(e), _) => Err(e.into()),
        };
        let keep_open = !matches!(outcome, Err(Refusal::Protocol(ProtocolError::AuthFailed)));
        let reply = match outcome {
            Ok(result) => protocol::ok_line(&id, result),
            Err(Refusal::Protocol(e)) => {
                self.counters.error(e.code());
                protocol::protocol_error_line(&id, &e)
            }
            Err(Refusal::Command(e)) => {
                self.counters.error(e.code());
                protocol::command_error_line(&id, &e)
            }
            // Counted by the node that refused it.
            Err(Refusal::Remote { code, message }) => protocol::error_line(&id, &code, &message),
        };
        self.write_line(reply).await?;
        Ok(keep_open)
    }

    async fn execute(&mut self, request: Request) -> Result<Value, Refusal> {
        let board = &self.board;
        Ok(match request {
            Request::Auth { token } => {
                self.check_token(&token)?;
                json!({})
            }
            Request::Dial(req) => protocol::dial_result(&board.dial(req).await?),
            Request::Hangup { call } => {
                board.hangup(&call).await?;
                json!({})
            }
            Request::Rooms => protocol::rooms_result(&board.rooms().await),
            Request::Room { room } => {
                let rooms = board.rooms().await;
                match rooms.iter().find(|r| r.room == room) {
                    Some(found) => protocol::room_json(found),
                    None => return Err(CommandError::NoSuchRoom(room).into()),
                }
            }
            Request::Control { call, control } => {
                board.control(&call, control).await?;
                json!({})
            }
            Request::Lock { room, on } => {
                board.lock(&room, on).await?;
                json!({})
            }
            Request::Dtmf { call, digits } => {
                board.dtmf(&call, &digits).await?;
                json!({})
            }
            Request::Record { room, on } => match board.record(&room, on).await? {
                Some(path) => json!({ "path": path }),
                None => json!({}),
            },
            Request::Say { target, text } => {
                board.say(target, text).await?;
                json!({})
            }
            Request::Subscribe { events } => {
                // Subscribed before the response is written: nothing that
                // happens after the client reads it is missed.
                let result = match &events {
                    Some(names) => json!({ "events": names }),
                    None => json!({ "events": protocol::EVENT_NAMES }),
                };
                self.subscription = Some(Subscription {
                    events: board.subscribe(),
                    filter: events,
                });
                result
            }
            Request::Status => protocol::status_result(&board.status().await),
            Request::Drain => json!(board.drain().await?),
            Request::Reload => json!(board.reload().await?),
        })
    }

    /// Answer `request` for the whole cluster: rooms and calls that live on
    /// other nodes are listed and acted on there (`fields`, the request as it
    /// came, is forwarded).
    async fn execute_in_cluster(
        &mut self,
        request: Request,
        fields: &Map<String, Value>,
        peers: Arc<dyn Peers>,
    ) -> Result<Value, Refusal> {
        let here = peers.node().to_owned();
        match request {
            Request::Rooms => {
                let mut rooms: Vec<Value> = self
                    .board
                    .rooms()
                    .await
                    .iter()
                    .map(|r| with_node(protocol::room_json(r), &here))
                    .collect();
                let others = peers.others().await;
                let answers = join_all(others.iter().map(|p| ask(p, peers.token(), fields))).await;
                let mut unreachable = Vec::new();
                for (peer, answer) in others.iter().zip(answers) {
                    match answer {
                        Answer::Ok(result) => rooms.extend(
                            result["rooms"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|r| with_node(r.clone(), &peer.node)),
                        ),
                        Answer::Refused { message, .. } | Answer::Unreachable(message) => {
                            warn!(node = %peer.node, %message, "rooms: a node did not answer");
                            unreachable.push(peer.node.clone());
                        }
                    }
                }
                rooms.sort_by(|a, b| {
                    let key = |r: &Value| (r["room"].to_string(), r["node"].to_string());
                    key(a).cmp(&key(b))
                });
                Ok(json!({ "rooms": rooms, "unreachable": unreachable }))
            }
            Request::Room { room } => {
                let rooms = self.board.rooms().await;
                if let Some(found) = rooms.iter().find(|r| r.room == room) {
                    return Ok(with_node(protocol::room_json(found), &here));
                }
                match peers.holder(&room).await {
                    Some(peer) => forwarded(&peer, peers.token(), fields)
                        .await
                        .map(|v| with_node(v, &peer.node)),
                    None => Err(CommandError::NoSuchRoom(room).into()),
                }
            }
            Request::Dial(req) => match peers.holder(&req.room).await {
                // Placed from the room's node, so it joins there.
                Some(peer) => forwarded(&peer, peers.token(), fields).await,
                None => self.execute(Request::Dial(req)).await,
            },
            request @ (Request::Lock { .. }
            | Request::Record { .. }
            | Request::Say {
                target: Target::Room(_),
                ..
            }) => match self.execute(request).await {
                Err(Refusal::Command(CommandError::NoSuchRoom(room))) => {
                    match peers.holder(&room).await {
                        Some(peer) => forwarded(&peer, peers.token(), fields).await,
                        None => Err(CommandError::NoSuchRoom(room).into()),
                    }
                }
                other => other,
            },
            request @ (Request::Control { .. }
            | Request::Hangup { .. }
            | Request::Dtmf { .. }
            | Request::Say {
                target: Target::Call(_),
                ..
            }) => match self.execute(request).await {
                Err(Refusal::Command(CommandError::NoSuchCall(call))) => wherever(&peers, fields)
                    .await
                    .unwrap_or(Err(CommandError::NoSuchCall(call).into())),
                other => other,
            },
            request => self.execute(request).await,
        }
    }

    async fn write_event(&mut self, event: &Event) -> io::Result<()> {
        let node = self.peers.as_ref().map(|p| p.node());
        let Some((name, line)) = protocol::event_line(event, node) else {
            return Ok(());
        };
        let wanted = self
            .subscription
            .as_ref()
            .and_then(|s| s.filter.as_ref())
            .is_none_or(|names| names.contains(&name.as_str()));
        if wanted {
            self.write_line(line).await?;
        }
        Ok(())
    }

    /// A client that does not read within [`WRITE_TIMEOUT`] is cut off, so
    /// it cannot hold a slot (or this task) for ever.
    async fn write_line(&mut self, mut line: String) -> io::Result<()> {
        line.push('\n');
        match tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(line.as_bytes())).await {
            Ok(written) => written,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }
}

/// `value` (a room, a response) marked with the node it is on.
fn with_node(mut value: Value, node: &str) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("node".into(), Value::String(node.to_owned()));
    }
    value
}

/// Forward a command to `peer` and relay its answer.
async fn forwarded(
    peer: &Peer,
    token: &str,
    fields: &Map<String, Value>,
) -> Result<Value, Refusal> {
    match ask(peer, token, fields).await {
        Answer::Ok(result) => Ok(result),
        Answer::Refused { code, message } => Err(Refusal::Remote { code, message }),
        Answer::Unreachable(why) => Err(CommandError::Unavailable(why).into()),
    }
}

/// Ask every other node to run a command for a call that is not here; the
/// node that has it answers. `None`: no node that answered has it.
async fn wherever(
    peers: &Arc<dyn Peers>,
    fields: &Map<String, Value>,
) -> Option<Result<Value, Refusal>> {
    let others = peers.others().await;
    let answers = join_all(others.iter().map(|p| ask(p, peers.token(), fields))).await;
    let mut refused = None;
    let mut silent = Vec::new();
    for (peer, answer) in others.iter().zip(answers) {
        match answer {
            Answer::Ok(result) => return Some(Ok(result)),
            Answer::Refused { code, .. } if code == "no_such_call" => {}
            Answer::Refused { code, message } => refused = Some(Refusal::Remote { code, message }),
            Answer::Unreachable(_) => silent.push(peer.node.as_str()),
        }
    }
    if let Some(refused) = refused {
        return Some(Err(refused));
    }
    // It may be on a node that did not answer: say so rather than "no such call".
    (!silent.is_empty()).then(|| {
        Err(CommandError::Unavailable(format!(
            "the call is not on the nodes that answered; {} did not",
            silent.join(", ")
        ))
        .into())
    })
}

/// The next event, or never when not subscribed.
async fn next_event(subscription: &mut Option<Subscription>) -> Result<Event, RecvError> {
    match subscription {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}
