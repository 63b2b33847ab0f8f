//! The web endpoint's HTTP/1.1 server (hyper, with upgrades), over plain
//! TCP or TLS (tokio-rustls): the pages, the login, and the two WebSockets.
//! Connections are limited in number and in how long a request head may
//! take, like the metrics endpoint.

#![allow(clippy::disallowed_methods)] // an edge: sessions expire by the clock

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, COOKIE, LOCATION, SET_COOKIE, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::pages::{self, Body};
use super::session::{self, Sessions};
use super::socket::{self, Refused, Socket};
use super::{join, Joiner};
use crate::config::{tls_server_config, WebSettings};
use crate::control::{ControlCounters, Switchboard};
use crate::ivr::throttle::secrets_equal;

/// Connections served at once (WebSockets included); more wait in the
/// listen queue.
const CONNECTIONS: usize = 256;
/// How long a client has to finish its TLS handshake, and to send a request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may serve requests (not WebSockets, which run on).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest login form.
const MAX_FORM: usize = 4 * 1024;
/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the web endpoint could not start; each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("web.listen {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("web.tls_cert / web.tls_key: {0}")]
    Tls(rustls::Error),
}

/// A running web endpoint; it stops with the shutdown token.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
}

/// What every request shares.
struct Shared {
    token: Arc<str>,
    board: Arc<dyn Switchboard>,
    counters: Arc<ControlCounters>,
    joiner: Arc<dyn Joiner>,
    sessions: Sessions,
    https: bool,
    shutdown: CancellationToken,
}

