//! `init` called inside a current-thread Tokio runtime (as under `#[tokio::main(flavor =
//! "current_thread")]`), with the guard dropped inside that runtime: the drop must neither
//! panic (dropping a runtime in async context) nor deadlock (flushing spans while the only
//! application thread is blocked).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::{Duration, Instant};

use mailraft_telemetry::{LogFormat, TelemetryConfig, init};

#[tokio::test(flavor = "current_thread")]
async fn guard_drops_cleanly_inside_a_current_thread_runtime() {
    let cfg = TelemetryConfig {
        log_format: LogFormat::Json,
        otlp_endpoint: Some("http://127.0.0.1:1".into()),
        metrics_addr: None,
        ..TelemetryConfig::default()
    };
    let guard = init(&cfg).unwrap();
    for i in 0..10 {
        tracing::info_span!("work", i).in_scope(|| tracing::info!("step"));
        tokio::task::yield_now().await;
    }
    assert!(mailraft_telemetry::render_metrics().is_some());

    let started = Instant::now();
    drop(guard);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "drop took {took:?}");
}
