//! SIP on the wire: what a trunk sees from confgate for INVITE, CANCEL,
//! OPTIONS, unknown methods, codec mismatch, hold and malformed input.

mod common;

use std::time::Duration;

use common::raw::RawPhone;
use common::{daemon, offer, rtp_socket};
use confgate::daemon::Daemon;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(5);

/// BYE from the phone, answered 200.
async fn hang_up(phone: &mut RawPhone) {
    phone.in_dialog("BYE", "", "").await;
    let bye = phone.until_final("BYE", WAIT).await;
    assert_eq!(bye.last().map(|r| r.code), Some(200), "{bye:#?}");
}

/// A PCMU call to `d`, answered and acknowledged; the phone and its RTP socket.
async fn answered(d: &Daemon, call_id: &str) -> (RawPhone, UdpSocket) {
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), call_id).await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(200), "{seen:#?}");
    phone.ack(None).await;
    (phone, rtp)
}

#[tokio::test]
async fn invite_gets_trying_progress_then_ok_with_sdp_answer() {
    let d = daemon(&[]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-invite").await;
    phone
        .invite(&offer(
            rtp.local_addr().unwrap(),
            "8 0 101",
            "a=sendrecv\r\n",
        ))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let codes: Vec<u16> = seen.iter().map(|r| r.code).collect();
    assert_eq!(codes, [100, 183, 200], "responses: {seen:#?}");
    let ok = &seen[2];
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(ok
        .header("User-Agent")
        .is_some_and(|ua| ua.starts_with("confgate/")));
    assert!(ok
        .header("Contact")
        .is_some_and(|c| c.contains("sip:confgate@127.0.0.1")));
    let body = ok.body();
    // Our preference (PCMU first) wins over the offer's order.
    assert!(
        body.contains("m=audio ") && body.contains(" RTP/AVP 0 101"),
        "{body}"
    );
    assert!(body.contains("a=rtpmap:101 telephone-event/8000"), "{body}");
    assert!(
        body.contains("a=ptime:20") && body.contains("a=sendrecv"),
        "{body}"
    );
    assert!(
        !seen[1].body().is_empty(),
        "183 carries SDP for early media"
    );
    phone.ack(None).await;
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn cancel_before_answer_gets_200_and_487() {
    let d = daemon(&["sip.early_media_ms=3000"]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-cancel").await;
    let branch = phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let first = phone.recv(WAIT).await.expect("100 Trying");
    assert_eq!(first.code, 100);
    phone.cancel(&branch).await;
    let mut codes = Vec::new();
    while let Some(r) = phone.recv(WAIT).await {
        codes.push((r.code, r.cseq_method().unwrap_or("").to_owned()));
        if r.code == 487 {
            break;
        }
    }
    assert!(codes.contains(&(200, "CANCEL".into())), "{codes:?}");
    assert!(codes.contains(&(487, "INVITE".into())), "{codes:?}");
    assert!(
        !codes.iter().any(|(c, m)| *c == 200 && m == "INVITE"),
        "never answered: {codes:?}"
    );
    phone.ack(Some(&branch)).await;
    d.shutdown().await;
}

#[tokio::test]
async fn options_gets_200_with_allow_and_accept() {
    let d = daemon(&[]).await;
    let phone = RawPhone::new(d.sip_addr(), "wire-options").await;
    phone
        .send_raw(
            phone
                .request("OPTIONS", 1, "OPTIONS", "opt1", "", "")
                .as_bytes(),
        )
        .await;
    let r = phone.recv(WAIT).await.expect("a response");
    assert_eq!(r.code, 200);
    let allow = r.header("Allow").expect("Allow");
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"] {
        assert!(allow.contains(m), "{allow}");
    }
    assert!(r
        .header("Accept")
        .is_some_and(|a| a.contains("application/sdp")));
    d.shutdown().await;
}

#[tokio::test]
async fn options_over_tcp_gets_200() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = daemon(&[]).await;
    let phone = RawPhone::new(d.sip_addr(), "wire-tcp").await;
    let mut tcp = tokio::net::TcpStream::connect(d.sip_addr())
        .await
        .expect("TCP listens too");
    let req = phone
        .request("OPTIONS", 1, "OPTIONS", "tcp1", "", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("reply")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
    d.shutdown().await;
}

#[tokio::test]
async fn unknown_method_gets_405_with_allow() {
    let d = daemon(&[]).await;
    let phone = RawPhone::new(d.sip_addr(), "wire-405").await;
    phone
        .send_raw(
            phone
                .request(
                    "SUBSCRIBE",
                    1,
                    "SUBSCRIBE",
                    "sub1",
                    "Event: presence\r\n",
                    "",
                )
                .as_bytes(),
        )
        .await;
    let r = phone.recv(WAIT).await.expect("a response");
    assert_eq!(r.code, 405);
    assert!(r.header("Allow").is_some_and(|a| a.contains("INVITE")));
    d.shutdown().await;
}

#[tokio::test]
async fn g729_only_offer_gets_488() {
    let d = daemon(&[]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-488").await;
    let branch = phone
        .invite(&offer(rtp.local_addr().unwrap(), "18", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(488), "{seen:#?}");
    phone.ack(Some(&branch)).await;
    d.shutdown().await;
}

#[tokio::test]
async fn garbage_and_truncated_invite_then_a_call_still_works() {
    let d = daemon(&["sip.early_media=false"]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-garbage").await;
    phone
        .send_raw(b"\x00\xff\x13garbage that is not SIP\r\n\r\n")
        .await;
    assert!(
        phone.recv(Duration::from_millis(300)).await.is_none(),
        "garbage: no reply"
    );

    let full = phone.request(
        "INVITE",
        1,
        "INVITE",
        "trunc1",
        "",
        &offer(rtp.local_addr().unwrap(), "0", ""),
    );
    let cut = &full.as_bytes()[..full.find("CSeq").unwrap() + 4];
    phone.send_raw(cut).await;
    if let Some(r) = phone.recv(Duration::from_millis(500)).await {
        assert_eq!(r.code, 400, "a truncated INVITE gets 400 or nothing: {r:?}");
    }
    let bad_cseq = full.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    phone.send_raw(bad_cseq.as_bytes()).await;
    let r = phone
        .recv(WAIT)
        .await
        .expect("a CSeq mismatch can be answered");
    assert_eq!(r.code, 400);

    phone.call_id = "wire-after-garbage".into();
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    assert_eq!(seen.last().map(|r| r.code), Some(200), "{seen:#?}");
    phone.ack(None).await;
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn reinvite_to_hold_is_answered_recvonly_and_media_stops() {
    let d = daemon(&["sip.early_media=false"]).await;
    let rtp = rtp_socket().await;
    let addr = rtp.local_addr().unwrap();
    let mut phone = RawPhone::new(d.sip_addr(), "wire-hold").await;
    phone.invite(&offer(addr, "0", "")).await;
    assert_eq!(
        phone
            .until_final("INVITE", WAIT)
            .await
            .last()
            .map(|r| r.code),
        Some(200)
    );
    phone.ack(None).await;
    let mut buf = [0u8; 2048];
    tokio::time::timeout(WAIT, rtp.recv_from(&mut buf))
        .await
        .expect("RTP flows")
        .unwrap();

    phone
        .in_dialog("INVITE", "", &offer(addr, "0", "a=sendonly\r\n"))
        .await;
    let held = phone.until_final("INVITE", WAIT).await;
    let ok = held.last().expect("re-INVITE answered");
    assert_eq!(ok.code, 200);
    assert!(ok.body().contains("a=recvonly"), "{}", ok.body());
    phone.ack(None).await;
    // Drain what was in flight, then expect silence on the wire.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(10), rtp.recv_from(&mut buf)).await
    {}
    assert!(
        tokio::time::timeout(Duration::from_millis(400), rtp.recv_from(&mut buf))
            .await
            .is_err(),
        "no media while held"
    );

    phone
        .in_dialog("INVITE", "", &offer(addr, "0", "a=sendrecv\r\n"))
        .await;
    let resumed = phone.until_final("INVITE", WAIT).await;
    assert!(resumed.last().unwrap().body().contains("a=sendrecv"));
    phone.ack(None).await;
    let n = tokio::time::timeout(WAIT, rtp.recv_from(&mut buf))
        .await
        .expect("media resumes")
        .unwrap()
        .0;
    assert!(n > 12);
    assert_ne!(
        buf[1] & 0x80,
        0,
        "marker bit on the first packet after hold"
    );
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn idle_call_is_hung_up_with_bye() {
    let d = daemon(&["sip.early_media=false", "calls.idle_timeout_secs=1"]).await;
    let (phone, _rtp) = answered(&d, "wire-idle").await;
    let bye = phone.recv_request(WAIT).await.expect("confgate hangs up");
    assert!(bye.starts_with("BYE "), "{bye}");
    assert!(bye.contains("Call-ID: wire-idle"));
    d.shutdown().await;
}

#[tokio::test]
async fn shutdown_hangs_up_every_call() {
    let d = daemon(&["sip.early_media=false"]).await;
    let (phone, _rtp) = answered(&d, "wire-shutdown").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(d.shutdown());
    let bye = phone.recv_request(WAIT).await.expect("BYE on shutdown");
    assert!(bye.starts_with("BYE "), "{bye}");
    stopping.await.unwrap();
}

#[tokio::test]
async fn late_offer_gets_our_offer_and_media_follows_the_answer_in_the_ack() {
    let d = daemon(&[]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-late-offer").await;
    phone.invite("").await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let ok = seen.last().expect("answered");
    assert_eq!(ok.code, 200, "{seen:#?}");
    assert!(
        !seen.iter().any(|r| r.code == 183),
        "no early media without an offer"
    );
    assert!(
        ok.body().contains("RTP/AVP 0 8 101"),
        "our offer: {}",
        ok.body()
    );
    // The answer in the ACK picks PCMA and says where to send.
    let answer = offer(rtp.local_addr().unwrap(), "8", "");
    let ack = phone.request("ACK", 1, "ACK", "lateack", "", &answer);
    phone.send_raw(ack.as_bytes()).await;
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(WAIT, rtp.recv_from(&mut buf))
        .await
        .expect("RTP to the address in the ACK's answer")
        .unwrap();
    assert!(n > 12);
    assert_eq!(buf[1] & 0x7f, 8, "PCMA, as answered");
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn rport_sends_the_response_to_where_the_request_came_from() {
    let d = daemon(&[]).await;
    let phone = RawPhone::new(d.sip_addr(), "wire-rport").await;
    // The Via claims port 9 (as behind NAT); with rport the answer must come
    // back to the real source port and say which one it was.
    let req = phone
        .request("OPTIONS", 1, "OPTIONS", "rport1", "", "")
        .replace(
            &format!("Via: SIP/2.0/UDP {}", phone.local()),
            "Via: SIP/2.0/UDP 127.0.0.1:9",
        );
    phone.send_raw(req.as_bytes()).await;
    let r = phone.recv(WAIT).await.expect("answer at the source port");
    assert_eq!(r.code, 200);
    let via = r.header("Via").expect("Via");
    assert!(
        via.contains(&format!("rport={}", phone.local().port())),
        "{via}"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn session_refresh_without_sdp_is_answered() {
    let d = daemon(&["sip.early_media=false"]).await;
    let (mut phone, _rtp) = answered(&d, "wire-refresh").await;
    phone.in_dialog("UPDATE", "", "").await;
    let update = phone.until_final("UPDATE", WAIT).await;
    assert_eq!(update.last().map(|r| r.code), Some(200), "{update:#?}");
    phone.in_dialog("INVITE", "", "").await;
    let reinvite = phone.until_final("INVITE", WAIT).await;
    let ok = reinvite.last().expect("answered");
    assert_eq!(ok.code, 200);
    assert!(
        ok.body().contains("m=audio"),
        "our current session as the offer: {}",
        ok.body()
    );
    phone.ack(None).await;
    hang_up(&mut phone).await;
    d.shutdown().await;
}

#[tokio::test]
async fn requests_during_early_media_are_answered() {
    let d = daemon(&["sip.early_media_ms=3000"]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-early-info").await;
    let branch = phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let mut progress = None;
    while let Some(r) = phone.recv(WAIT).await {
        if r.code == 183 {
            progress = Some(r);
            break;
        }
    }
    phone.to_tag = progress.expect("183").to_tag();
    phone
        .in_dialog("INFO", "Content-Type: application/dtmf-relay\r\n", "")
        .await;
    let info = phone.until_final("INFO", WAIT).await;
    assert_eq!(info.last().map(|r| r.code), Some(200), "{info:#?}");
    phone.cancel(&branch).await;
    d.shutdown().await;
}

#[tokio::test]
async fn sip_user_agent_can_hide_the_version() {
    let d = daemon(&["sip.user_agent=confgate"]).await;
    let rtp = rtp_socket().await;
    let mut phone = RawPhone::new(d.sip_addr(), "wire-ua").await;
    phone
        .invite(&offer(rtp.local_addr().unwrap(), "0", ""))
        .await;
    let seen = phone.until_final("INVITE", WAIT).await;
    let ok = seen.last().expect("answered");
    assert_eq!(ok.header("User-Agent"), Some("confgate"), "{}", ok.text);
    phone.ack(None).await;
    // The screen's own refusals say the same.
    phone
        .send_raw(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKua\r\nCall-ID: ua-bad\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
        .await;
    // A retransmitted 200 may come first.
    let r = loop {
        let r = phone.recv(WAIT).await.expect("a 400");
        if r.header("Call-ID") == Some("ua-bad") {
            break r;
        }
    };
    assert_eq!(r.code, 400, "{}", r.text);
    assert_eq!(r.header("Server"), Some("confgate"), "{}", r.text);
    hang_up(&mut phone).await;
    d.shutdown().await;
}
