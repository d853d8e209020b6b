//! The checked-in `mailraft.example.toml` stays in sync with `Config`, and loading honours
//! defaults < file < environment.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use mailraft::config::{Config, ConfigError};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mailraft.example.toml")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn temp_toml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn example_equals_defaults_through_the_loader() {
    let loaded = Config::load_with_env(Some(&example_path()), no_env()).unwrap();
    assert_eq!(loaded, Config::default());
}

#[test]
fn example_equals_defaults_through_plain_toml() {
    // Independent of the `config` crate: serde + deny_unknown_fields alone.
    let text = std::fs::read_to_string(example_path()).unwrap();
    let parsed: Config = toml::from_str(&text).unwrap();
    assert_eq!(parsed, Config::default());
}

/// Key sets per section, so a new field without a documented line in the example fails here.
fn keys(value: &toml::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (section, table) in value.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            out.insert(format!("{section}.{key}"));
        }
    }
    out
}

#[test]
fn example_lists_every_option() {
    let mut full = Config::default();
    // Options are omitted when serialized as None; fill them so every field shows up.
    full.node.advertise_addr = Some("node1:50051".into());
    full.node.admin_advertise_addr = Some("node1:50061".into());
    full.tls.ca = Some("ca.pem".into());
    full.tls.cert = Some("node-1.pem".into());
    full.tls.key = Some("node-1-key.pem".into());
    full.imap.tls_cert = Some("cert.pem".into());
    full.imap.tls_key = Some("key.pem".into());
    full.telemetry.otlp_endpoint = Some("http://collector:4317".into());
    full.lmtp.addr = Some("127.0.0.1:24".parse().unwrap());
    full.lmtp.socket = Some("/run/mailraft/lmtp.sock".into());
    let fields = keys(&toml::Value::try_from(&full).unwrap());

    let text = std::fs::read_to_string(example_path()).unwrap();
    let documented = keys(&toml::from_str::<toml::Value>(&text).unwrap());
    assert_eq!(documented, fields);
}

