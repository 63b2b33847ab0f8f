// The room page: the control protocol over a WebSocket (see docs/web.md).
"use strict";

(function () {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const roomsBox = document.getElementById("rooms");
  const status = document.getElementById("status");
  const pending = new Map();
  const recording = new Map();
  let nextId = 1;
  let ws = null;
  let poll = null;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function send(request, onResult) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      say("not connected", true);
      return;
    }
    const id = nextId++;
    request.id = id;
    pending.set(id, onResult || null);
    ws.send(JSON.stringify(request));
  }

  // A command from a button: errors go to the status line.
  function command(request) {
    send(request, function (reply) {
      if (!reply.ok) {
        say(request.cmd + ": " + reply.error.code + ": " + reply.error.message, true);
      } else {
        say(request.cmd + ": done", false);
        refresh();
      }
    });
  }

  function refresh() {
    send({ cmd: "rooms" }, function (reply) {
      if (reply.ok) {
        render(reply.result.rooms);
      } else {
        say("rooms: " + reply.error.code + ": " + reply.error.message, true);
      }
    });
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function button(action, label, request) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.action = action;
    b.textContent = label;
    b.addEventListener("click", function () { command(request); });
    return b;
  }

  function number(value, digits) {
    return typeof value === "number" ? value.toFixed(digits) : "";
  }

  function render(rooms) {
    roomsBox.replaceChildren();
    if (rooms.length === 0) {
      const p = document.createElement("p");
      p.id = "empty";
      p.textContent = "No rooms are open.";
      roomsBox.appendChild(p);
      return;
    }
    for (const room of rooms) {
      const box = document.createElement("section");
      box.className = "room";
      box.dataset.room = room.room;
      box.dataset.locked = String(!!room.locked);
      const h = document.createElement("h2");
      const rec = recording.get(room.room);
      // In a cluster, the node the room lives on.
      h.textContent = room.room + (room.node ? " on " + room.node : "") +
        (room.locked ? " (locked)" : "") + (rec ? " (recording)" : "");
      box.appendChild(h);
      const controls = document.createElement("div");
      controls.appendChild(room.locked
        ? button("unlock", "Unlock", { cmd: "unlock", room: room.room })
        : button("lock", "Lock", { cmd: "lock", room: room.room }));
      controls.appendChild(rec
        ? button("stop_recording", "Stop recording", { cmd: "stop_recording", room: room.room })
        : button("record", "Record", { cmd: "record", room: room.room }));
      box.appendChild(controls);
      const table = document.createElement("table");
      const head = table.insertRow();
      for (const title of ["call", "direction", "from", "codec", "talking", "muted", "deaf",
        "lost", "late", "jitter ms", "MOS", ""]) {
        const th = document.createElement("th");
        th.textContent = title;
        head.appendChild(th);
      }
      for (const m of room.members) {
        const row = table.insertRow();
        row.dataset.call = m.call;
        row.dataset.muted = String(!!m.muted);
        row.dataset.direction = m.direction;
        cell(row, m.call);
        cell(row, m.direction);
        cell(row, m.from);
        cell(row, m.codec);
        cell(row, m.talking ? "talking" : "", m.talking ? "talking" : "");
        cell(row, m.muted ? "muted" : "");
        cell(row, m.deaf ? "deaf" : "");
        cell(row, m.lost);
        cell(row, m.late);
        cell(row, number(m.jitter_ms, 1));
        cell(row, number(m.mos, 2));
        const actions = cell(row, "");
        actions.appendChild(m.muted
          ? button("unmute", "Unmute", { cmd: "unmute", call: m.call })
          : button("mute", "Mute", { cmd: "mute", call: m.call }));
        actions.appendChild(button("kick", "Kick", { cmd: "kick", call: m.call }));
      }
      box.appendChild(table);
      roomsBox.appendChild(box);
    }
  }

  function onEvent(event) {
    if (event.event === "recording_started") {
      recording.set(event.room, true);
    } else if (event.event === "recording_stopped" || event.event === "recording_failed") {
      recording.delete(event.room);
      if (event.event === "recording_failed") say("recording failed: " + event.reason, true);
    } else if (event.event === "room_closed") {
      recording.delete(event.room);
    }
    if (event.event !== "member_quality" && event.event !== "digit") refresh();
  }

  function connect() {
    ws = new WebSocket(scheme + "//" + location.host + "/ws");
    ws.addEventListener("open", function () {
      say("connected", false);
      send({ cmd: "subscribe" }, null);
      refresh();
      poll = setInterval(refresh, 1000);
    });
    ws.addEventListener("message", function (m) {
      let reply;
      try { reply = JSON.parse(m.data); } catch (e) { return; }
      if (reply.event) { onEvent(reply); return; }
      // The session ended (logged out elsewhere, expired, or the daemon restarted).
      if (reply.ok === false && reply.error.code === "unauthorized") {
        location.href = "/login";
        return;
      }
      const done = pending.get(reply.id);
      pending.delete(reply.id);
      if (done) {
        done(reply);
      } else if (reply.ok === false) {
        say(reply.error.code + ": " + reply.error.message, true);
      }
    });
    ws.addEventListener("close", function () {
      clearInterval(poll);
      pending.clear();
      say("disconnected; reconnecting", true);
      setTimeout(connect, 2000);
    });
  }

  document.getElementById("dial").addEventListener("submit", function (e) {
    e.preventDefault();
    const to = document.getElementById("dial-to").value.trim();
    const room = document.getElementById("dial-room").value.trim();
    send({ cmd: "dial", to: to, room: room }, function (reply) {
      if (reply.ok) {
        say("dialling " + to + ": call " + reply.result.call, false);
      } else {
        say("dial: " + reply.error.code + ": " + reply.error.message, true);
      }
    });
  });

  connect();
})();
