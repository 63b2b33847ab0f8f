// The join page: WebRTC audio, signalled over /join/ws (see docs/web.md).
"use strict";

(function () {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const stateText = document.getElementById("state");
  const roomField = document.getElementById("room");
  const pinField = document.getElementById("pin");
  const joinButton = document.getElementById("join-button");
  const leaveButton = document.getElementById("leave");
  const audio = document.getElementById("remote");
  const processingBox = document.getElementById("processing");
  const page = { state: "idle", call: null, pc: null, remoteStream: null };
  window.confgate = page;
  let ws = null;
  let mic = null;

  const asked = new URLSearchParams(location.search).get("room");
  if (asked) roomField.value = asked;

  function show(state) {
    page.state = state;
    stateText.textContent = state;
  }

  function stopMedia() {
    if (page.pc) page.pc.close();
    page.pc = null;
    if (mic) mic.getTracks().forEach(function (t) { t.stop(); });
    mic = null;
    page.call = null;
    page.remoteStream = null;
    audio.srcObject = null;
    joinButton.disabled = false;
    leaveButton.disabled = true;
  }

  function gathered(pc) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      const timer = setTimeout(resolve, 2000);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  function socket() {
    if (ws && ws.readyState <= WebSocket.OPEN) return Promise.resolve(ws);
    return new Promise(function (resolve, reject) {
      ws = new WebSocket(scheme + "//" + location.host + "/join/ws");
      ws.addEventListener("open", function () { resolve(ws); });
      ws.addEventListener("error", function () { reject(new Error("cannot reach the server")); });
      ws.addEventListener("message", onMessage);
      ws.addEventListener("close", function () {
        ws = null;
        if (page.state === "in room" || page.state === "connecting") {
          stopMedia();
          show("ended: connection lost");
        }
      });
    });
  }

  async function onMessage(m) {
    let msg;
    try { msg = JSON.parse(m.data); } catch (e) { return; }
    if (msg.joined) {
      page.call = msg.joined.call;
      try {
        await page.pc.setRemoteDescription({ type: "answer", sdp: msg.joined.sdp });
        show("in room");
      } catch (e) {
        show("error: " + e.message);
      }
    } else if (msg.error) {
      stopMedia();
      show("error: " + msg.error.code + ": " + msg.error.message);
    } else if (msg.ended) {
      stopMedia();
      show("ended: " + msg.ended.reason);
    }
  }

  async function join() {
    joinButton.disabled = true;
    leaveButton.disabled = false;
    show("connecting");
    try {
      const open = await socket();
      // Echo cancellation, noise suppression and gain control, unless the
      // user turns them off (a headset, music, a test tone).
      const processing = processingBox.checked;
      mic = await navigator.mediaDevices.getUserMedia({
        audio: {
          echoCancellation: processing,
          noiseSuppression: processing,
          autoGainControl: processing,
        },
      });
      const pc = new RTCPeerConnection();
      page.pc = pc;
      pc.addEventListener("track", function (e) {
        const stream = e.streams[0] || new MediaStream([e.track]);
        page.remoteStream = stream;
        audio.srcObject = stream;
      });
      mic.getTracks().forEach(function (t) { pc.addTrack(t, mic); });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      open.send(JSON.stringify({
        join: { room: roomField.value.trim(), pin: pinField.value, sdp: pc.localDescription.sdp },
      }));
    } catch (e) {
      stopMedia();
      show("error: " + e.message);
    }
  }

  document.getElementById("join").addEventListener("submit", function (e) {
    e.preventDefault();
    join();
  });

  leaveButton.addEventListener("click", function () {
    const was = ws;
    ws = null;
    stopMedia();
    show("ended: left");
    if (was) was.close();
  });
})();
