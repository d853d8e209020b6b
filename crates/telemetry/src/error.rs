//! The one error type of the telemetry layer.

use metrics_exporter_prometheus::BuildError;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::error::OTelSdkError;

/// Why telemetry could not be installed or shut down.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// [`crate::init`] already ran in this process; the global subscriber and metrics recorder
    /// can be installed only once.
    #[error("telemetry is already initialized in this process")]
    AlreadyInitialized,
    /// The log filter (from `RUST_LOG` or `log_filter`) does not parse.
    #[error("invalid log filter {filter:?} (from {origin}): {source}")]
    InvalidFilter {
        /// The rejected directive string.
        filter: String,
        /// `RUST_LOG` or `telemetry.log_filter`, so the operator knows what to fix.
        origin: &'static str,
        /// The parser's explanation.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The background runtime that drives exporters could not be started.
    #[error("cannot start the telemetry runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The OTLP span exporter could not be built (bad endpoint URI, for instance).
    #[error("cannot build the otlp exporter: {0}")]
    Otlp(#[from] ExporterBuildError),
    /// The Prometheus recorder or its listener could not be set up (port in use, or another
    /// metrics recorder is already installed).
    #[error("cannot install the prometheus exporter: {0}")]
    Prometheus(#[from] BuildError),
    /// The metrics/health HTTP listener could not be bound.
    #[error("cannot listen on {addr} for metrics and health: {source}")]
    Listen {
        /// `telemetry.metrics_addr`.
        addr: std::net::SocketAddr,
        /// Why (address in use, not local, no permission).
        #[source]
        source: std::io::Error,
    },
    /// Another global `tracing` subscriber was installed first (for example by `init_for_tests`).
    #[error("cannot install the tracing subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    /// Flushing or shutting down the tracer provider failed; spans may have been lost.
    #[error("tracer provider shutdown failed: {0}")]
    Shutdown(#[from] OTelSdkError),
}
