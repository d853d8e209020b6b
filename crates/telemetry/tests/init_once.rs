//! Full `init` in its own process (one test binary = one process, as global installs require):
//! metrics over HTTP and `render_metrics`, OTLP export configured against an unreachable
//! collector, the once-per-process rule, and a bounded shutdown.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mailraft_telemetry::{TelemetryConfig, TelemetryError, init, init_for_tests, render_metrics};

/// A port that was free a moment ago. The exporter cannot report the port it bound when given
/// port 0, so the test picks one; the race with other processes is accepted for a test.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                write!(
                    stream,
                    "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                return response;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {addr}: {e}; retrying");
                std::thread::yield_now();
            }
            Err(e) => panic!("metrics listener never accepted on {addr}: {e}"),
        }
    }
}

#[test]
fn init_serves_metrics_exports_spans_and_refuses_a_second_call() {
    assert!(render_metrics().is_none(), "nothing installed yet");
    let addr = free_addr();
    let cfg = TelemetryConfig {
        metrics_addr: Some(addr),
        // Nothing listens on port 1: export fails, which must not break the process.
        otlp_endpoint: Some("http://127.0.0.1:1".into()),
        service_name: "telemetry-test".into(),
        ..TelemetryConfig::default()
    };
    let guard = init(&cfg).unwrap();

    assert!(matches!(
        init(&cfg),
        Err(TelemetryError::AlreadyInitialized)
    ));
    init_for_tests(); // a subscriber exists already: must be a silent no-op

    tracing::info_span!("request", op = "test").in_scope(|| tracing::info!("inside a span"));
    metrics::counter!("mailraft_test_requests_total").increment(2);
    metrics::histogram!("mailraft_test_latency_seconds").record(0.02);

    let rendered = render_metrics().unwrap();
    assert!(
        rendered.contains("mailraft_build_info{version="),
        "{rendered}"
    );
    assert!(
        rendered.contains("mailraft_test_requests_total 2"),
        "{rendered}"
    );

    let response = http_get(addr, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("# HELP mailraft_build_info"),
        "{response}"
    );
    assert!(
        response.contains("mailraft_test_latency_seconds_bucket{le=\"0.025\"} 1"),
        "{response}"
    );

    let started = Instant::now();
    let result = guard.shutdown();
    let took = started.elapsed();
    eprintln!("shutdown with unreachable collector: {result:?} in {took:?}");
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");

    // The recorder outlives the guard; the listener does not.
    assert!(render_metrics().unwrap().contains("mailraft_build_info"));
}
