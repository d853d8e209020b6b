//! [`TelemetryGuard`]: keeps exporters alive and flushes spans when the process ends.

use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Runtime;

use crate::TelemetryError;

/// How long shutdown waits for the last span batch to reach the collector. Bounded so an
/// unreachable collector delays exit by seconds, not forever.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Returned by [`crate::init`]; hold it for the life of the process.
///
/// Dropping it (or calling [`TelemetryGuard::shutdown`]) flushes buffered spans to the OTLP
/// collector, then stops the telemetry runtime, which also closes the `/metrics` listener.
/// The `tracing` subscriber and metrics recorder stay installed: logging keeps working until
/// the process exits, and [`crate::render_metrics`] keeps answering.
#[must_use = "dropping the guard stops span export and the /metrics listener"]
pub struct TelemetryGuard {
    /// Present when an OTLP endpoint was configured.
    tracer_provider: Option<SdkTracerProvider>,
    /// The small runtime that drives the tonic channel of the OTLP exporter, the `/metrics`
    /// listener and recorder upkeep; `None` once shut down.
    runtime: Option<Runtime>,
}

impl TelemetryGuard {
    pub(crate) fn new(tracer_provider: Option<SdkTracerProvider>, runtime: Runtime) -> Self {
        Self {
            tracer_provider,
            runtime: Some(runtime),
        }
    }

    /// Flushes spans and stops exporters, reporting a failed flush instead of ignoring it.
    ///
    /// Blocks the calling thread for at most a few seconds. The export itself runs on the
    /// telemetry runtime's own thread, so calling this from inside the application's Tokio
    /// runtime (even a current-thread one) cannot deadlock.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), TelemetryError> {
        let flushed = match self.tracer_provider.take() {
            Some(provider) => provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT),
            None => Ok(()),
        };
        if let Some(runtime) = self.runtime.take() {
            // `shutdown_background` rather than drop: dropping a runtime from inside another
            // runtime's worker panics, and the guard is typically dropped at the end of
            // `#[tokio::main]`.
            runtime.shutdown_background();
        }
        flushed.map_err(TelemetryError::from)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown_inner() {
            tracing::warn!(%error, "telemetry shutdown incomplete");
        }
    }
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("otlp", &self.tracer_provider.is_some())
            .field("running", &self.runtime.is_some())
            .finish()
    }
}
