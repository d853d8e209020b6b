//! Process-level metrics and the Prometheus exporter's histogram layout.
//!
//! Each crate declares its own metrics in its own `metrics.rs`; this one holds only what
//! belongs to the process as a whole. Names follow Prometheus conventions: a `mailraft_`
//! prefix, base units in the name (`_seconds`, `_bytes`), and labels with bounded values only
//! (never tenants, users or mailbox names).

use metrics::{Unit, describe_gauge, gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// `mailraft_build_info{version}`: constant 1, so dashboards can show which version each
/// process runs and spot mixed-version clusters during a rolling upgrade.
pub const BUILD_INFO: &str = "mailraft_build_info";

/// Histogram buckets (upper bounds) used for every histogram not matched by a more specific
/// rule: latencies in seconds from 0.5 ms (a cached IMAP FETCH) to 30 s (a stalled Raft
/// commit), roughly ×2–2.5 apart so p50/p99 estimates stay within one bucket's error.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for histograms whose name ends in `_bytes` (message and literal sizes): powers of
/// four from 256 B to 64 MiB, the default `max_literal_bytes`.
pub const SIZE_BUCKETS_BYTES: &[f64] = &[
    256.0,
    1_024.0,
    4_096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Registers descriptions of the process-level metrics and sets `mailraft_build_info`.
///
/// Descriptions become the `# HELP` lines of the scrape. They go to the recorder installed at
/// the time of the call, so [`crate::init`] calls this after installing its recorder.
pub fn describe() {
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the version label says which mailraft build this process runs."
    );
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// A Prometheus builder with this project's histogram layout, shared by [`crate::init`] and
/// tests that need a local recorder.
pub(crate) fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS_SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".to_owned()), SIZE_BUCKETS_BYTES)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_strictly_increasing() {
        for buckets in [LATENCY_BUCKETS_SECONDS, SIZE_BUCKETS_BYTES] {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        }
    }

    #[test]
    fn local_recorder_renders_build_info_and_histogram_buckets() {
        let recorder = prometheus_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::histogram!("mailraft_test_latency_seconds").record(0.003);
            metrics::histogram!("mailraft_test_size_bytes").record(3000.0);
        });
        let text = handle.render();
        assert!(text.contains("# HELP mailraft_build_info"), "{text}");
        assert!(
            text.contains(&format!(
                "mailraft_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        // 0.003 s falls in the 0.005 bucket but not the 0.0025 one.
        assert!(
            text.contains("mailraft_test_latency_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("mailraft_test_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        // `_bytes` histograms use the size layout.
        assert!(
            text.contains("mailraft_test_size_bytes_bucket{le=\"1024\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("mailraft_test_size_bytes_bucket{le=\"4096\"} 1"),
            "{text}"
        );
    }
}
