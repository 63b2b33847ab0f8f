//! End to end with Linphone (`linphonec`) on the default configuration: it
//! keys PIN 8642# once as RFC 4733 events and once as SIP INFO. Its SIP INFO
//! digits come paced by transaction (the first at once, the rest about 5 s
//! later), which a 5 s inter-digit timeout used to cut short.

mod common;

use std::time::Duration;

use common::linphone::{Dtmf, Linphone};
use common::signal::{temp_dir, write_wav};
use common::{daemon, digits_until_join, sourced};
use confgate::dtmf::Source;

/// A quiet 440 Hz hum: Linphone's microphone for the call.
fn hum(samples: usize) -> Vec<i16> {
    common::signal::sine(8000, 440.0, 300.0, samples)
}

async fn linphone_keys_8642(dtmf: Dtmf, source: Source) {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let tag = format!("{dtmf:?}").to_lowercase();
    let dir = temp_dir(&format!("e2e-linphone-{tag}"));
    let mic = dir.join("mic.wav");
    write_wav(&mic, &hum(8000 * 40));
    let mut phone = Linphone::start(&format!("lp{tag}"), &mic, dtmf).await;
    let connected = phone
        .call(
            &format!("sip:4000@{}", d.sip_addr()),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        connected,
        "the call never connected: see {}",
        phone.dir.display()
    );
    phone.command("8642#").await;
    let (digits, room) = digits_until_join(&mut events, Duration::from_secs(20)).await;
    let dir = phone.quit().await;
    d.shutdown().await;
    assert_eq!(digits, sourced("8642#", source), "see {}", dir.display());
    assert_eq!(room.as_deref(), Some("8642"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_keys_the_pin_as_rfc4733_events() {
    linphone_keys_8642(Dtmf::Rfc4733, Source::Rfc4733).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_keys_the_pin_as_sip_info() {
    linphone_keys_8642(Dtmf::Info, Source::Info).await;
}
