//! End to end with a real softphone: baresip keys PIN 1234# — once as
//! RFC 4733 events (`sndcode`), once as tones in its microphone — and the
//! call reaches room 1234.

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::keypad::tones;
use common::signal::{temp_dir, write_wav};
use common::{daemon, digits_until_join as until_join, sourced};
use confgate::dtmf::Source;

/// A faint noise floor, so the microphone is never digital silence.
fn hiss(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| ((i as u64 * 7919) % 17) as i16 - 8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_keys_the_pin_as_rfc4733_events() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let dir = temp_dir("e2e-pin-events");
    let mic = dir.join("mic.wav");
    write_wav(&mic, &hiss(8000 * 40));
    let mut phone = Baresip::start("pinevents", &mic, false).await;
    // Key once the call is answered, during the welcome prompt.
    phone
        .dial_answered(&format!("sip:4000@{}", d.sip_addr()))
        .await;
    let reply = phone.command("sndcode", "1234#").await;
    assert!(reply.contains("\"ok\":true"), "sndcode: {reply}");
    let (digits, room) = until_join(&mut events, Duration::from_secs(10)).await;
    phone.quit().await;
    d.shutdown().await;
    assert_eq!(digits, sourced("1234#", Source::Rfc4733));
    assert_eq!(room.as_deref(), Some("1234"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_keys_the_pin_as_tones_in_its_audio() {
    // In `inband` mode telephone-event is not negotiated (baresip always
    // offers it); in `auto` mode it is, and the tones are still heard.
    for mode in ["inband", "auto"] {
        let d = daemon(&[&format!("dtmf.mode={mode}")]).await;
        let mut events = d.subscribe();
        let dir = temp_dir(&format!("e2e-pin-tones-{mode}"));
        let mic = dir.join("mic.wav");
        let mut audio = hiss(8000 * 3);
        audio.extend(tones("1234#", 100, 100));
        audio.extend(hiss(8000 * 40));
        write_wav(&mic, &audio);
        let mut phone = Baresip::start(&format!("pintones{mode}"), &mic, false).await;
        let reply = phone
            .command("dial", &format!("sip:4000@{}", d.sip_addr()))
            .await;
        assert!(reply.contains("\"ok\":true"), "dial: {reply}");
        let (digits, room) = until_join(&mut events, Duration::from_secs(12)).await;
        phone.quit().await;
        d.shutdown().await;
        assert_eq!(digits, sourced("1234#", Source::Inband), "mode {mode}");
        assert_eq!(room.as_deref(), Some("1234"), "mode {mode}");
    }
}
