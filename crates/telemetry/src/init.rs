//! [`init`]: installs logging, span export and the metrics recorder for the whole process.

use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Runtime;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::{LogFormat, TelemetryConfig, TelemetryError, TelemetryGuard};

/// Set by the first call of [`init`], successful or not: global installs cannot be undone, so a
/// half-finished first attempt must not be retried over.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// How often histogram buckets are drained (rendering does it too, but scrapes may be rare).
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs telemetry for the process; call once, early in `main`, and keep the guard.
///
/// In order, everything fallible that has no global effect happens first (filter parsing,
/// runtime, `/metrics` bind, OTLP exporter), then the global installs: the `tracing`
/// subscriber, the OpenTelemetry tracer provider and propagator, the metrics recorder.
///
/// - Logs: a `tracing-subscriber` registry with an [`EnvFilter`] (`RUST_LOG` if set, else
///   `cfg.log_filter`) and a text or JSON formatter writing to stderr (stdout stays free for
///   CLI output).
/// - Spans: only when `cfg.otlp_endpoint` is set, a `tracing-opentelemetry` layer feeding an
///   OTLP/gRPC (tonic) exporter behind the SDK's batch span processor. The exporter's channel
///   runs on a dedicated one-thread Tokio runtime owned by the guard, so export never competes
///   with, or deadlocks against, the application's runtime.
/// - Metrics: the Prometheus recorder is always installed (so [`crate::render_metrics`] works);
///   its HTTP listener is opened on `cfg.metrics_addr` only when set. Histograms use
///   [`crate::metrics::LATENCY_BUCKETS_SECONDS`].
///
/// Works with or without a surrounding Tokio runtime. A second call returns
/// [`TelemetryError::AlreadyInitialized`].
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(TelemetryError::AlreadyInitialized);
    }

    let filter = build_filter(std::env::var(EnvFilter::DEFAULT_ENV).ok(), cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mailraft-telemetry")
        .enable_all()
        .build()
        .map_err(TelemetryError::Runtime)?;
    let recorder = build_recorder(cfg, &runtime)?;
    let tracer_provider = match &cfg.otlp_endpoint {
        Some(endpoint) => Some(build_tracer_provider(cfg, endpoint, &runtime)?),
        None => None,
    };

    let fmt_layer = match cfg.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let otel_layer = tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mailraft"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !is_exporter_internal(meta.target())
            }))
    });
    Registry::default()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;

    if let Some(provider) = &tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        // W3C `traceparent` so gRPC hops between front-end and storage join one trace.
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }

    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|e| TelemetryError::Prometheus(e.into()))?;
    // Only this function sets the handle, and only once thanks to INITIALIZED.
    let _ = crate::METRICS_HANDLE.set(handle);
    crate::metrics::describe();

    tracing::info!(
        log_format = ?cfg.log_format,
        otlp = cfg.otlp_endpoint.is_some(),
        metrics_addr = ?cfg.metrics_addr,
        "telemetry initialized"
    );
    Ok(TelemetryGuard::new(tracer_provider, runtime))
}

/// `RUST_LOG` wins over the configured filter, so verbosity can be raised without a config edit.
fn build_filter(
    rust_log: Option<String>,
    cfg: &TelemetryConfig,
) -> Result<EnvFilter, TelemetryError> {
    let (filter, origin) = match rust_log {
        Some(value) if !value.trim().is_empty() => (value, "RUST_LOG"),
        _ => (cfg.log_filter.clone(), "telemetry.log_filter"),
    };
    EnvFilter::builder()
        .parse(&filter)
        .map_err(|source| TelemetryError::InvalidFilter {
            filter,
            origin,
            source,
        })
}

/// Builds the Prometheus recorder; when a listen address is configured, binds it now (so a
/// port conflict fails `init`) and serves it (metrics, `/health`, `/ready`: `http.rs`) on the
/// telemetry runtime.
fn build_recorder(
    cfg: &TelemetryConfig,
    runtime: &Runtime,
) -> Result<PrometheusRecorder, TelemetryError> {
    let recorder = crate::metrics::prometheus_builder()?.build_recorder();
    if let Some(addr) = cfg.metrics_addr {
        let listener = crate::http::bind(addr)?;
        crate::http::spawn(runtime, listener, recorder.handle());
    }
    spawn_upkeep(runtime, recorder.handle());
    Ok(recorder)
}

/// Drains histogram samples into buckets periodically; without it memory grows with every
/// sample between scrapes.
fn spawn_upkeep(runtime: &Runtime, handle: PrometheusHandle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

fn build_tracer_provider(
    cfg: &TelemetryConfig,
    endpoint: &str,
    runtime: &Runtime,
) -> Result<SdkTracerProvider, TelemetryError> {
    // tonic's lazy channel spawns its connection worker with `tokio::spawn`: build it inside the
    // telemetry runtime so that worker lives there.
    let exporter = {
        let _entered = runtime.enter();
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?
    };
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// Events from the export path itself must not be exported again, or every export would
/// produce spans that need exporting.
fn is_exporter_internal(target: &str) -> bool {
    ["opentelemetry", "tonic", "h2", "hyper", "tower"]
        .iter()
        .any(|prefix| target.starts_with(prefix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exporter_internal_targets_are_recognized() {
        assert!(is_exporter_internal("h2::codec"));
        assert!(is_exporter_internal("opentelemetry_sdk"));
        assert!(!is_exporter_internal("mailraft_frontend::session"));
    }

    #[test]
    fn configured_filter_is_parsed_and_bad_one_rejected() {
        let good = TelemetryConfig {
            log_filter: "mailraft=debug,info".into(),
            ..Default::default()
        };
        assert!(build_filter(None, &good).is_ok());
        let bad = TelemetryConfig {
            log_filter: "mailraft=loud".into(),
            ..Default::default()
        };
        match build_filter(None, &bad) {
            Err(TelemetryError::InvalidFilter { origin, .. }) => {
                assert_eq!(origin, "telemetry.log_filter")
            }
            other => panic!("expected InvalidFilter, got {other:?}"),
        }
        // RUST_LOG replaces the configured filter, bad one included; a blank RUST_LOG does not.
        assert!(build_filter(Some("debug".into()), &bad).is_ok());
        match build_filter(Some("x=loud".into()), &good) {
            Err(TelemetryError::InvalidFilter { origin, .. }) => assert_eq!(origin, "RUST_LOG"),
            other => panic!("expected InvalidFilter, got {other:?}"),
        }
        assert!(build_filter(Some("  ".into()), &bad).is_err());
    }
}
