//! The scrape endpoint: `GET /metrics` over HTTP/1.1 (hyper), the
//! registry encoded in the Prometheus text format. Anything else gets 404
//! or 405; a client gets a few seconds to send its request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Scrapes served at once; more wait in the listen queue.
const CONNECTIONS: usize = 16;
/// How long a client has to send its request head, and to finish.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: {source}")]
pub struct MetricsError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// A running scrape endpoint; it stops with the daemon's shutdown.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
}

impl MetricsServer {
    pub async fn start(
        addr: SocketAddr,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> Result<MetricsServer, MetricsError> {
        let err = |source| MetricsError { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(err)?;
        let bound = listener.local_addr().map_err(err)?;
        info!(addr = %bound, "metrics at http://{bound}/metrics");
        tokio::spawn(serve(listener, Arc::new(registry), shutdown));
        Ok(MetricsServer { addr: bound })
    }

    /// Where it listens (the port chosen, if the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, registry.clone()));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                done = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {
                    if let Ok(Err(e)) = done {
                        debug!(%peer, error = %e, "metrics connection ended");
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, "not found: try /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_text::encode(&mut text, &registry) {
        warn!(error = %e, "metrics: encoding failed");
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed\n",
        ));
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    Ok(r)
}
