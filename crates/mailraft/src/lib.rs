//! Library half of the `mailraft` binary: configuration, TLS material, CLI and the start-up of
//! each kind of process, shared by `main.rs` and the tests.
//!
//! Flow: `main` parses the CLI ([`cli`]), loads [`config::Config`] (defaults < file < env <
//! flags), installs telemetry, then runs `dev`, `storage`, `frontend` or `admin`; the server
//! kinds are assembled from [`launch`] and stop in order on SIGINT/SIGTERM. `dev --nodes N`
//! supervises N storage child processes ([`dev_cluster`]). `certs` makes the cluster CA and the
//! certificates of gRPC's mutual TLS ([`certs`]). `admin backup` writes a backup file
//! ([`backup`]); `storage --restore-from` starts a new cluster from one ([`launch`]).

pub mod admin;
pub mod backup;
pub mod certs;
pub mod cli;
pub mod config;
pub mod dev_cluster;
pub mod launch;
pub mod security;
pub mod tls;
