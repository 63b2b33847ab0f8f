//! A phone built on rsipstack dials confgate on loopback and hears the
//! welcome prompt: 100 → 183 (early media) → 200 with an SDP answer, RTP
//! paced at 20 ms whose decoded audio is the prompt, then BYE.

mod common;

use std::time::Duration;

use common::uac::Uac;
use common::{
    collect_rtp, daemon, find_prompt_start, offer, rtp_socket, through_g711, welcome_prompt,
};
use confgate::media::codec::Codec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hears_the_prompt_paced_at_20ms() {
    let d = daemon(&[]).await;
    let rtp = rtp_socket().await;
    let phone = Uac::new().await;
    let call = phone
        .dial(
            d.sip_addr(),
            "4000",
            offer(rtp.local_addr().unwrap(), "0 101", ""),
        )
        .await;
    assert_eq!(call.final_code, 200);
    let early: Vec<_> = call.progress.iter().filter(|(c, ..)| *c == 183).collect();
    assert!(
        !early.is_empty() && early[0].2,
        "183 with SDP before the answer: {:?}",
        call.progress
    );
    assert!(call.answer_sdp.contains("m=audio") && call.answer_sdp.contains("RTP/AVP 0 101"));
    eprintln!(
        "INVITE → 200 OK: {:.1} ms (early media configured: 300 ms)",
        call.invite_to_final.as_secs_f64() * 1e3
    );

    let prompt = welcome_prompt();
    let expected = through_g711(Codec::Pcmu, &prompt);
    let secs = prompt.len() as f64 / 8000.0;
    let packets = collect_rtp(
        &rtp,
        Codec::Pcmu,
        Duration::from_secs(2),
        Duration::from_secs_f64(secs + 2.5),
    )
    .await;
    let (start, first_frame) =
        find_prompt_start(&packets, &expected).expect("the prompt's first frame arrives");

    // Every later frame of the prompt arrives intact and in order.
    let frames: Vec<&[i16]> = expected.chunks(160).skip(first_frame).collect();
    let got = &packets[start..];
    assert!(
        got.len() >= frames.len() - 1,
        "{} packets for {} frames",
        got.len(),
        frames.len()
    );
    let whole = frames.len() - 1; // the last frame is padded with silence
    let matching = frames[..whole]
        .iter()
        .zip(got)
        .filter(|(f, p)| p.pcm == **f)
        .count();
    assert_eq!(
        matching, whole,
        "decoded audio is the prompt, frame for frame"
    );

    // Paced: consecutive sequence numbers, timestamps 160 apart, 20 ms apart on the wire.
    for w in got[..whole].windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
        assert_eq!(w[1].pt, 0);
    }
    let span = got[whole - 1].at - got[0].at;
    let per_packet = span.as_secs_f64() / (whole - 1) as f64;
    eprintln!(
        "prompt: {whole} frames, mean spacing {:.2} ms",
        per_packet * 1e3
    );
    assert!(
        (0.017..0.023).contains(&per_packet),
        "mean spacing {per_packet}"
    );

    call.dialog.bye().await.expect("BYE answered");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_to_200_latency_without_early_media() {
    let d = daemon(&["sip.early_media=false"]).await;
    let rtp = rtp_socket().await;
    let phone = Uac::new().await;
    let mut times = Vec::new();
    for _ in 0..20 {
        let call = phone
            .dial(
                d.sip_addr(),
                "4000",
                offer(rtp.local_addr().unwrap(), "8", ""),
            )
            .await;
        assert_eq!(call.final_code, 200);
        assert!(
            call.answer_sdp.contains("RTP/AVP 8"),
            "PCMA when only PCMA is offered"
        );
        times.push(call.invite_to_final);
        call.dialog.bye().await.ok();
        // The media thread frees a call's ports at its next 20 ms tick:
        // without a pause, calls faster than that hold every pair of the
        // test's 10 and the next is refused with 503, as it should be.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    times.sort();
    eprintln!(
        "INVITE → 200 OK over {} calls: p50 {:.2} ms, max {:.2} ms",
        times.len(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    d.shutdown().await;
}
