//! Debian's `chromium`, headless, driven over the Chrome DevTools Protocol
//! (CDP): JSON messages on a WebSocket that the browser serves on loopback.
//!
//! One [`Chromium`] is one browser process with a fresh profile; each
//! [`Page`] is a tab attached over the same WebSocket in "flat" session mode
//! (every message for the tab carries its `sessionId`). Every call has a
//! timeout, so a hung browser fails the test within seconds instead of
//! hanging it, and nothing here panics: errors come back as [`Error`] with
//! what the browser said.
//!
//! WebRTC to 127.0.0.1 works with [`LOOPBACK_WEBRTC_ARGS`], which are
//! always passed; see there for what Chromium does without them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long the browser may take to start and print its DevTools address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one CDP command (and a page load) may take by default.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How many lines of the browser's stderr are kept for diagnostics.
const STDERR_LINES: usize = 200;

/// The flags that make WebRTC work over loopback (checked with Chromium 156):
///
/// - `--allow-loopback-in-peer-connection`: without it Chromium gathers no
///   candidate on `lo` at all; in a network namespace where `lo` is the only
///   interface it then gathers none and ICE never starts. With it, that
///   namespace yields exactly one host candidate, 127.0.0.1 (no ::1).
/// - `--disable-features=WebRtcHideLocalIpsWithMdns`: candidates carry the
///   real address instead of a random `*.local` name that a peer outside the
///   browser cannot resolve. (Here candidates came out with real addresses
///   even without it, with and without a getUserMedia grant; the flag keeps
///   it that way where the mDNS responder works.)
///
/// On a host with other interfaces Chromium gathers those too and prefers
/// them for its own side (loopback carries network-cost 50). Even when each
/// side is handed only the other's 127.0.0.1 candidates, it checks from its
/// other addresses as well (the kernel delivers 192.0.2.2 -> 127.0.0.1), and
/// in about half the runs here a pair settled as 192.0.2.2 -> 127.0.0.1,
/// the far end seeing a peer-reflexive candidate (its address shown as "").
/// Only a network namespace where `lo` is the only interface makes both ends
/// 127.0.0.1 every time.
pub const LOOPBACK_WEBRTC_ARGS: &[&str] = &[
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
];

/// What a harness error says: the command, and what went wrong.
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

/// How the browser is started beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ChromeOptions {
    /// A WAV file (16-bit PCM, 44.1 or 48 kHz, mono or stereo) that the fake
    /// microphone plays, looped. Without it the fake microphone beeps.
    pub fake_audio: Option<PathBuf>,
    /// Accept any TLS certificate (the tests' self-signed ones).
    pub ignore_cert_errors: bool,
    /// More command-line flags, after the defaults. Chromium keeps only the
    /// last `--disable-features=`: one given here must list
    /// `WebRtcHideLocalIpsWithMdns` again.
    pub extra_args: Vec<String>,
}

