//! The `confgate` control commands: send a request over the control
//! socket and show the response to a person (rooms as a table, status as
//! aligned fields; `--json` prints the JSON itself), or follow events.
//!
//! An error response prints `confgate: CODE: MESSAGE` and exits 1; so does
//! a daemon that cannot be reached, naming the socket.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::client::{ClientError, ControlClient, Endpoint};

/// How a command shows its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Nothing on success.
    Nothing,
    /// The `call` of a `dial`.
    Call,
    /// The `path` of a recording.
    Path,
    Rooms {
        json: bool,
    },
    Room {
        json: bool,
    },
    Status {
        json: bool,
    },
    /// What `drain` says is left.
    Drain,
    /// The keys a `reload` could not apply.
    Reload,
}

/// Send `request` to the daemon and print its result as `show` says.
pub fn request(endpoint: &Endpoint, request: Value, show: Show) -> ExitCode {
    let outcome = block_on(async {
        let mut client = ControlClient::connect(endpoint).await?;
        client.request(request).await
    });
    let result = match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return failed(&e),
        Err(code) => return code,
    };
    let text = match show {
        Show::Nothing => String::new(),
        Show::Call => format!("{}\n", text(&result["call"])),
        Show::Path => format!("{}\n", text(&result["path"])),
        Show::Rooms { json: true } => format!("{}\n", result["rooms"]),
        Show::Rooms { json: false } => {
            let mut table =
                rooms_table(result["rooms"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            let unreachable: Vec<String> = result["unreachable"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            if !unreachable.is_empty() {
                table.push_str(&format!(
                    "not listed: node(s) {} did not answer\n",
                    unreachable.join(", ")
                ));
            }
            table
        }
        Show::Room { json: true } | Show::Status { json: true } => format!("{result}\n"),
        Show::Room { json: false } => rooms_table(std::slice::from_ref(&result)),
        Show::Status { json: false } => status_text(&result),
        Show::Drain => format!(
            "draining: {} call(s) in progress; the daemon exits after the last one (at most {} s)\n",
            result["calls"], result["drain_secs"]
        ),
        Show::Reload => reload_text(&result),
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Subscribe (to `names`, or all events) and print each event line until
/// interrupted or the daemon closes the connection.
pub fn follow(endpoint: &Endpoint, names: Vec<String>) -> ExitCode {
    let outcome = block_on(async {
        let mut client = ControlClient::connect(endpoint).await?;
        let mut request = json!({"cmd": "subscribe"});
        if !names.is_empty() {
            request["events"] = json!(names);
        }
        client.request(request).await?;
        let mut out = std::io::stdout();
        loop {
            let event = tokio::select! {
                event = client.next_event() => event?,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(event) = event else {
                return Ok(());
            };
            if writeln!(out, "{event}").and_then(|()| out.flush()).is_err() {
                return Ok(()); // the reader went away
            }
        }
    });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => failed(&e),
        Err(code) => code,
    }
}

fn failed(error: &ClientError) -> ExitCode {
    eprintln!("confgate: {error}");
    ExitCode::FAILURE
}

/// Run a client future on a runtime of its own.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => {
            eprintln!("confgate: cannot start the runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

const ROOM_COLUMNS: [&str; 12] = [
    "ROOM", "CALL", "DIR", "FROM", "TO", "CODEC", "FLAGS", "LOST", "LATE", "JITTER", "RTT", "MOS",
];

/// The `rooms` array as a table, one member a row.
pub fn rooms_table(rooms: &[Value]) -> String {
    if rooms.is_empty() {
        return "no rooms\n".to_owned();
    }
    let mut rows: Vec<[String; 12]> = vec![ROOM_COLUMNS.map(str::to_owned)];
    for room in rooms {
        // In a cluster, which node the room is on.
        let id = match room["node"].as_str() {
            Some(node) => format!("{}@{node}", text(&room["room"])),
            None => text(&room["room"]),
        };
        let members = room["members"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if members.is_empty() {
            let mut row: [String; 12] = Default::default();
            row[0] = id.clone();
            row[1] = "(empty)".to_owned();
            rows.push(row);
        }
        for m in members {
            let flags: Vec<&str> = ["talking", "muted", "deaf", "held"]
                .into_iter()
                .filter(|f| m[*f].as_bool() == Some(true))
                .collect();
            rows.push([
                id.clone(),
                text(&m["call"]),
                text(&m["direction"]).replace("bound", ""),
                text(&m["from"]),
                text(&m["to"]),
                text(&m["codec"]),
                if flags.is_empty() {
                    "-".to_owned()
                } else {
                    flags.join(",")
                },
                text(&m["lost"]),
                text(&m["late"]),
                m["jitter_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |j| format!("{j:.1}ms")),
                m["rtt_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}ms")),
                m["mos"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.2}")),
            ]);
        }
    }
    let mut widths = [0usize; 12];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What a reload applied, and what it could not.
pub fn reload_text(result: &Value) -> String {
    let keys: Vec<&str> = result["restart_needed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        "reloaded\n".to_owned()
    } else {
        format!(
            "reloaded; these changed but take a restart (running values kept): {}\n",
            keys.join(", ")
        )
    }
}

/// `status` as aligned `name value` lines.
pub fn status_text(status: &Value) -> String {
    let mut out = String::new();
    for name in [
        "version",
        "uptime_secs",
        "calls",
        "rooms",
        "registration",
        "draining",
    ] {
        let label = name.trim_end_matches("_secs");
        let mut value = text(&status[name]);
        if name == "uptime_secs" {
            value.push_str(" s");
        }
        out.push_str(&format!("{label:<13}{value}\n"));
    }
    out
}

/// A JSON scalar as plain text (strings without quotes).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rooms_are_a_table_one_member_a_row() {
        let rooms = json!([{"room":"sales","members":[
            {"call":"c1","direction":"inbound","from":"alice","to":"100","codec":"PCMU",
             "talking":true,"muted":true,"deaf":false,"held":false,"lost":0,"late":2,"jitter_ms":1.25,
             "rtt_ms":41.7,"mos":4.36},
            {"call":"c22","direction":"outbound","from":"confgate","to":"+15551234","codec":"PCMA",
             "talking":false,"muted":false,"deaf":false,"held":false,"lost":7,"late":0,"jitter_ms":0.0}
        ]}]);
        let table = rooms_table(rooms.as_array().unwrap());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ROOM   CALL  DIR  FROM"), "{table}");
        assert!(lines[1].contains("sales  c1    in   alice"), "{table}");
        assert!(lines[1].contains("talking,muted"), "{table}");
        assert!(
            lines[2].contains("out  confgate  +15551234  PCMA   -"),
            "{table}"
        );
        assert!(lines[1].ends_with("1.2ms   42ms  4.36"), "{table}");
        assert!(lines[2].ends_with("0.0ms   -     -"), "{table}");
        assert_eq!(rooms_table(&[]), "no rooms\n");
    }

    #[test]
    fn status_lines_are_aligned() {
        let status = json!({"version":"0.1.0","uptime_secs":42,"calls":3,"rooms":1,"registration":"disabled","draining":false});
        assert_eq!(
            status_text(&status),
            "version      0.1.0\nuptime       42 s\ncalls        3\nrooms        1\nregistration disabled\ndraining     false\n"
        );
    }
}
