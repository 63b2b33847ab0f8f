//! The control protocol's requests and responses (no I/O).
//!
//! One JSON object per line, keyed by `"cmd"`; any `"id"` is echoed in the
//! response. Responses are `{"id":..,"ok":true,"result":{..}}` or
//! `{"id":..,"ok":false,"error":{"code":"..","message":".."}}`; events are
//! written as [`Event`] serializes them, `{"event":"member_joined",..}`.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::switchboard::{CommandError, DialRequest, Status, Target};
use crate::conference::{Control, MemberStatus, RoomStatus};
use crate::dtmf::keyer::event_code;
use crate::events::Event;

/// The most digits one `dtmf` (or `dial`'s `dtmf`) may key.
pub const MAX_DIGITS: usize = 32;

/// The longest ring time a `dial` may ask for.
pub const MAX_DIAL_TIMEOUT: Duration = Duration::from_secs(600);

/// Every event name a `subscribe` filter may list.
pub const EVENT_NAMES: &[&str] = &[
    "call_ringing",
    "call_answered",
    "dial_failed",
    "registration",
    "digit",
    "pin_rejected",
    "pin_lockout",
    "room_opened",
    "room_closed",
    "room_locked",
    "room_unlocked",
    "member_joined",
    "member_left",
    "member_quality",
    "member_key",
    "room_ended",
    "recording_started",
    "recording_stopped",
    "recording_failed",
    "draining",
    "config_reloaded",
    "config_reload_failed",
];

/// A request, as parsed from one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The first line on TCP; on the Unix socket it is accepted and ignored.
    Auth {
        token: String,
    },
    Dial(DialRequest),
    Hangup {
        call: String,
    },
    Rooms,
    Room {
        room: String,
    },
    /// `mute`, `unmute`, `deaf`, `undeaf`, `kick`.
    Control {
        call: String,
        control: Control,
    },
    Say {
        target: Target,
        text: String,
    },
    /// `lock` (true) or `unlock` a room.
    Lock {
        room: String,
        on: bool,
    },
    /// Key digits into a call (RFC 4733 events, or SIP INFO).
    Dtmf {
        call: String,
        digits: String,
    },
    /// `record` (true) or `stop_recording` a room.
    Record {
        room: String,
        on: bool,
    },
    /// Events from now on; `None`: all of them.
    Subscribe {
        events: Option<Vec<&'static str>>,
    },
    Status,
    Drain,
    Reload,
}

/// Why a line was refused before it reached the daemon: the client's fault,
/// except `TooManyClients` (ours: we are full).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a JSON object: {0}")]
    BadJson(String),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("bad argument {field:?}: {detail}")]
    BadArgument { field: String, detail: String },
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("the first request on TCP must be auth")]
    AuthRequired,
    #[error("wrong token")]
    AuthFailed,
    #[error("too many clients (at most {0})")]
    TooManyClients(usize),
}

impl ProtocolError {
    /// The stable code sent in error responses.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::BadJson(_) => "bad_json",
            ProtocolError::UnknownCommand(_) => "unknown_command",
            ProtocolError::MissingField(_) => "missing_field",
            ProtocolError::BadArgument { .. } => "bad_argument",
            ProtocolError::LineTooLong(_) => "line_too_long",
            ProtocolError::AuthRequired => "auth_required",
            ProtocolError::AuthFailed => "auth_failed",
            ProtocolError::TooManyClients(_) => "too_many_clients",
        }
    }

    fn bad(field: &str, detail: impl Into<String>) -> ProtocolError {
        ProtocolError::BadArgument {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

/// One parsed line: the id to echo (`null` when absent or unreadable) and
/// the request or why it was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub id: Value,
    pub request: Result<Request, ProtocolError>,
    /// `"local": true`: answer from this node alone, never forward (what a
    /// node of a cluster sends another).
    pub local: bool,
    /// The request's fields but `id` and `local`, to forward as they came.
    pub fields: Map<String, Value>,
}

impl Parsed {
    /// A line refused before it could be read.
    pub fn refused(error: ProtocolError) -> Parsed {
        Parsed {
            id: Value::Null,
            request: Err(error),
            local: false,
            fields: Map::new(),
        }
    }
}

/// Parse one request line (without its newline).
pub fn parse(line: &[u8]) -> Parsed {
    let mut object = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Parsed::refused(ProtocolError::BadJson("a request is a JSON object".into()))
        }
        Err(e) => return Parsed::refused(ProtocolError::BadJson(e.to_string())),
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    let (local, request) = match object.remove("local") {
        None | Some(Value::Bool(false)) => (false, request(Fields(object.clone()))),
        Some(Value::Bool(true)) => (true, request(Fields(object.clone()))),
        Some(_) => (
            false,
            Err(ProtocolError::bad("local", "must be true or false")),
        ),
    };
    Parsed {
        id,
        request,
        local,
        fields: object,
    }
}

