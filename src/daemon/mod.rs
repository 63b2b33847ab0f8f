//! The daemon's life: prompts prepared and sockets bound at start, one task
//! per call, and a graceful stop that hangs up every call.

#![allow(clippy::disallowed_methods)] // an edge: notes when the daemon started

mod bridge;
mod browser;
mod call;
mod context;
mod driver;

mod memory;
mod outbound;
mod peers;
mod ports;
pub mod prompts;
mod registry;
mod switchboard;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::call::admission::Admission;
use crate::cluster::Directory;
use crate::conference::{Conference, Limits};
use crate::config::{Settings, Transport};
use crate::events::{Event, Events};
use crate::ivr::throttle::PinGuard;
use crate::metrics::{MetricsError, MetricsServer, Sources};
use crate::sip::register::RegistrationOutcome;
use crate::sip::ua::{RequestCounts, SipError, StackCounts, TlsOptions, UserAgent};
use crate::tts::prompts::PromptError;
use crate::web::WebServer;

use crate::control::{ControlError, ControlServer, Switchboard};
use crate::ivr::dial_policy::DialPolicy;
use context::{CallContext, Live};
use ports::PortPool;
use prompts::{PromptBook, Speaker};
use registry::CallRegistry;
use switchboard::Board;

pub use ports::{RtpSocket, RtpSockets};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("prompts: {0}")]
    Prompts(#[from] PromptError),
    #[error("prompt preparation stopped: {0}")]
    PromptTask(String),
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error("control socket: {0}")]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cluster.redis: {0}")]
    Cluster(#[from] redis::RedisError),
}

/// Per-call entries the daemon holds (see [`Daemon::held`]); all zero
/// (`Held::default()`) once calls have ended and the SIP stack's
/// transaction caches (64·T1) and the PIN lockout window have passed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Calls in the registry (reachable by the control socket).
    pub listed: usize,
    /// Calls holding an admission slot.
    pub admitted: usize,
    /// Source addresses with calls counted against `calls.max_per_source`.
    pub sources: usize,
    /// Dialogs with an in-order request queue.
    pub dialog_queues: usize,
    /// Call tasks running, inbound and outbound.
    pub tasks: usize,
    /// RTP ports bound.
    pub rtp_ports: usize,
    /// Members seated in rooms, and rooms open.
    pub members: usize,
    pub rooms: usize,
    /// Caller and number keys with wrong PINs within `pin.failure_window_secs`.
    pub pin_keys: usize,
    /// What rsipstack holds: dialogs, transactions and their timers.
    pub stack: StackCounts,
}

impl Held {
    /// What is held for calls that have ended, leaving out what expires
    /// on its own clock: the stack's finished transactions and their
    /// timers (64·T1), and PIN failures still in their window.
    pub fn calls(&self) -> Held {
        Held {
            pin_keys: 0,
            stack: StackCounts {
                transactions: 0,
                finished_transactions: 0,
                timers: 0,
                ..self.stack
            },
            ..*self
        }
    }
}

/// How long calls have to say BYE when the daemon stops.
const DRAIN: Duration = Duration::from_secs(5);

/// A running daemon.
pub struct Daemon {
    sip_addr: SocketAddr,
    shutdown: CancellationToken,
    calls: tokio::task::JoinHandle<()>,
    ua: Arc<UserAgent>,
    events: Events,
    conference: Conference,
    board: Arc<Board>,
    control: ControlServer,
    metrics: Option<MetricsServer>,
    /// Admits browsers from the join page.
    joiner: Arc<dyn crate::web::Joiner>,
    web: Option<WebServer>,
    /// The cluster's room directory, when `cluster.redis` is set.
    directory: Option<Arc<Directory>>,
}

