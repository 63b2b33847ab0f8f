#![allow(clippy::disallowed_methods)] // tests run in real time
//! SIP over TLS end to end: a real baresip dials confgate's TLS listener,
//! keys a PIN, joins a room and hangs up, with every request on TLS; then
//! confgate dials a second confgate through `trunk.transport = "tls"`,
//! verifying it with `trunk.tls_ca`, and a CA that did not sign the peer's
//! certificate fails the dial.

mod common;

use std::time::Duration;

use common::baresip::{Baresip, Options};
use common::signal::{sine, temp_dir, write_wav};
use common::{certs, daemon};
use confgate::control::{CommandError, DialRequest};
use confgate::events::{Direction, Event};
use tokio::sync::broadcast::Receiver;

const WAIT: Duration = Duration::from_secs(10);

/// The first event `pick` accepts within `WAIT`.
async fn wait_for<T>(
    events: &mut Receiver<Event>,
    pick: impl Fn(&Event) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return Some(t);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

fn tls_keys(pki: &certs::TestPki) -> Vec<String> {
    vec![
        "sip.tls_listen=127.0.0.1:0".to_owned(),
        format!("sip.tls_cert={}", pki.cert.display()),
        format!("sip.tls_key={}", pki.key.display()),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_over_tls_and_every_request_stays_on_it() {
    let dir = temp_dir("e2e-tls-baresip");
    let pki = certs::make(&dir, "confgate");
    let d = daemon(&refs(&tls_keys(&pki))).await;
    let tls = d.sip_tls_addr().expect("a TLS listener");
    let mut events = d.subscribe();

    let mic = dir.join("tone.wav");
    write_wav(&mic, &sine(8000, 700.0, 5000.0, 8000 * 40));
    let phone_pki = certs::make(&dir, "phone");
    let opts = Options {
        config: format!(
            "sip_cafile {}\nsip_certificate {}\n",
            pki.ca.display(),
            phone_pki.combined.display()
        ),
        ..Default::default()
    };
    let mut phone = Baresip::start_with("tlscaller", &mic, false, &opts).await;
    phone
        .dial_answered(&format!("sip:4000@{tls};transport=tls"))
        .await;
    phone.command("sndcode", "2468#").await;
    let call = wait_for(&mut events, |e| match e {
        Event::MemberJoined {
            call,
            room,
            direction: Direction::Inbound,
            ..
        } if room == "2468" => Some(call.clone()),
        _ => None,
    })
    .await
    .expect("the TLS caller joined room 2468");
    let rooms = d.switchboard().rooms().await;
    assert!(
        rooms
            .iter()
            .any(|r| r.room == "2468" && r.members.len() == 1),
        "{rooms:?}"
    );
    let seated = d.sip_requests();
    assert_eq!((seated.udp, seated.tcp), (0, 0), "{seated:?}");
    // The ACK of the 2xx goes to its transaction, not counted here.
    assert!(seated.tls >= 1, "the INVITE came over TLS: {seated:?}");

    // Hold and resume: two re-INVITEs, over TLS, answered.
    phone.command("hold", "").await;
    let deadline = std::time::Instant::now() + WAIT;
    while d.sip_requests().tls < seated.tls + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phone.command("resume", "").await;
    while d.sip_requests().tls < seated.tls + 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = d.sip_requests();
    assert_eq!((held.udp, held.tcp), (0, 0), "{held:?}");
    assert!(
        held.tls >= seated.tls + 2,
        "hold and resume over TLS: {held:?}"
    );
    let seated = held;

    // The phone hangs up: its BYE comes over TLS too.
    phone.command("hangup", "").await;
    let left = wait_for(&mut events, |e| match e {
        Event::MemberLeft {
            call: c, reason, ..
        } if *c == call => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(left, Some("hangup"));
    let after = d.sip_requests();
    assert_eq!((after.udp, after.tcp), (0, 0), "{after:?}");
    assert!(after.tls > seated.tls, "the BYE came over TLS: {after:?}");

    // Again, and this time confgate hangs up: its BYE reaches the phone on
    // the TLS connection the call came in on.
    phone
        .dial_answered(&format!("sip:4000@{tls};transport=tls"))
        .await;
    phone.command("sndcode", "2468#").await;
    let call = wait_for(&mut events, |e| match e {
        Event::MemberJoined { call, room, .. } if room == "2468" => Some(call.clone()),
        _ => None,
    })
    .await
    .expect("the second TLS call joined");
    d.switchboard().hangup(&call).await.expect("hangup");
    assert!(
        phone.wait_event("CALL_CLOSED", WAIT).await,
        "the phone heard confgate's BYE"
    );
    let end = d.sip_requests();
    assert_eq!((end.udp, end.tcp), (0, 0), "{end:?}");
    phone.quit().await;
    d.shutdown().await;
}

fn dial(room: &str, to: &str, dtmf: Option<&str>) -> DialRequest {
    DialRequest {
        room: room.into(),
        to: to.into(),
        from: None,
        timeout: Some(Duration::from_secs(5)),
        dtmf: dtmf.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_to_a_tls_trunk_verifies_it_with_tls_ca() {
    let dir = temp_dir("e2e-tls-trunk");
    let callee_pki = certs::make(&dir, "callee");
    let callee = daemon(&refs(&tls_keys(&callee_pki))).await;
    let callee_tls = callee.sip_tls_addr().expect("callee TLS");
    let mut callee_events = callee.subscribe();

    let trunk = |ca: &std::path::Path| {
        vec![
            format!("trunk.proxy={callee_tls}"),
            "trunk.transport=tls".to_owned(),
            format!("trunk.tls_ca={}", ca.display()),
            "trunk.allow=[\"*\"]".to_owned(),
        ]
    };
    let caller = daemon(&refs(&trunk(&callee_pki.ca))).await;
    let mut caller_events = caller.subscribe();
    // Answered over TLS; the keys sent once answered seat it in the
    // callee's room 2468.
    let call = caller
        .switchboard()
        .dial(dial("out", "4000", Some("2468#")))
        .await
        .expect("dial");
    let joined = wait_for(&mut caller_events, |e| match e {
        Event::MemberJoined { call: c, room, .. } if *c == call => Some(room.clone()),
        Event::DialFailed {
            call: c, reason, ..
        } if *c == call => Some(format!("failed: {reason}")),
        _ => None,
    })
    .await;
    assert_eq!(joined.as_deref(), Some("out"));
    let far = wait_for(&mut callee_events, |e| match e {
        Event::MemberJoined { call, room, .. } if room == "2468" => Some(call.clone()),
        _ => None,
    })
    .await
    .expect("the keyed PIN seated the call at the callee");
    let seen = callee.sip_requests();
    assert_eq!((seen.udp, seen.tcp), (0, 0), "{seen:?}");
    assert!(seen.tls >= 1, "the INVITE came over TLS: {seen:?}");
    caller.switchboard().hangup(&call).await.expect("hangup");
    let left = wait_for(&mut callee_events, |e| match e {
        Event::MemberLeft { call, reason, .. } if *call == far => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(left, Some("hangup"), "the caller's BYE reached the callee");
    let after = callee.sip_requests();
    assert_eq!((after.udp, after.tcp), (0, 0), "{after:?}");
    assert!(after.tls > seen.tls, "the BYE came over TLS: {after:?}");
    caller.shutdown().await;

    // A CA that did not sign the callee's certificate: the dial fails at
    // once, saying why, and nothing reaches the callee.
    let stranger = certs::make(&dir, "stranger");
    let caller = daemon(&refs(&trunk(&stranger.ca))).await;
    let before = callee.sip_requests();
    let refused = caller
        .switchboard()
        .dial(dial("out", "4000", None))
        .await
        .expect_err("an unverified trunk is not dialled");
    let text = refused.to_string();
    eprintln!("{text}");
    assert!(
        matches!(refused, CommandError::Unavailable(_)) && text.contains("over tls"),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");
    assert_eq!(callee.sip_requests(), before, "nothing reached the callee");
    assert_eq!(caller.held().calls(), Default::default(), "nothing held");
    caller.shutdown().await;
    callee.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_goes_to_a_tls_trunk_over_tls() {
    let dir = temp_dir("e2e-tls-register");
    let pki = certs::make(&dir, "registrar");
    // A confgate as the registrar: it answers REGISTER 405, which is enough
    // to see where and how the request came.
    let registrar = daemon(&refs(&tls_keys(&pki))).await;
    let tls = registrar.sip_tls_addr().expect("registrar TLS");
    let client = daemon(&[
        &format!("trunk.proxy={tls}"),
        "trunk.transport=tls",
        &format!("trunk.tls_ca={}", pki.ca.display()),
        "trunk.register=true",
        "trunk.username=conf",
        "trunk.password=secret",
    ])
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    while registrar.sip_requests().tls == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = registrar.sip_requests();
    assert!(seen.tls >= 1, "the REGISTER came over TLS: {seen:?}");
    assert_eq!((seen.udp, seen.tcp), (0, 0), "{seen:?}");
    client.shutdown().await;
    registrar.shutdown().await;
}