fn request(mut f: Fields) -> Result<Request, ProtocolError> {
    let cmd = f.string("cmd")?;
    let request = match cmd.as_str() {
        "auth" => Request::Auth {
            token: f.string("token")?,
        },
        "dial" => Request::Dial(DialRequest {
            room: f.string("room")?,
            to: f.string("to")?,
            from: f.optional_string("from")?,
            timeout: f.optional_timeout("timeout")?,
            dtmf: f.optional_digits("dtmf")?,
        }),
        "hangup" => Request::Hangup {
            call: f.string("call")?,
        },
        "rooms" => Request::Rooms,
        "room" => Request::Room {
            room: f.string("room")?,
        },
        "mute" | "unmute" | "deaf" | "undeaf" | "kick" => Request::Control {
            call: f.string("call")?,
            control: match cmd.as_str() {
                "mute" => Control::Mute(true),
                "unmute" => Control::Mute(false),
                "deaf" => Control::Deaf(true),
                "undeaf" => Control::Deaf(false),
                _ => Control::Kick,
            },
        },
        "say" => {
            let target = match (f.optional_string("room")?, f.optional_string("call")?) {
                (Some(room), None) => Target::Room(room),
                (None, Some(call)) => Target::Call(call),
                (Some(_), Some(_)) => {
                    return Err(ProtocolError::bad("call", "give room or call, not both"))
                }
                (None, None) => return Err(ProtocolError::MissingField("room or call")),
            };
            Request::Say {
                target,
                text: f.string("text")?,
            }
        }
        "subscribe" => Request::Subscribe {
            events: f.optional_event_names("events")?,
        },
        "lock" | "unlock" => Request::Lock {
            room: f.string("room")?,
            on: cmd == "lock",
        },
        "dtmf" => Request::Dtmf {
            call: f.string("call")?,
            digits: f
                .optional_digits("digits")?
                .ok_or(ProtocolError::MissingField("digits"))?,
        },
        "record" | "stop_recording" => Request::Record {
            room: f.string("room")?,
            on: cmd == "record",
        },
        "status" => Request::Status,
        "drain" => Request::Drain,
        "reload" => Request::Reload,
        _ => return Err(ProtocolError::UnknownCommand(cmd)),
    };
    f.finish()?;
    Ok(request)
}

/// The fields of a request object, taken one by one; what is left over is
/// an error (a misspelt `timeout` should not be silently ignored).
struct Fields(Map<String, Value>);

impl Fields {
    fn string(&mut self, name: &'static str) -> Result<String, ProtocolError> {
        self.optional_string(name)?
            .ok_or(ProtocolError::MissingField(name))
    }