impl Daemon {
    /// Prepare prompts, bind SIP, and start answering calls.
    pub async fn start(settings: Settings) -> Result<Daemon, StartError> {
        let prompt_settings = settings.clone();
        let prompts = tokio::task::spawn_blocking(move || PromptBook::prepare(&prompt_settings))
            .await
            .map_err(|e| StartError::PromptTask(e.to_string()))??;
        let shutdown = CancellationToken::new();
        let admission = Admission::new(settings.admission.clone());
        let (ua, mut offered) = UserAgent::start(
            settings.sip_listen,
            settings.public_address,
            settings.sip_timers,
            &settings.user_agent,
            admission.clone(),
            TlsOptions {
                listen: settings
                    .sip_tls
                    .as_ref()
                    .map(|t| (t.listen, t.cert.pem.clone(), t.key.pem.clone())),
                ca: settings.trunk.tls_ca.as_ref().map(|ca| ca.pem.clone()),
            },
            CancellationToken::new(),
        )
        .await?;
        let events = Events::default();
        let clips = prompts.announcements(&settings);
        let conference = Conference::start(
            clips,
            Limits {
                max_members: settings.max_members,
            },
            events.clone(),
            shutdown.clone(),
            settings.media_threads,
        );
        let t = settings.throttle;
        let ctx = Arc::new(CallContext {
            ports: PortPool::new(settings.rtp_ports.clone()),
            advertised: ua.advertised_ip(),
            pin_guard: Mutex::new(PinGuard::new(
                t.caller_failures,
                t.number_failures,
                t.window,
            )),
            settings: Live::new(settings),
            prompts: Live::new(prompts),
            shutdown: shutdown.clone(),
            events: events.clone(),
            conference: conference.clone(),
            calls: CallRegistry::default(),
            admission,
            tasks: TaskTracker::new(),
            speaker: Speaker::default(),
            bridges: std::sync::OnceLock::new(),
        });
        let ua = Arc::new(ua);
        let settings = ctx.settings();
        let trunk = &settings.trunk;
        if trunk.transport == Transport::Tls && settings.sip_tls.is_none() {
            warn!(
                "trunk.transport is tls but sip.tls_listen is empty: the trunk's requests \
                 in a dialog reach confgate only on the connection confgate opened"
            );
        }
        let directory = match &settings.cluster {
            Some(cluster) => {
                info!(redis = %cluster.redis, node = %cluster.node, "cluster directory");
                let directory = Directory::start(cluster, shutdown.child_token())?;
                tokio::spawn(bridge::follow_rooms(ctx.clone(), directory.clone()));
                Some(directory)
            }
            None => None,
        };
        let peers = match (&settings.cluster, &directory) {
            (Some(cluster), Some(directory)) if cluster.control.is_some() => {
                let token = settings
                    .control
                    .tcp_with_token()?
                    .map(|(_, token)| token)
                    .unwrap_or_default();
                let peers: Arc<dyn crate::control::Peers> = Arc::new(peers::ClusterPeers {
                    directory: directory.clone(),
                    node: cluster.node.to_string(),
                    token,
                });
                Some(peers)
            }
            (Some(_), Some(_)) => {
                warn!(
                    "control.tcp is empty: the other nodes cannot list or control the rooms \
                     here, and commands here act on this node's rooms alone"
                );
                None
            }
            _ => None,
        };
        let board = Arc::new(Board {
            policy: Arc::new(Mutex::new(DialPolicy::new(
                trunk.allow.clone(),
                trunk.max_outbound,
                trunk.dials_per_minute,
            ))),
            ctx: ctx.clone(),
            ua: ua.clone(),
            started: std::time::Instant::now(),
            registration: Arc::new(Mutex::new("disabled")),
            drained: CancellationToken::new(),
            reloading: tokio::sync::Mutex::new(()),
            peers,
        });
        if let (true, Some(proxy)) = (trunk.register, &trunk.proxy) {
            let state = board.registration.clone();
            let events = events.clone();
            *state.lock().unwrap_or_else(|e| e.into_inner()) = "registering";
            events.metrics().observe(&Event::Registration {
                state: "registering",
                detail: None,
            });
            let report = move |outcome: RegistrationOutcome| {
                let (now, detail) = match outcome {
                    RegistrationOutcome::Registered => ("registered", None),
                    RegistrationOutcome::Rejected(code) => {
                        ("failed", Some(format!("status {code}")))
                    }
                    RegistrationOutcome::Failed(why) => ("failed", Some(why)),
                };
                let mut current = state.lock().unwrap_or_else(|e| e.into_inner());
                // A refresh that changes nothing is not news; failures always are.
                if *current != now || detail.is_some() {
                    info!(
                        state = now,
                        detail = detail.as_deref().unwrap_or(""),
                        "trunk registration"
                    );
                    events.publish(Event::Registration { state: now, detail });
                }
                *current = now;
            };
            ua.register(
                proxy,
                trunk.transport,
                trunk.username.clone(),
                trunk.password.clone(),
                trunk.register_expires,
                report,
            )?;
        }
        let control =
            ControlServer::start(&settings.control, board.clone(), shutdown.child_token()).await?;
        let joiner: Arc<dyn crate::web::Joiner> =
            Arc::new(browser::BrowserJoiner::new(ctx.clone()));
        let web = match &settings.web {
            Some(web) => {
                let token: Arc<str> = settings.control.token("web.listen")?.into();
                Some(
                    WebServer::start(
                        web,
                        token,
                        board.clone(),
                        control.counters(),
                        joiner.clone(),
                        shutdown.child_token(),
                    )
                    .await?,
                )
            }
            None => None,
        };
        // The nodes share the control token; the tickets of callers moved
        // with REFER are signed with a key derived from it.
        let ticket_key = match (&directory, settings.control.tcp_with_token()?) {
            (Some(_), Some((_, token))) if !token.is_empty() => {
                Some(crate::cluster::ticket::Key::from_token(&token))
            }
            _ => None,
        };
        let bridges = bridge::Bridges::start(&ctx, directory.clone(), ua.clone(), ticket_key);
        ctx.bridges.set(bridges).ok();
        let metrics = match settings.metrics_listen {
            Some(addr) => {
                let registry = events.metrics().registry(Sources {
                    conference: conference.clone(),
                    admission: ctx.admission.clone(),
                    control: Some(control.counters()),
                    cluster: directory.as_ref().map(|d| d.counters()),
                });
                Some(MetricsServer::start(addr, registry, shutdown.child_token()).await?)
            }
            None => None,
        };
        let sweeper = ctx.clone();
        tokio::spawn(async move { sweeper.sweep_pin_failures().await });
        tokio::spawn(memory::give_back(ctx.clone(), ua.clone()));
        let stop = shutdown.clone();
        let calls = tokio::spawn(async move {
            loop {
                tokio::select! {
                    call = offered.recv() => match call {
                        Some(call) => {
                            let (listed, commands) = ctx.calls.register();
                            let span = tracing::info_span!("call", call = %listed.id());
                            ctx.tasks.spawn(call::run(call, listed, commands, ctx.clone()).instrument(span));
                        }
                        None => break,
                    },
                    _ = stop.cancelled() => break,
                }
            }
            // Calls offered from now on are refused; those already queued get 503.
            offered.close();
            while let Ok(call) = offered.try_recv() {
                call.handle.reject(503);
            }
            // Calls see the same token and hang up; give them time to say BYE.
            ctx.tasks.close();
            if tokio::time::timeout(DRAIN, ctx.tasks.wait()).await.is_err() {
                tracing::warn!(
                    calls = ctx.tasks.len(),
                    "calls still running after the grace period"
                );
            }
        });
        Ok(Daemon {
            sip_addr: ua.local_addr(),
            shutdown,
            calls,
            ua,
            events,
            conference,
            board,
            control,
            metrics,
            joiner,
            web,
            directory,
        })
    }

