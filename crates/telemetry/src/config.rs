//! The `[telemetry]` configuration section: log format and filter, the optional OTLP trace
//! endpoint and the optional Prometheus listener address.

use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable single-line text; the default for terminals and `mailraft dev`.
    #[default]
    Text,
    /// One JSON object per line, for log collectors that index fields.
    Json,
}

/// Telemetry settings shared by every `mailraft` subcommand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Text for people, JSON for collectors.
    pub log_format: LogFormat,
    /// `tracing` filter directives (`info`, `mailraft_store=debug,info`). `RUST_LOG`, when set,
    /// replaces it so an operator can raise verbosity without editing files.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint (`http://otel-collector:4317`). Unset means no span export:
    /// tracing then costs nothing beyond the log layer.
    #[serde(deserialize_with = "empty_as_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute on exported spans, so traces of storage nodes and
    /// front-ends can be told apart.
    pub service_name: String,
    /// Address of the Prometheus scrape listener (`/metrics`). Unset means metrics are still
    /// recorded (see [`crate::render_metrics`]) but no port is opened.
    #[serde(deserialize_with = "empty_as_none")]
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info,openraft=warn".to_owned(),
            otlp_endpoint: None,
            service_name: "mailraft".to_owned(),
            metrics_addr: None,
        }
    }
}

/// Reads an optional value where an empty string also means "unset".
///
/// TOML has no null and an environment variable cannot be unset by a config layer, so `""` is
/// the only way for a file or `MAILRAFT_TELEMETRY__METRICS_ADDR=` to turn off a default. Public so
/// the process configuration uses the same rule for its own optional settings.
pub fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TelemetryConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_map_gives_defaults() {
        assert_eq!(parse("{}").unwrap(), TelemetryConfig::default());
    }

    #[test]
    fn fields_parse_and_empty_string_means_none() {
        let cfg = parse(
            r#"{"log_format":"json","metrics_addr":"127.0.0.1:9100","otlp_endpoint":"","service_name":"x"}"#,
        )
        .unwrap();
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(cfg.otlp_endpoint, None);
        assert_eq!(cfg.service_name, "x");
    }

    #[test]
    fn unknown_field_and_bad_address_are_rejected() {
        assert!(parse(r#"{"log_fromat":"json"}"#).is_err());
        assert!(parse(r#"{"metrics_addr":"not-an-address"}"#).is_err());
        assert!(parse(r#"{"log_format":"xml"}"#).is_err());
        assert_eq!(
            parse(r#"{"metrics_addr":null}"#).unwrap().metrics_addr,
            None
        );
    }
}
