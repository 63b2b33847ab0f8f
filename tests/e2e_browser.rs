//! End to end with a real browser: Debian's chromium, headless, its fake
//! microphone playing a 1 kHz tone, goes through the join page into a room
//! where a baresip phone plays 700 Hz. The phone's recording holds the
//! browser's tone, and the page (a WebAudio analyser on what it receives)
//! hears the phone's. The room page, after a login, lists both members;
//! clicking mute on the phone's row mutes it, and the browser stops hearing
//! it. A screenshot of the room page is kept. Wrong PINs on the join page
//! lock it out as they do phone callers.
//!
//! Each test runs in a network namespace of its own with only `lo`, so the
//! browser has no address but 127.0.0.1.
#![allow(clippy::disallowed_methods)] // tests run in real time

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::baresip::{Baresip, Options};
use common::chromium::{js_string, ChromeOptions, Chromium, Page, TONE_PROBE_JS};
use common::signal::{goertzel, sine, temp_dir, write_wav_at};
use confgate::events::Event;

const TOKEN: &str = "web-test-token-0123456789";

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-9).log10()
}

/// Where test artefacts are kept (the room page's screenshot).
fn artefacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

/// A browser whose microphone plays `freq` Hz at -6 dBFS.
async fn chromium(freq: f64) -> Chromium {
    let dir = temp_dir("e2e-browser");
    let wav = dir.join("mic.wav");
    // Whole cycles over 3 s, so the looped file has no seam.
    write_wav_at(&wav, &sine(48000, freq, 16384.0, 3 * 48000), 48000);
    Chromium::start(&ChromeOptions {
        fake_audio: Some(wav),
        ..Default::default()
    })
    .await
    .expect("chromium starts")
}

/// Open the join page, key the PIN and join; the page's state after.
async fn join(page: &Page, pin: &str) -> String {
    page.type_into("#pin", pin).await.expect("PIN typed");
    page.eval("document.getElementById('processing').checked = false; true")
        .await
        .expect("voice processing off: a tone stays a tone");
    page.click("#join-button").await.expect("join clicked");
    let state = page
        .wait_for(
            "(() => { const s = confgate.state; \
             return (s === 'in room' || s.startsWith('error') || s.startsWith('ended')) && s; })()",
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("the join page settles: {e}; {:?}", page.console()));
    state.as_str().unwrap_or("").to_owned()
}