    /// Resolves once a `drain` has seen the last call end (or its time run
    /// out): the daemon should then shut down.
    pub async fn drained(&self) {
        self.board.drained.cancelled().await
    }

    /// Read the configuration file again and apply it (SIGHUP does this).
    pub async fn reload(&self) -> Result<crate::control::Reloaded, crate::control::CommandError> {
        self.board.reload().await
    }

    /// Where Prometheus scrapes, if `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// Where the web endpoint listens, if `web.listen` is set.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(WebServer::local_addr)
    }

    /// Where the control socket listens (Unix path, TCP address).
    pub fn control_endpoints(&self) -> (Option<&std::path::Path>, Option<SocketAddr>) {
        (self.control.unix_path(), self.control.tcp_addr())
    }

    /// The daemon as the control socket drives it.
    pub fn switchboard(&self) -> Arc<dyn Switchboard> {
        self.board.clone()
    }

    /// What admits browsers into rooms (the join page's).
    pub fn joiner(&self) -> Arc<dyn crate::web::Joiner> {
        self.joiner.clone()
    }

    /// The cluster's room directory (`None`: standalone, `cluster.redis`
    /// is empty): claim a room when its first member arrives, tell it when
    /// rooms open and close.
    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.directory.clone()
    }

    /// The conference rooms.
    pub fn conference(&self) -> &Conference {
        &self.conference
    }

    /// The daemon's events, from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.events.subscribe()
    }

    /// Where SIP listens (the real port when the configured one was 0).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// Where SIP over TLS listens, if `sip.tls_listen` is set.
    pub fn sip_tls_addr(&self) -> Option<SocketAddr> {
        self.ua.tls_addr()
    }

    /// The SIP requests received so far, by transport.
    pub fn sip_requests(&self) -> RequestCounts {
        self.ua.requests()
    }

    /// What the daemon keeps per live call; every count is 0 once calls
    /// have ended (see [`Held`] for what takes a while longer).
    pub fn held(&self) -> Held {
        let ctx = &self.board.ctx;
        let rooms = self.conference.stats();
        Held {
            listed: ctx.calls.len(),
            admitted: ctx.admission.calls(),
            sources: ctx.admission.sources(),
            dialog_queues: self.ua.dialog_queues(),
            tasks: ctx.tasks.len(),
            rtp_ports: ctx.ports.in_use(),
            members: rooms.members,
            rooms: rooms.rooms,
            pin_keys: ctx.pin_keys(),
            stack: self.ua.stack_counts(),
        }
    }

    /// Hang up every call, then stop listening.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.shutdown.cancel();
        self.calls.await.ok();
        self.control.stopped().await;
        self.ua.shutdown();
    }
}