/// The browser binary: `$CONFGATE_CHROMIUM`, or `chromium` on the PATH.
fn binary() -> String {
    std::env::var("CONFGATE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// A CDP event: the session it belongs to ("" for the browser), its method
/// and its parameters.
#[derive(Debug, Clone)]
struct Event {
    session: String,
    method: String,
    params: Value,
}

type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// The WebSocket to the browser, shared by the browser handle and its pages.
struct Conn {
    sink: tokio::sync::Mutex<WsSink>,
    next_id: AtomicU64,
    /// Commands sent and not yet answered, by message id.
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>,
    /// Every event, for whoever waits for one (page loads).
    events: broadcast::Sender<Event>,
    /// Console messages and uncaught exceptions, by session.
    console: Mutex<HashMap<String, Vec<String>>>,
}

impl Conn {
    /// Send `method` (to `session`, or to the browser when empty) and wait
    /// up to `wait` for its reply.
    async fn call(
        &self,
        session: &str,
        method: &str,
        params: Value,
        wait: Duration,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !session.is_empty() {
            msg["sessionId"] = Value::String(session.to_owned());
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let sent = tokio::time::timeout(wait, async {
            self.sink
                .lock()
                .await
                .send(Message::text(msg.to_string()))
                .await
        })
        .await;
        let reply = match sent {
            Ok(Ok(())) => tokio::time::timeout(wait, rx).await,
            Ok(Err(e)) => {
                lock(&self.pending).remove(&id);
                return err(format!("{method}: sending to the browser: {e}"));
            }
            Err(_) => {
                lock(&self.pending).remove(&id);
                return err(format!("{method}: could not send within {wait:?}"));
            }
        };
        match reply {
            Ok(Ok(r)) => r.map_err(|Error(e)| Error(format!("{method}: {e}"))),
            Ok(Err(_)) => err(format!("{method}: the browser connection closed")),
            Err(_) => {
                lock(&self.pending).remove(&id);
                err(format!("{method}: no reply within {wait:?}"))
            }
        }
    }

    /// Route one message from the browser: a reply to its waiting command,
    /// or an event to the console log and the event channel.
    fn dispatch(&self, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            let Some(tx) = lock(&self.pending).remove(&id) else {
                return;
            };
            let r = match msg.get("error") {
                Some(e) => err(e["message"].as_str().unwrap_or("error").to_owned()),
                None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = tx.send(r);
            return;
        }
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            return;
        };
        let session = msg["sessionId"].as_str().unwrap_or("").to_owned();
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let line = match method {
            "Runtime.consoleAPICalled" => Some(console_line(&params)),
            "Runtime.exceptionThrown" => Some(format!(
                "[exception] {}",
                exception_text(&params["exceptionDetails"])
            )),
            _ => None,
        };
        if let Some(line) = line {
            lock(&self.console)
                .entry(session.clone())
                .or_default()
                .push(line);
        }
        let _ = self.events.send(Event {
            session,
            method: method.to_owned(),
            params,
        });
    }
}

/// A poisoned lock still holds usable data here (plain maps and logs).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `[log] a b c` from a Runtime.consoleAPICalled event.
fn console_line(params: &Value) -> String {
    let kind = params["type"].as_str().unwrap_or("log");
    let args: Vec<String> = params["args"]
        .as_array()
        .map(|a| a.iter().map(remote_object_text).collect())
        .unwrap_or_default();
    format!("[{kind}] {}", args.join(" "))
}

/// A CDP RemoteObject as text: its value when it has one, else its description.
fn remote_object_text(o: &Value) -> String {
    match o.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => o["description"]
            .as_str()
            .or(o["type"].as_str())
            .unwrap_or("?")
            .to_owned(),
    }
}

/// What a Runtime ExceptionDetails says: the exception's description (its
/// message and stack) when there is one, else the text ("Uncaught").
fn exception_text(ex: &Value) -> String {
    ex["exception"]["description"]
        .as_str()
        .or(ex["exception"]["value"].as_str())
        .or(ex["text"].as_str())
        .unwrap_or("exception")
        .to_owned()
}

/// A headless browser with a profile of its own; killed, and its profile
/// removed, when dropped.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    conn: Arc<Conn>,
    reader: tokio::task::JoinHandle<()>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Chromium {
    /// Start the browser and connect to it.
    pub async fn start(opts: &ChromeOptions) -> Result<Chromium> {
        static N: AtomicU32 = AtomicU32::new(0);
        let profile = std::env::temp_dir().join(format!(
            "confgate-chromium-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)
            .map_err(|e| Error(format!("profile {}: {e}", profile.display())))?;

        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--remote-debugging-port=0",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
        ]
        .iter()
        .chain(LOOPBACK_WEBRTC_ARGS)
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        if let Some(wav) = &opts.fake_audio {
            args.push(format!(
                "--use-file-for-fake-audio-capture={}",
                wav.display()
            ));
        }
        if opts.ignore_cert_errors {
            args.push("--ignore-certificate-errors".to_owned());
        }
        args.extend(opts.extra_args.iter().cloned());
        args.push("about:blank".to_owned());

        // A process group of its own, so that Drop ends the renderers and
        // helpers with the browser.
        use std::os::unix::process::CommandExt as _;
        let mut child = match Command::new(binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return err(format!(
                    "starting {}: {e} (not installed? run scripts/setup --test)",
                    binary()
                ));
            }
        };

        // stderr is read to its end by a thread of its own (a full pipe
        // would stall the browser); it hands over the DevTools address and
        // keeps the last lines for diagnostics.
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (url_tx, url_rx) = oneshot::channel::<String>();
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        if let Some(tx) = url_tx.take() {
                            let _ = tx.send(url.trim().to_owned());
                        }
                    }
                    let mut t = lock(&tail);
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }

        let connected = async {
            let url = match tokio::time::timeout(START_TIMEOUT, url_rx).await {
                Ok(Ok(url)) => url,
                Ok(Err(_)) => return err("the browser exited before listening for DevTools"),
                Err(_) => return err(format!("no DevTools address within {START_TIMEOUT:?}")),
            };
            match tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(&url)).await {
                Ok(Ok((ws, _))) => Ok(ws),
                Ok(Err(e)) => err(format!("connecting to {url}: {e}")),
                Err(_) => err(format!(
                    "connecting to {url}: no answer in {CALL_TIMEOUT:?}"
                )),
            }
        }
        .await;
        let ws = match connected {
            Ok(ws) => ws,
            Err(Error(e)) => {
                kill_group(&mut child);
                // The stderr thread sees EOF once the browser is gone.
                std::thread::sleep(Duration::from_millis(100));
                let tail: Vec<String> = lock(&stderr).iter().cloned().collect();
                let _ = std::fs::remove_dir_all(&profile);
                return err(format!("{e}; browser stderr:\n{}", tail.join("\n")));
            }
        };

        let (sink, mut stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: tokio::sync::Mutex::new(sink),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            console: Mutex::new(HashMap::new()),
        });
        let reader_conn = conn.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(text) = msg {
                    reader_conn.dispatch(text.as_str());
                }
            }
            // Closed: fail whatever still waits for a reply.
            lock(&reader_conn.pending).clear();
        });
        Ok(Chromium {
            child,
            profile,
            conn,
            reader,
            stderr,
        })
    }

    /// The browser's product and version ("Chrome/156.0.8078.114").
    pub async fn version(&self) -> Result<String> {
        let v = self
            .conn
            .call("", "Browser.getVersion", json!({}), CALL_TIMEOUT)
            .await?;
        Ok(v["product"].as_str().unwrap_or("?").to_owned())
    }

    /// A new tab showing `url`, once it has loaded.
    pub async fn new_page(&self, url: &str) -> Result<Page> {
        let c = &self.conn;
        let t = c
            .call(
                "",
                "Target.createTarget",
                json!({ "url": "about:blank" }),
                CALL_TIMEOUT,
            )
            .await?;
        let Some(target) = t["targetId"].as_str() else {
            return err(format!("Target.createTarget: no targetId in {t}"));
        };
        let s = c
            .call(
                "",
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
                CALL_TIMEOUT,
            )
            .await?;
        let Some(session) = s["sessionId"].as_str() else {
            return err(format!("Target.attachToTarget: no sessionId in {s}"));
        };
        let page = Page {
            conn: c.clone(),
            session: session.to_owned(),
            timeout: CALL_TIMEOUT,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await?;
        page.call("Runtime.enable", json!({})).await?;
        if url != "about:blank" {
            page.navigate(url).await?;
        }
        Ok(page)
    }

    /// The last lines the browser wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr).iter().cloned().collect()
    }
}