    fn optional_string(&mut self, name: &'static str) -> Result<Option<String>, ProtocolError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(ProtocolError::bad(name, "must not be empty"))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ProtocolError::bad(name, "must be a string")),
        }
    }

    /// DTMF keys: 1-32 of 0-9, *, #, A-D.
    fn optional_digits(&mut self, name: &'static str) -> Result<Option<String>, ProtocolError> {
        let Some(digits) = self.optional_string(name)? else {
            return Ok(None);
        };
        let digits = digits.to_ascii_uppercase();
        if digits.len() > MAX_DIGITS || !digits.chars().all(|c| event_code(c).is_some()) {
            return Err(ProtocolError::bad(
                name,
                format!("must be 1-{MAX_DIGITS} of 0-9, *, #, A-D"),
            ));
        }
        Ok(Some(digits))
    }

    fn optional_timeout(&mut self, name: &'static str) -> Result<Option<Duration>, ProtocolError> {
        let secs = match self.0.remove(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => None,
        };
        match secs {
            Some(s) if s > 0.0 && s <= MAX_DIAL_TIMEOUT.as_secs_f64() => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            _ => Err(ProtocolError::bad(
                name,
                format!(
                    "must be a number of seconds, more than 0 and at most {}",
                    MAX_DIAL_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    fn optional_event_names(
        &mut self,
        name: &'static str,
    ) -> Result<Option<Vec<&'static str>>, ProtocolError> {
        let list = match self.0.remove(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(_) => {
                return Err(ProtocolError::bad(
                    name,
                    "must be a non-empty list of event names (omit it for all events)",
                ))
            }
        };
        let mut names = Vec::with_capacity(list.len());
        for item in &list {
            let known = item
                .as_str()
                .and_then(|s| EVENT_NAMES.iter().find(|&&n| n == s));
            match known {
                Some(n) if !names.contains(n) => names.push(*n),
                Some(_) => {}
                None => {
                    return Err(ProtocolError::bad(
                        name,
                        format!("unknown event {item}; known: {}", EVENT_NAMES.join(", ")),
                    ))
                }
            }
        }
        Ok(Some(names))
    }

    fn finish(self) -> Result<(), ProtocolError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(extra) => Err(ProtocolError::bad(extra, "unknown field")),
        }
    }
}

/// A response, fields in the documented order.
#[derive(serde::Serialize)]
struct Response<'a> {
    id: &'a Value,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn response_line(response: &Response) -> String {
    // Serializing a Value and plain strings cannot fail.
    serde_json::to_string(response).unwrap_or_default()
}

/// A success response line (without its newline).
pub fn ok_line(id: &Value, result: Value) -> String {
    response_line(&Response {
        id,
        ok: true,
        result: Some(result),
        error: None,
    })
}

/// An error response line (without its newline).
pub fn error_line(id: &Value, code: &str, message: &str) -> String {
    response_line(&Response {
        id,
        ok: false,
        result: None,
        error: Some(ErrorBody { code, message }),
    })
}

/// The error response for a protocol error.
pub fn protocol_error_line(id: &Value, error: &ProtocolError) -> String {
    error_line(id, error.code(), &error.to_string())
}

/// The error response for a refused command.
pub fn command_error_line(id: &Value, error: &CommandError) -> String {
    error_line(id, error.code(), &error.to_string())
}

/// An event and its name (for filters), or `None` if it cannot be written.
/// In a cluster `node` names the node it happened on.
pub fn event_line(event: &Event, node: Option<&str>) -> Option<(String, String)> {
    let mut value = serde_json::to_value(event).ok()?;
    let name = value.get("event")?.as_str()?.to_owned();
    if let (Some(node), Some(object)) = (node, value.as_object_mut()) {
        object.insert("node".into(), Value::String(node.to_owned()));
    }
    Some((name, value.to_string()))
}

/// What a subscriber is told when it fell behind and `count` events were dropped.
pub fn events_lost_line(count: u64) -> String {
    format!(r#"{{"event":"events_lost","count":{count}}}"#)
}

/// `dial`'s result.
pub fn dial_result(call: &str) -> Value {
    json!({ "call": call })
}

/// `rooms`' result.
pub fn rooms_result(rooms: &[RoomStatus]) -> Value {
    json!({ "rooms": rooms.iter().map(room_json).collect::<Vec<_>>() })
}

/// `status`' result.
pub fn status_result(status: &Status) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

/// One room as `rooms` and `room` list it.
pub fn room_json(room: &RoomStatus) -> Value {
    json!({
        "room": room.room,
        "locked": room.locked,
        "members": room.members.iter().map(member_json).collect::<Vec<_>>(),
    })
}

fn member_json(m: &MemberStatus) -> Value {
    json!({
        "call": m.call,
        "sip_call_id": m.sip_call_id,
        "direction": m.direction,
        "from": m.from,
        "to": m.to,
        "moderator": m.moderator,
        "muted": m.muted,
        "deaf": m.deaf,
        "talking": m.talking,
        "held": m.held,
        "listen_db": m.listen_db,
        "talk_db": m.talk_db,
        "codec": m.codec.encoding_name(),
        "lost": m.lost,
        "late": m.late,
        "jitter_ms": m.jitter_ms,
        "rtt_ms": m.quality.rtt_ms.map(|v| (v * 10.0).round() / 10.0),
        "remote_lost": m.quality.remote_lost.map(|v| (v * 1000.0).round() / 1000.0),
        "remote_jitter_ms": m.quality.remote_jitter_ms.map(|v| (v * 10.0).round() / 10.0),
        "mos": m.quality.mos.map(|v| (v * 100.0).round() / 100.0),
    })
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
