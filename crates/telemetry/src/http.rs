//! The HTTP listener on `telemetry.metrics_addr`: Prometheus metrics, liveness and readiness.
//!
//! | path | answer |
//! |---|---|
//! | `/health`, `/livez` | `200 OK` while the process and its telemetry runtime run (liveness) |
//! | `/ready`, `/readyz` | the process's readiness check ([`set_readiness_check`]): `200` ready, `503` not; a JSON body says why. `200` when the process registered none (a front-end) |
//! | anything else (`/metrics`) | the metrics in the Prometheus text format |
//!
//! Why our own listener and not the Prometheus exporter's: the exporter serves only `/health`
//! and metrics, and a storage node's readiness ("caught up with the leader") must be on a port a
//! kubelet can probe without a client certificate. Every path the exporter answered is answered
//! the same way, so scrape configs and probes keep working.
//!
//! It runs on the telemetry runtime, so a busy application runtime cannot stop a liveness probe
//! from being answered (a readiness check that needs the application, such as Raft's state, is
//! bounded by [`READY_TIMEOUT`] and then answers "not ready"). Each connection serves one
//! request (kubelet and Prometheus reconnect anyway), with a deadline on reading its head, and at
//! most [`MAX_CONNECTIONS`] are served at once, so the listener costs little whoever connects.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::TelemetryError;

/// How long a readiness check may take before the answer is "not ready".
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 32;
/// Deadline for a client to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a readiness check answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `200` when true, `503` when false.
    pub ready: bool,
    /// The response body (JSON by convention), saying why.
    pub body: String,
}

/// A process's readiness check: called once per `GET /ready`.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Readiness> + Send>> + Send + Sync>;

/// The check `/ready` runs; `None` answers ready (a process without one is ready when it runs).
static READINESS: RwLock<Option<ReadinessCheck>> = RwLock::new(None);

/// Makes `GET /ready` answer with `check` (replacing an earlier one), e.g. a storage node's
/// "caught up with the leader".
pub fn set_readiness_check(check: ReadinessCheck) {
    *READINESS.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(check);
}

/// Binds `addr` now, so a port already in use fails [`crate::init`] instead of a background task.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, TelemetryError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| TelemetryError::Listen { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| TelemetryError::Listen { addr, source })?;
    Ok(listener)
}

/// Serves `listener` on `runtime` until the runtime stops.
pub(crate) fn spawn(runtime: &Runtime, listener: std::net::TcpListener, handle: PrometheusHandle) {
    runtime.spawn(async move {
        let addr = listener.local_addr().ok();
        match TcpListener::from_std(listener) {
            Ok(listener) => serve(listener, handle).await,
            Err(error) => tracing::error!(%error, ?addr, "metrics listener could not start"),
        }
    });
}

async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Closed only when the runtime stops, and then this task stops too.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(handle.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = conn.await {
                tracing::debug!(%error, "metrics listener: connection ended with an error");
            }
            drop(permit);
        });
    }
}

async fn respond(handle: PrometheusHandle, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (status, body, content_type) = match req.uri().path() {
        "/health" | "/livez" => (StatusCode::OK, "OK".to_owned(), "text/plain"),
        "/ready" | "/readyz" => {
            let r = check_readiness().await;
            let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, r.body, "application/json")
        }
        _ => match tokio::task::spawn_blocking(move || handle.render()).await {
            Ok(text) => (StatusCode::OK, text, "text/plain; version=0.0.4"),
            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed".to_owned(), "text/plain"),
        },
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// Runs the registered check, bounded by [`READY_TIMEOUT`].
async fn check_readiness() -> Readiness {
    let check = READINESS.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(check) = check else {
        return Readiness { ready: true, body: r#"{"ready":true,"reason":"no readiness check in this process"}"#.into() };
    };
    match tokio::time::timeout(READY_TIMEOUT, check()).await {
        Ok(r) => r,
        Err(_) => Readiness { ready: false, body: r#"{"ready":false,"reason":"readiness check timed out"}"#.into() },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// `GET path` over a plain socket: status code and body.
    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out.split_once("\r\n\r\n").unwrap().1.to_owned())
    }

    #[test]
    fn serves_liveness_readiness_and_metrics() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let recorder = crate::metrics::prometheus_builder().unwrap().build_recorder();
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(&runtime, listener, recorder.handle());

        assert_eq!(get(addr, "/health"), (200, "OK".to_owned()));
        let (status, body) = get(addr, "/ready");
        assert_eq!(status, 200, "no check registered: ready when running ({body})");
        assert_eq!(get(addr, "/metrics").0, 200);

        let answer = Arc::new(std::sync::Mutex::new(false));
        let seen = answer.clone();
        set_readiness_check(Arc::new(move || -> Pin<Box<dyn Future<Output = Readiness> + Send>> {
            let ready = *seen.lock().unwrap();
            Box::pin(async move { Readiness { ready, body: format!("{{\"ready\":{ready}}}") } })
        }));
        assert_eq!(get(addr, "/ready"), (503, r#"{"ready":false}"#.to_owned()));
        *answer.lock().unwrap() = true;
        assert_eq!(get(addr, "/readyz"), (200, r#"{"ready":true}"#.to_owned()));
        // Liveness does not depend on readiness.
        *answer.lock().unwrap() = false;
        assert_eq!(get(addr, "/health").0, 200);
        runtime.shutdown_background();
    }
}