async fn web_daemon(extra: &[&str]) -> confgate::daemon::Daemon {
    let token = format!("control.token={TOKEN}");
    let mut args = vec!["web.listen=127.0.0.1:0", token.as_str()];
    args.extend_from_slice(extra);
    common::daemon(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_joins_a_phone_and_the_room_page_mutes_it() {
    if !common::netns::run_here(
        "a_browser_joins_a_phone_and_the_room_page_mutes_it",
        Duration::from_secs(120),
    )
    .await
    {
        return;
    }
    let d = web_daemon(&[]).await;
    let web: SocketAddr = d.web_addr().expect("the web endpoint");
    let mut events = d.subscribe();

    // The phone: 700 Hz, in room 2468.
    let dir = temp_dir("e2e-browser-phone");
    let mic = dir.join("phone.wav");
    write_wav_at(&mic, &sine(8000, 700.0, 6000.0, 8000 * 60), 8000);
    let mut phone = Baresip::start_with("pcmu", &mic, false, &Options::default()).await;
    let (room, _) = phone
        .join_room(d.sip_addr(), "2468#", Duration::ZERO, &mut events)
        .await;
    assert_eq!(room.as_deref(), Some("2468"));

    // The browser, through the join page.
    let browser = chromium(1000.0).await;
    let page = browser
        .new_page(&format!("http://{web}/join?room=2468"))
        .await
        .expect("the join page loads");
    let state = join(&page, "2468").await;
    assert_eq!(state, "in room", "{:?}", page.console());
    let call = page.eval("confgate.call").await.expect("its call id");
    let call = call.as_str().expect("a call id").to_owned();
    page.wait_for(
        "confgate.pc.connectionState === 'connected'",
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("ICE and DTLS: {e}; {:?}", page.console()));
    page.eval(TONE_PROBE_JS).await.expect("tone probe");
    page.eval("window.level = toneProbe(confgate.remoteStream); true")
        .await
        .expect("probe on what the page receives");
    // The page hears the phone's 700 Hz, and not its own 1 kHz back.
    let heard = page
        .wait_for(
            "(() => { const p = level(700), o = level(1000); \
             return p > -40 && level.snr(700) > 10 && [p, o]; })()",
            Duration::from_secs(10),
        )
        .await;
    let levels = page.eval("[level(700), level(1000), level.rms()]").await;
    eprintln!("the page hears 700 Hz, 1 kHz, all (dB): {levels:?}");
    let heard = heard.unwrap_or_else(|e| panic!("the page hears the phone: {e}; {levels:?}"));
    let (phone_db, own_db) = (heard[0].as_f64().unwrap(), heard[1].as_f64().unwrap());
    assert!(own_db < phone_db - 25.0, "the page hears itself: {heard}");

    // The room page: log in, see both members.
    let host = browser
        .new_page(&format!("http://{web}/login"))
        .await
        .expect("the login page loads");
    host.type_into("#token", TOKEN).await.expect("token typed");
    host.eval("document.querySelector('form').submit(); true")
        .await
        .expect("login sent");
    let rows = host
        .wait_for(
            "(() => { const r = [...document.querySelectorAll('tr[data-call]')]; \
             return r.length === 2 && r.map((x) => [x.dataset.call, x.dataset.direction]); })()",
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("the room page lists two members: {e}; {:?}", host.console()));
    eprintln!("the room page lists {rows}");
    let rows = rows.as_array().expect("rows").clone();
    let web_row = rows
        .iter()
        .find(|r| r[1] == "web")
        .expect("the browser's row");
    assert_eq!(web_row[0], call.as_str());
    let phone_call = rows
        .iter()
        .find(|r| r[1] == "inbound")
        .expect("the phone's row")[0]
        .as_str()
        .unwrap()
        .to_owned();

    // Mute the phone from the page: the browser stops hearing it.
    let row = format!("tr[data-call={}]", js_string(&phone_call));
    host.click(&format!("{row} button[data-action=\"mute\"]"))
        .await
        .expect("mute clicked");
    host.wait_for(
        &format!(
            "document.querySelector({}).dataset.muted === 'true'",
            js_string(&row)
        ),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("the row shows the phone muted: {e}; {:?}", host.console()));
    // Wide enough for the whole member table.
    host.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 1280, "height": 600, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await
    .expect("viewport");
    let shot = artefacts().join("room-page.png");
    host.screenshot(&shot).await.expect("a screenshot");
    eprintln!("room page screenshot: {}", shot.display());
    let quiet = page
        .wait_for(
            &format!(
                "(() => {{ const p = level(700); return p < {} && p; }})()",
                phone_db - 30.0
            ),
            Duration::from_secs(5),
        )
        .await;
    let after = page.eval("[level(700), level(1000), level.rms()]").await;
    eprintln!("after mute the page hears 700 Hz, 1 kHz, all (dB): {after:?}");
    assert!(quiet.is_ok(), "the muted phone is still heard: {after:?}");

    // The phone heard the browser's tone all along (it is muted, not deaf).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rec = Baresip::heard(&phone.quit().await).expect("a recording");
    drop(browser);
    d.shutdown().await;
    let samples: Vec<i16> = hound::WavReader::open(&rec)
        .expect("the phone's recording")
        .samples::<i16>()
        .map_while(Result::ok)
        .collect();
    // Its last two seconds but the very end: the browser has long been in.
    assert!(samples.len() > 8000 * 4, "{} samples", samples.len());
    let window = &samples[samples.len() - 8000 * 5 / 2..samples.len() - 8000 / 2];
    let (tone, floor) = (
        db(goertzel(window, 8000, 1000.0)),
        db(goertzel(window, 8000, 2300.0)),
    );
    eprintln!("the phone hears 1 kHz at {tone:.1} dB over a floor of {floor:.1} dB");
    assert!(tone - floor > 20.0, "the phone hears the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_on_the_join_page_count_toward_the_lockout() {
    if !common::netns::run_here(
        "wrong_pins_on_the_join_page_count_toward_the_lockout",
        Duration::from_secs(60),
    )
    .await
    {
        return;
    }
    let d = web_daemon(&["pin.caller_failures=2"]).await;
    let web = d.web_addr().expect("the web endpoint");
    let mut events = d.subscribe();
    let browser = chromium(1000.0).await;
    let page = browser
        .new_page(&format!("http://{web}/join?room=2468"))
        .await
        .expect("the join page loads");
    assert_eq!(join(&page, "1111").await, "error: wrong_pin: wrong PIN");
    let state = join(&page, "3333").await;
    assert!(state.starts_with("error: locked_out"), "{state}");
    // Locked out now, with the right PIN too.
    let state = join(&page, "2468").await;
    assert!(state.starts_with("error: locked_out"), "{state}");
    let mut lockout = None;
    while let Ok(e) = events.try_recv() {
        if let Event::PinLockout { key, .. } = e {
            lockout = Some(key);
        }
    }
    // The lockout of phone callers, under the join page's caller key.
    assert_eq!(lockout.as_deref(), Some("caller:web@127.0.0.1"));
    drop(browser);
    d.shutdown().await;
}
