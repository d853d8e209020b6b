//! Telemetry for every `mailraft` process: structured logs, distributed traces, Prometheus
//! metrics.
//!
//! Flow: the binary loads its config, then calls [`init`] once with the `[telemetry]` section
//! and keeps the returned [`TelemetryGuard`] until exit.
//!
//! 1. `init` installs a global `tracing` subscriber: an env filter (`RUST_LOG` over
//!    [`TelemetryConfig::log_filter`]) and a text or JSON log layer on stderr. Other crates only
//!    use `tracing` macros and spans; they never touch this crate's types.
//! 2. If [`TelemetryConfig::otlp_endpoint`] is set, the same subscriber gets a
//!    `tracing-opentelemetry` layer whose spans are batched and exported over OTLP/gRPC, and
//!    the W3C trace-context propagator is installed for gRPC hops.
//! 3. A Prometheus recorder is installed as the global `metrics` recorder, so each crate's
//!    `metrics.rs` counters and histograms land in one registry; with
//!    [`TelemetryConfig::metrics_addr`] set, an HTTP listener serves it for scraping, with
//!    `/health` (liveness) and `/ready` (the check a process registers with
//!    [`set_readiness_check`]) beside it (`http.rs`), and [`render_metrics`] renders it for tests
//!    either way.
//! 4. Dropping the guard flushes pending spans (bounded wait) and stops the exporters.
//!
//! Exporters run on a one-thread Tokio runtime owned by the guard rather than on the
//! application's runtime, so `init` works before the application runtime exists and shutdown
//! cannot deadlock against a busy or single-threaded application runtime.
//!
//! Tests call [`init_for_tests`] instead: a plain subscriber writing through the test harness's
//! capture, safe to call from every test.
#![deny(missing_docs)]

mod config;
mod error;
mod guard;
mod http;
mod init;
pub mod metrics;

use std::sync::OnceLock;

use metrics_exporter_prometheus::PrometheusHandle;

pub use config::{LogFormat, TelemetryConfig, empty_as_none};
pub use error::TelemetryError;
pub use guard::TelemetryGuard;
pub use http::{READY_TIMEOUT, Readiness, ReadinessCheck, set_readiness_check};
pub use init::init;

/// Handle of the recorder installed by [`init`]; rendering reads the live registry.
static METRICS_HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Renders all metrics in the Prometheus text format, or `None` before [`init`] installed the
/// recorder. Lets health/admin endpoints and tests read metrics without an HTTP scrape.
pub fn render_metrics() -> Option<String> {
    METRICS_HANDLE.get().map(PrometheusHandle::render)
}

/// Installs a simple subscriber for tests: output goes through the test harness's capture (shown
/// only for failing tests), filter from `RUST_LOG` or `debug`. Safe to call from every test: if a
/// subscriber is already installed, this does nothing.
pub fn init_for_tests() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
