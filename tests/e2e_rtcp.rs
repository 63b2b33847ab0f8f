//! End to end with baresip: in a room, it gets our RTCP reports and we get
//! its. baresip reports RTCP to its control socket as `CALL_RTCP` each time
//! a sender report of ours arrives: `rx.sent` counts the packets it has had
//! from the SSRC that sent the report (so it is non-zero only when our SR
//! names our RTP stream), and `tx.jit` is the jitter our report block says
//! we measured on its stream. `rooms` then shows its round-trip time and MOS.

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::signal::{sine, temp_dir, write_wav};
use common::{daemon, digits_until_join};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_confgate_exchange_reports_and_the_member_is_scored() {
    let d = daemon(&[]).await;
    let mut events = d.subscribe();
    let dir = temp_dir("e2e-rtcp");
    let mic = dir.join("tone.wav");
    write_wav(&mic, &sine(8000, 700.0, 4000.0, 8000 * 40));
    let mut phone = Baresip::start("rtcp", &mic, false).await;
    phone
        .dial_answered(&format!("sip:4000@{}", d.sip_addr()))
        .await;
    phone.command("sndcode", "2468#").await;
    let (_, room) = digits_until_join(&mut events, Duration::from_secs(10)).await;
    assert_eq!(room.as_deref(), Some("2468"));

    // Our SR reached it, naming the stream it receives, with a report block
    // on its own stream.
    let seen = phone
        .wait_event_where("CALL_RTCP", Duration::from_secs(15), |e| {
            let stats = &e["rtcp_stats"];
            stats["rx"]["sent"].as_u64().unwrap_or(0) > 0
                && stats["tx"]["jit"].as_u64().unwrap_or(0) > 0
        })
        .await;
    let seen = seen.expect("a CALL_RTCP with our SR's stream and our report block");
    eprintln!("baresip: {}", seen["rtcp_stats"]);
    assert_eq!(seen["rtcp_stats"]["tx"]["lost"], 0, "no loss on loopback");
    // The jitter we measured on its stream (µs), a loopback's few ms at most.
    let jitter_us = seen["rtcp_stats"]["tx"]["jit"].as_u64().unwrap_or(0);
    assert!(jitter_us < 20_000, "we reported {jitter_us} µs of jitter");

    // Its reports reached us: a round-trip time and a score.
    let board = d.switchboard();
    let mut member = None;
    for _ in 0..150 {
        let m = board
            .rooms()
            .await
            .into_iter()
            .flat_map(|r| r.members)
            .next();
        if m.as_ref()
            .is_some_and(|m| m.quality.rtt_ms.is_some() && m.quality.mos.is_some())
        {
            member = m;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let member = member.expect("rooms lists an RTT and a MOS for baresip");
    eprintln!(
        "confgate: {:?}, jitter buffer {} ms",
        member.quality, member.jitter_ms
    );
    let rtt = member.quality.rtt_ms.unwrap();
    assert!((0.0..50.0).contains(&rtt), "loopback RTT {rtt} ms");
    assert!(member.quality.mos.unwrap() > 4.0, "{:?}", member.quality);
    assert_eq!(member.quality.remote_lost, Some(0.0));
    phone.quit().await;
    d.shutdown().await;
}