impl WebServer {
    /// Bind `web.listen` and serve; `token` is what the login asks for.
    pub async fn start(
        settings: &WebSettings,
        token: Arc<str>,
        board: Arc<dyn Switchboard>,
        counters: Arc<ControlCounters>,
        joiner: Arc<dyn Joiner>,
        shutdown: CancellationToken,
    ) -> Result<WebServer, WebError> {
        let acceptor = match &settings.tls {
            Some((cert, key)) => {
                let mut config = tls_server_config(cert, key).map_err(WebError::Tls)?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let addr = settings.listen;
        let err = |source| WebError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(err)?;
        let bound = listener.local_addr().map_err(err)?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        info!(addr = %bound, "web pages at {scheme}://{bound}/");
        let shared = Arc::new(Shared {
            token,
            board,
            counters,
            joiner,
            sessions: Sessions::default(),
            https: acceptor.is_some(),
            shutdown,
        });
        tokio::spawn(accept(listener, acceptor, shared));
        Ok(WebServer { addr: bound })
    }

    /// Where it listens (the port chosen, if the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn accept(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => Arc::new(p),
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "web: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        stream.set_nodelay(true).ok();
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve(TokioIo::new(stream), shared, peer, permit).await,
                Some(acceptor) => {
                    match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve(TokioIo::new(tls), shared, peer, permit).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "web: TLS handshake failed"),
                        Err(_) => debug!(%peer, "web: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serve HTTP/1.1 on one connection.
async fn serve<I>(io: I, shared: Arc<Shared>, peer: SocketAddr, permit: Arc<OwnedSemaphorePermit>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shutdown = shared.shutdown.clone();
    let service = service_fn(move |req| answer(req, shared.clone(), peer, permit.clone()));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        done = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {
            if let Ok(Err(e)) = done {
                debug!(%peer, error = %e, "web connection ended");
            }
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let path = req.uri().path().to_owned();
    let reply = match path.as_str() {
        "/" if get => match session_of(&req, &shared) {
            Some(_) => pages::html(
                StatusCode::OK,
                Bytes::from_static(pages::ROOM_HTML.as_bytes()),
            ),
            None => see_other("/login"),
        },
        "/login" if get => login_page(StatusCode::OK, None),
        "/login" if method == Method::POST => login(req, &shared, peer).await,
        "/logout" if method == Method::POST => {
            if let Some(id) = session_of(&req, &shared) {
                shared.sessions.close(&id);
            }
            let mut r = see_other("/login");
            r.headers_mut().insert(
                SET_COOKIE,
                cookie_header(&format!("{}=; Max-Age=0", session::COOKIE), shared.https),
            );
            r
        }
        "/join" if get => pages::html(
            StatusCode::OK,
            Bytes::from_static(pages::JOIN_HTML.as_bytes()),
        ),
        "/ws" if method == Method::GET => {
            let session = session_of(&req, &shared);
            let task = shared.clone();
            upgrade(req, &shared, permit, move |ws| async move {
                if let Some(id) = session {
                    let (board, counters) = (task.board.clone(), task.counters.clone());
                    let logged_in = move || task.sessions.valid(&id, Instant::now());
                    socket::control(ws, board, counters, logged_in).await
                } else {
                    socket::refuse(ws, task.counters.clone()).await
                }
            })
        }
        "/join/ws" if method == Method::GET => {
            let joiner = shared.joiner.clone();
            upgrade(req, &shared, permit, move |ws| {
                join::serve(ws, joiner, peer)
            })
        }
        p => match pages::asset(p) {
            Some((content_type, body)) if get => pages::response(
                StatusCode::OK,
                content_type,
                Bytes::from_static(body.as_bytes()),
            ),
            Some(_) => not_allowed("GET, HEAD"),
            None => match p {
                "/" | "/join" => not_allowed("GET, HEAD"),
                "/login" => not_allowed("GET, HEAD, POST"),
                "/logout" => not_allowed("POST"),
                "/ws" | "/join/ws" => not_allowed("GET"),
                _ => pages::text(StatusCode::NOT_FOUND, "not found\n"),
            },
        },
    };
    Ok(reply)
}

/// The live session the request's cookie names, if any.
fn session_of<B>(req: &Request<B>, shared: &Shared) -> Option<String> {
    let now = Instant::now();
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(session::from_cookie)
        .find(|id| shared.sessions.valid(id, now))
        .map(str::to_owned)
}

async fn login(req: Request<Incoming>, shared: &Shared, peer: SocketAddr) -> Response<Body> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM as u64) {
        return pages::text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n");
    }
    let body = match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return pages::text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n"),
    };
    let now = Instant::now();
    if shared.sessions.locked_out(peer.ip(), now) {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many wrong tokens: try again in a minute."),
        );
    }
    let given = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if given.is_empty() || !secrets_equal(&given, &shared.token) {
        shared.sessions.failed(peer.ip(), now);
        info!(%peer, "web login refused: wrong token");
        return login_page(StatusCode::UNAUTHORIZED, Some("Wrong token."));
    }
    let id = shared.sessions.open(now);
    info!(%peer, "web login");
    let mut r = see_other("/");
    r.headers_mut().insert(
        SET_COOKIE,
        cookie_header(
            &format!(
                "{}={id}; Max-Age={}",
                session::COOKIE,
                session::SESSION_LIFETIME.as_secs()
            ),
            shared.https,
        ),
    );
    r
}

fn cookie_header(start: &str, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{start}; HttpOnly; SameSite=Strict; Path=/{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("confgate_session=; Max-Age=0"))
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response<Body> {
    let text = match message {
        Some(m) => pages::LOGIN_HTML.replace(
            "<!--status-->",
            &format!("<p id=\"status\" class=\"error\">{m}</p>"),
        ),
        None => pages::LOGIN_HTML.to_owned(),
    };
    pages::html(status, Bytes::from(text))
}

fn see_other(to: &'static str) -> Response<Body> {
    let mut r = pages::text(StatusCode::SEE_OTHER, "");
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    r
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = pages::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Answer a WebSocket handshake and run `then` on the socket once the
/// connection is upgraded; the connection slot is held until it ends.
fn upgrade<F, Fut>(
    mut req: Request<Incoming>,
    shared: &Shared,
    permit: Arc<OwnedSemaphorePermit>,
    then: F,
) -> Response<Body>
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let key = match socket::accept_key(req.headers(), shared.https) {
        Ok(key) => key,
        Err(Refused::Malformed) => {
            return pages::text(
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake is expected\n",
            )
        }
        Err(Refused::CrossOrigin) => {
            return pages::text(
                StatusCode::FORBIDDEN,
                "another site's page may not connect\n",
            )
        }
    };
    let Ok(accept) = HeaderValue::from_str(&key) else {
        return pages::text(StatusCode::BAD_REQUEST, "bad key\n");
    };
    let on = hyper::upgrade::on(&mut req);
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let upgraded = match on.await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "web: upgrade failed");
                return;
            }
        };
        let ws = socket::socket(upgraded).await;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = then(ws) => {}
        }
        drop(permit);
    });
    let mut r = Response::new(Body::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-accept", accept);
    r
}
