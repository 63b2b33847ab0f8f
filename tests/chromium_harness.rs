//! The headless-Chromium harness on its own: pages served from loopback are
//! loaded, evaluated, clicked, typed into and photographed; and WebRTC audio
//! from the fake microphone crosses 127.0.0.1 between two peer connections
//! and is measured on the receiving side.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::chromium::{ChromeOptions, Chromium, TONE_PROBE_JS};
use common::signal::{sine, temp_dir, write_wav_at};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serve `pages` (path, HTML) over HTTP/1.1 on 127.0.0.1, one request per
/// connection; other paths get a 404.
async fn serve(pages: &'static [(&'static str, &'static str)]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match pages.iter().find(|(p, _)| *p == path) {
                    Some((_, html)) => ("200 OK", *html),
                    None => ("404 Not Found", "not found"),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

const BUTTON_PAGE: &str = r#"<!doctype html>
<html><head><title>harness</title></head><body style="background:#fff">
<h1 id="text">before</h1>
<button id="go" onclick="text.textContent = 'after'; console.log('clicked', 42)">go</button>
<input id="name" oninput="text.dataset.typed = this.value">
</body></html>"#;

const OTHER_PAGE: &str = "<!doctype html><title>other</title><p>second page</p>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_driven_and_photographed() {
    let addr = serve(&[("/", BUTTON_PAGE), ("/other", OTHER_PAGE)]).await;
    let browser = Chromium::start(&ChromeOptions::default())
        .await
        .expect("chromium starts");
    let page = browser
        .new_page(&format!("http://{addr}/"))
        .await
        .expect("page loads");

    assert_eq!(page.eval("1 + 2").await.unwrap(), 3);
    assert_eq!(
        page.eval("new Promise(r => setTimeout(() => r({ a: [1, 'x'] }), 50))")
            .await
            .unwrap(),
        serde_json::json!({ "a": [1, "x"] })
    );
    assert_eq!(
        page.eval("undefined").await.unwrap(),
        serde_json::Value::Null
    );
    let thrown = page
        .eval("(() => { throw new Error('boom here') })()")
        .await
        .expect_err("an exception is an error");
    assert!(thrown.0.contains("boom here"), "{thrown}");
    let rejected = page
        .eval("Promise.reject(new TypeError('nope'))")
        .await
        .expect_err("a rejection is an error");
    assert!(rejected.0.contains("nope"), "{rejected}");

    assert_eq!(
        page.eval("text.textContent").await.unwrap(),
        "before",
        "{:?}",
        page.console()
    );
    page.click("#go").await.expect("click");
    page.wait_for("text.textContent === 'after'", Duration::from_secs(2))
        .await
        .expect("the click changes the text");
    assert!(
        page.click("#missing").await.is_err(),
        "clicking nothing fails"
    );
    page.type_into("#name", "Zoë \"quoted\"")
        .await
        .expect("type");
    assert_eq!(
        page.eval("text.dataset.typed").await.unwrap(),
        "Zoë \"quoted\""
    );
    let timed_out = page
        .wait_for("false", Duration::from_millis(200))
        .await
        .expect_err("a false condition times out");
    assert!(timed_out.0.contains("not true"), "{timed_out}");
    assert!(
        page.console().iter().any(|l| l == "[log] clicked 42"),
        "console: {:?}",
        page.console()
    );

    let dir = temp_dir("chromium");
    let png = dir.join("page.png");
    page.screenshot(&png).await.expect("screenshot");
    let bytes = std::fs::read(&png).expect("png written");
    assert!(bytes.len() > 100, "{} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    page.navigate(&format!("http://{addr}/other"))
        .await
        .expect("second page loads");
    assert_eq!(page.eval("document.title").await.unwrap(), "other");
    std::fs::remove_dir_all(dir).ok();
}

/// Two peer connections in one page: pc1 sends the fake microphone, pc2
/// receives it. Each side is handed only the other's 127.0.0.1 candidates
/// (Chromium would otherwise pair another local interface with loopback).
const WEBRTC_PAGE: &str = r#"<!doctype html><html><body><script>
window.gathered = [];
async function connect() {
  // The browser's audio processing would treat a steady tone as noise.
  const mic = await navigator.mediaDevices.getUserMedia({ audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const pc1 = new RTCPeerConnection(), pc2 = new RTCPeerConnection();
  const pass = (from, to) => from.onicecandidate = (e) => {
    if (!e.candidate) return;
    gathered.push(e.candidate.candidate);
    if (e.candidate.address === '127.0.0.1') to.addIceCandidate(e.candidate);
  };
  pass(pc1, pc2);
  pass(pc2, pc1);
  const remote = new Promise((r) => pc2.ontrack = (e) => r(e.streams[0]));
  mic.getTracks().forEach((t) => pc1.addTrack(t, mic));
  await pc1.setLocalDescription();
  await pc2.setRemoteDescription(pc1.localDescription);
  await pc2.setLocalDescription();
  await pc1.setRemoteDescription(pc2.localDescription);
  Object.assign(window, { pc1, pc2, remote: await remote });
}
// The candidate pair a connection's transport has selected.
async function selectedPair(pc) {
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
    const p = stats.get(s.selectedCandidatePairId);
    const l = stats.get(p.localCandidateId), r = stats.get(p.remoteCandidateId);
    return { state: p.state, nominated: p.nominated, local: l.address, remote: r.address };
  }
  return null;
}
</script></body></html>"#;

/// Set in the copy of this test binary that runs in a network namespace
/// where `lo` is the only interface.
const ONLY_LO: &str = "CONFGATE_TEST_ONLY_LO";

/// WebRTC audio between two peer connections of one page. Here every
/// candidate handed over is 127.0.0.1, but Chromium also checks from this
/// host's other addresses and may settle on one of them (it prefers them to
/// loopback): the pair is printed, not asserted. In a namespace with only
/// `lo` (the test below) there is nothing else, and both ends of the pair
/// must be 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_audio_crosses_loopback() {
    let only_lo = std::env::var_os(ONLY_LO).is_some();
    // The fake microphone: a 1 kHz sine at -6 dBFS, 3 s (whole cycles, so
    // the loop is seamless), 48 kHz mono.
    let dir = temp_dir("chromium-webrtc");
    let wav = dir.join("tone.wav");
    write_wav_at(&wav, &sine(48000, 1000.0, 16384.0, 3 * 48000), 48000);
    let addr = serve(&[("/", WEBRTC_PAGE)]).await;
    let browser = Chromium::start(&ChromeOptions {
        fake_audio: Some(wav),
        ..Default::default()
    })
    .await
    .expect("chromium starts");
    let page = browser
        .new_page(&format!("http://{addr}/"))
        .await
        .expect("page loads");
    page.eval(TONE_PROBE_JS).await.expect("tone probe");
    page.eval("connect()").await.expect("peer connections");
    let state = page
        .wait_for(
            "pc1.connectionState === 'connected' && pc2.connectionState === 'connected'",
            Duration::from_secs(5),
        )
        .await;
    let gathered = page.eval("gathered").await.unwrap_or_default();
    assert!(
        state.is_ok(),
        "{state:?}; candidates {gathered}; {:?}",
        page.console()
    );

    // (a) Candidates on loopback; with only `lo`, nothing else, and both
    // ends of the selected pair on 127.0.0.1.
    eprintln!("gathered: {gathered}");
    let addresses: Vec<&str> = gathered
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str()?.split_whitespace().nth(4))
        .collect();
    assert!(addresses.contains(&"127.0.0.1"), "{gathered}");
    if only_lo {
        assert!(addresses.iter().all(|a| *a == "127.0.0.1"), "{gathered}");
    }
    for pc in ["pc1", "pc2"] {
        let pair = page
            .wait_for(
                &format!("selectedPair({pc}).then((p) => p && p.nominated && p)"),
                Duration::from_secs(2),
            )
            .await
            .expect("a nominated candidate pair");
        eprintln!("{pc} selected: {pair}");
        assert_eq!(pair["state"], "succeeded", "{pc}: {pair}");
        if only_lo {
            assert_eq!(pair["local"], "127.0.0.1", "{pc}: {pair}");
            assert_eq!(pair["remote"], "127.0.0.1", "{pc}: {pair}");
        }
    }

    // (b) The tone arrives: 1 kHz within 3 dB of the -6 dBFS sent, and
    // 2.5 kHz at least 20 dB below it.
    page.eval("window.level = toneProbe(remote); true")
        .await
        .expect("probe on the remote stream");
    let heard = page
        .wait_for(
            "(() => { const t = level(1000), o = level(2500); \
             return Math.abs(t + 6) <= 3 && t - o >= 20 && [t, o]; })()",
            Duration::from_secs(4),
        )
        .await;
    let levels = page
        .eval("[level(1000), level(2500), level.snr(1000), level.rms()]")
        .await;
    eprintln!("remote 1 kHz, 2.5 kHz, 1 kHz snr, rms (dB): {levels:?}");
    assert!(heard.is_ok(), "{heard:?}; {levels:?}; {:?}", page.console());
    std::fs::remove_dir_all(dir).ok();
}

/// The WebRTC test again in a network namespace of its own with only `lo`
/// up (`unshare -n`; needs root or user namespaces, else skipped).
#[tokio::test]
async fn webrtc_audio_in_a_namespace_with_only_lo() {
    if std::env::var_os(ONLY_LO).is_some() {
        return;
    }
    let up_lo = "ip link set lo up";
    let allowed = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", up_lo])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("skipped: cannot make a network namespace here (unshare -n)");
        return;
    }
    let exe = std::env::current_exe().expect("this test binary");
    let run = tokio::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &format!("{up_lo} && exec \"$0\" \"$@\"")])
        .arg(exe)
        .args(["--exact", "webrtc_audio_crosses_loopback", "--nocapture"])
        .env(ONLY_LO, "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the namespaced run ends within 60 s")
        .expect("unshare runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let report: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("pc")
                || l.starts_with("gathered")
                || l.starts_with("remote")
                || l.contains("test result")
        })
        .collect();
    eprintln!("in the namespace:\n{}", report.join("\n"));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}