/// SIGKILL to the browser's process group, then reap the browser.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with the group id of the process group created for
        // this child; it touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.reader.abort();
        kill_group(&mut self.child);
        // Helpers may still be exiting and writing to the profile.
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A tab of the browser. Calls fail (not hang) once the browser is gone.
pub struct Page {
    conn: Arc<Conn>,
    session: String,
    /// How long each command, and a page load, may take.
    pub timeout: Duration,
}

impl Page {
    /// Send a raw CDP command to this tab.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.conn
            .call(&self.session, method, params, self.timeout)
            .await
    }

    /// Go to `url` and wait for its load event.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        // Subscribed before navigating, so the load event cannot slip by.
        let mut events = self.conn.events.subscribe();
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(e) = r["errorText"].as_str().filter(|e| !e.is_empty()) {
            return err(format!("navigating to {url}: {e}"));
        }
        // Without a loader the navigation stayed in the document (a #hash).
        let Some(loader) = r["loaderId"].as_str() else {
            return Ok(());
        };
        let loaded = tokio::time::timeout(self.timeout, async {
            loop {
                match events.recv().await {
                    Ok(e)
                        if e.session == self.session
                            && e.method == "Page.lifecycleEvent"
                            && e.params["name"] == "load"
                            && e.params["loaderId"] == loader =>
                    {
                        return true
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        match loaded {
            Ok(true) => Ok(()),
            Ok(false) => err(format!(
                "navigating to {url}: the browser connection closed"
            )),
            Err(_) => err(format!("{url} did not load within {:?}", self.timeout)),
        }
    }

    /// Evaluate `js` in the page; a promise is awaited. The value comes back
    /// as JSON (`null` for undefined); a thrown exception is an `Err` with
    /// its message and stack.
    pub async fn eval(&self, js: &str) -> Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": js,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return err(exception_text(ex));
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluate `js` every 50 ms until its value is truthy, and return that
    /// value; fail after `timeout` with the last value or error seen.
    pub async fn wait_for(&self, js: &str, timeout: Duration) -> Result<Value> {
        let mut last = String::from("nothing");
        let polled = tokio::time::timeout(timeout, async {
            loop {
                match self.eval(js).await {
                    Ok(v) if truthy(&v) => return v,
                    Ok(v) => last = v.to_string(),
                    Err(e) => last = format!("error: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        polled.map_err(|_| Error(format!("`{js}` not true within {timeout:?}; last: {last}")))
    }

    /// Click the first element matching `selector` (its `.click()`).
    pub async fn click(&self, selector: &str) -> Result<()> {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); \
             if (!e) throw new Error('no element ' + {s}); e.click(); }})()",
            s = js_string(selector)
        ))
        .await
        .map(drop)
    }

    /// Set the value of the input matching `selector` to `text`, and fire
    /// `input` and `change` as typing would.
    pub async fn type_into(&self, selector: &str, text: &str) -> Result<()> {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); \
             if (!e) throw new Error('no element ' + {s}); e.focus(); e.value = {t}; \
             e.dispatchEvent(new Event('input', {{ bubbles: true }})); \
             e.dispatchEvent(new Event('change', {{ bubbles: true }})); }})()",
            s = js_string(selector),
            t = js_string(text)
        ))
        .await
        .map(drop)
    }

    /// Write a PNG of the visible page to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .map_err(|e| Error(format!("Page.captureScreenshot: {e}")))?;
        std::fs::write(path, png).map_err(|e| Error(format!("{}: {e}", path.display())))
    }

    /// The console messages and uncaught exceptions of this tab so far,
    /// oldest first (`[log] ...`, `[error] ...`, `[exception] ...`).
    pub fn console(&self) -> Vec<String> {
        lock(&self.conn.console)
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }
}