#[test]
fn environment_overrides_defaults() {
    let cfg = Config::load_with_env(
        None,
        env(&[
            ("MAILRAFT_IMAP__ADDR", "0.0.0.0:143"),
            ("MAILRAFT_IMAP__TLS_ADDR", ""),
            ("MAILRAFT_IMAP__ALLOW_PLAINTEXT_AUTH", "true"),
            ("MAILRAFT_IMAP__MAX_CONNECTIONS", "42"),
            ("MAILRAFT_RAFT__HEARTBEAT_MS", "100"),
            (
                "MAILRAFT_STORAGE__ENDPOINTS",
                "http://s1:50051, http://s2:50051",
            ),
            ("MAILRAFT_TELEMETRY__LOG_FORMAT", "json"),
            ("MAILRAFT_TELEMETRY__METRICS_ADDR", ""),
            // Must stay a string: a numeric-looking password must not lose its leading zero.
            ("MAILRAFT_DEV__DEMO_PASSWORD", "0123"),
            // Not configuration keys (no section separator): ignored, not rejected.
            ("MAILRAFT_CONFIG", "/etc/mailraft.toml"),
            ("MAILRAFT_LOG", "debug"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.imap.addr, Some("0.0.0.0:143".parse().unwrap()));
    assert_eq!(cfg.imap.tls_addr, None);
    assert!(cfg.imap.allow_plaintext_auth);
    assert_eq!(cfg.imap.max_connections, 42);
    assert_eq!(cfg.raft.heartbeat_ms, 100);
    assert_eq!(
        cfg.storage.endpoints,
        vec!["http://s1:50051", "http://s2:50051"]
    );
    assert_eq!(
        cfg.telemetry.log_format,
        mailraft_telemetry::LogFormat::Json
    );
    assert_eq!(cfg.telemetry.metrics_addr, None);
    assert_eq!(cfg.dev.demo_password, "0123");
    // Untouched keys keep their defaults.
    assert_eq!(cfg.node, Config::default().node);
}

#[test]
fn file_overrides_defaults_and_environment_overrides_file() {
    let file = temp_toml(
        r#"
        [raft]
        heartbeat_ms = 200
        election_min_ms = 1000

        [telemetry]
        log_filter = "debug"
        "#,
    );
    let cfg = Config::load_with_env(
        Some(file.path()),
        env(&[("MAILRAFT_RAFT__HEARTBEAT_MS", "100")]),
    )
    .unwrap();
    assert_eq!(cfg.raft.heartbeat_ms, 100, "environment beats file");
    assert_eq!(cfg.raft.election_min_ms, 1000, "file beats default");
    assert_eq!(cfg.raft.election_max_ms, 3000, "default kept");
    assert_eq!(cfg.telemetry.log_filter, "debug");
    // A partial [telemetry] table keeps the binary's default metrics listener.
    assert_eq!(
        cfg.telemetry.metrics_addr,
        Config::default().telemetry.metrics_addr
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let file = temp_toml("[imap]\nmax_conections = 5\n");
    let err = Config::load_with_env(Some(file.path()), no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse(_)), "{err}");
    assert!(err.to_string().contains("max_conections"), "{err}");

    let file = temp_toml("[imapp]\naddr = \"\"\n");
    assert!(matches!(
        Config::load_with_env(Some(file.path()), no_env()),
        Err(ConfigError::Parse(_))
    ));

    let err = Config::load_with_env(None, env(&[("MAILRAFT_RAFT__HEARTBEAT", "1")])).unwrap_err();
    assert!(matches!(err, ConfigError::Parse(_)), "{err}");
}

#[test]
fn mistyped_values_are_rejected() {
    for bad in [
        "[imap]\naddr = \"not an address\"\n",
        "[raft]\nheartbeat_ms = \"fast\"\n",
        "[telemetry]\nlog_format = \"xml\"\n",
    ] {
        let file = temp_toml(bad);
        assert!(
            matches!(
                Config::load_with_env(Some(file.path()), no_env()),
                Err(ConfigError::Parse(_))
            ),
            "accepted: {bad}"
        );
    }
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    assert!(matches!(
        Config::load_with_env(Some(&missing), no_env()),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn loader_validates() {
    let file = temp_toml("[raft]\nheartbeat_ms = 2000\n");
    let err = Config::load_with_env(Some(file.path()), no_env()).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                field: "raft.heartbeat_ms",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn validate_rejects_broken_configs() {
    type Mutation = fn(&mut Config);
    let cases: &[(&str, Mutation)] = &[
        ("node.id", |c| c.node.id = 0),
        ("node.group_id", |c| c.node.group_id = 0),
        ("node.data_dir", |c| c.node.data_dir = PathBuf::new()),
        ("imap.tls_cert", |c| {
            c.imap.tls_cert = Some("cert.pem".into())
        }),
        ("imap.tls_cert", |c| c.imap.tls_key = Some("key.pem".into())),
        ("imap.tls_addr", |c| c.imap.tls_addr = c.imap.addr),
        ("imap.max_connections", |c| c.imap.max_connections = 0),
        ("imap.max_line_bytes", |c| c.imap.max_line_bytes = 0),
        ("imap.max_literal_bytes", |c| c.imap.max_literal_bytes = 0),
        ("imap.preauth_timeout_secs", |c| {
            c.imap.preauth_timeout_secs = 0
        }),
        ("imap.max_auth_failures", |c| c.imap.max_auth_failures = 0),
        ("imap.max_preauth_literal_bytes", |c| c.imap.max_preauth_literal_bytes = 0),
        ("imap.max_preauth_per_ip", |c| c.imap.max_preauth_per_ip = 0),
        ("imap.write_timeout_secs", |c| c.imap.write_timeout_secs = 0),
        ("imap.idle_timeout_secs", |c| {
            c.imap.idle_timeout_secs = 1799
        }),
        ("storage.endpoints", |c| c.storage.endpoints.clear()),
        ("storage.endpoints", |c| {
            c.storage.endpoints = vec!["127.0.0.1:50051".into()]
        }),
        ("storage.request_timeout_ms", |c| {
            c.storage.request_timeout_ms = 0
        }),
        ("raft.heartbeat_ms", |c| c.raft.heartbeat_ms = 0),
        ("raft.heartbeat_ms", |c| {
            c.raft.heartbeat_ms = c.raft.election_min_ms
        }),
        ("raft.election_min_ms", |c| {
            c.raft.election_min_ms = c.raft.election_max_ms
        }),
        ("raft.snapshot_logs_since_last", |c| {
            c.raft.snapshot_logs_since_last = 0
        }),
        ("telemetry.service_name", |c| {
            c.telemetry.service_name = " ".into()
        }),
        ("dev.demo_user", |c| c.dev.demo_user.clear()),
    ];
    for (field, mutate) in cases {
        let mut cfg = Config::default();
        mutate(&mut cfg);
        match cfg.validate() {
            Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, *field),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }

    // Both TLS files, or both listeners disabled, are fine.
    let mut cfg = Config::default();
    cfg.imap.tls_cert = Some("cert.pem".into());
    cfg.imap.tls_key = Some("key.pem".into());
    cfg.validate().unwrap();
    cfg.imap.addr = None;
    cfg.imap.tls_addr = None;
    cfg.validate().unwrap();
}