/// `s` as a JavaScript string literal.
pub fn js_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// JavaScript's truthiness for a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Defines `window.toneProbe(stream)` in a page: it feeds `stream` (a
/// MediaStream with an audio track) into WebAudio and returns a function
/// `level(freqHz, bandHz = 25) -> dB`, the level of the band freqHz ± bandHz
/// in the latest 8192 samples, relative to a full-scale sine (a sine of
/// amplitude 1.0 at freqHz reads 0 dB; silence reads -120). The function
/// also carries `level.snr(freqHz, bandHz = 25)`, that band against all the
/// rest of the spectrum in dB, `level.rms()`, the whole block's level in
/// dBFS, and `level.context`, the AudioContext.
///
/// Chromium feeds a *remote* WebRTC stream into WebAudio only while the
/// stream also plays in a media element (without one the probe reads
/// silence, -120 dB), so the probe attaches it to a muted `<audio>` of its
/// own; `toneProbe(stream, false)` leaves that out, for local streams.
/// (getStats' inbound-rtp `audioLevel` and `totalAudioEnergy` stay 0 unless
/// the element is not muted.) A tone from the fake microphone keeps its
/// level only when getUserMedia turns `echoCancellation`,
/// `noiseSuppression` and `autoGainControl` off: with them on, gain control
/// lifted a -6 dBFS tone to -3 and noise suppression then took it to -25
/// within 3 s.
pub const TONE_PROBE_JS: &str = r#"
window.toneProbe = (stream, attach = true) => {
  if (attach) {
    const audio = document.createElement('audio');
    audio.muted = true;
    audio.srcObject = stream;
    audio.play().catch(() => {});
    document.body.appendChild(audio);
  }
  const ctx = new AudioContext();
  ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const n = analyser.fftSize;
  const x = new Float32Array(n);
  // A Hann window against leakage from the rest of the spectrum.
  const w = Float32Array.from({ length: n }, (_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / n));
  const sw2 = w.reduce((a, v) => a + v * v, 0);
  const block = () => {
    analyser.getFloatTimeDomainData(x);
    for (let i = 0; i < n; i++) x[i] *= w[i];
  };
  // |X(f)|^2 of the windowed block (Goertzel).
  const power = (f) => {
    const c = 2 * Math.cos(2 * Math.PI * f / ctx.sampleRate);
    let s1 = 0, s2 = 0;
    for (let i = 0; i < n; i++) { const s0 = x[i] + c * s1 - s2; s2 = s1; s1 = s0; }
    return s1 * s1 + s2 * s2 - c * s1 * s2;
  };
  // Power in freq ± band, summed over DFT bins; and the whole block's
  // one-sided power on the same scale (Parseval).
  const band = (freq, bw) => {
    const hz = ctx.sampleRate / n;
    let p = 0;
    for (let k = Math.max(1, Math.ceil((freq - bw) / hz)); k <= Math.floor((freq + bw) / hz); k++) p += power(k * hz);
    return p;
  };
  const total = () => n * x.reduce((a, v) => a + v * v, 0) / 2;
  const db = (p) => 10 * Math.log10(Math.max(p, 1e-12));
  // A full-scale sine puts n * sw2 / 4 into its band.
  const level = (freq, bw = 25) => { block(); return db(band(freq, bw) * 4 / (n * sw2)); };
  level.snr = (freq, bw = 25) => { block(); const p = band(freq, bw); return db(p) - db(total() - p); };
  level.rms = () => { block(); return db(total() * 4 / (n * sw2)); };
  level.context = ctx;
  return level;
};
"#;
