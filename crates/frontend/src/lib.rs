//! Mailraft's stateless IMAP front-end.
//!
//! A front-end holds no mail: every session turns IMAP commands into calls on the storage tier's
//! `Storage` gRPC service and keeps only what IMAP needs per connection (the session state and,
//! for the selected mailbox, the sequence-number ↔ UID map and the highest modseq reported).
//! Any number of front-ends can serve the same storage cluster.
//!
//! Flow of one connection:
//! 1. [`server`] accepts a socket under the connection limit and the per-address limit on
//!    unauthenticated connections ([`preauth`]), refusing inline otherwise, then (TLS handshake
//!    for implicit TLS) spawns a [`connection::Connection`].
//! 2. The connection reads with a state-dependent timeout; [`framer`] splits bytes into whole
//!    messages (lines + literals) under size caps; imap-codec decodes them into commands.
//! 3. [`session`] gates each command by RFC 3501 state; [`cmd`] runs it (one file per command)
//!    through [`storage`] (routing, leader hints, retries, error mapping to [`FrontendError`]).
//! 4. Before each tagged reply in the selected state, [`session::updates`] asks the storage
//!    for changes and sends EXISTS / EXPUNGE / FETCH FLAGS where RFC 3501 §7.4.1 allows.
//! 5. IDLE subscribes to the process-wide [`watch`] hub, which holds one storage watch stream
//!    and wakes the sessions whose mailbox changed.
//!
//! Protocol translation that does not touch sessions lives in the sibling modules [`flags`],
//! [`render`] (FETCH items), [`search`], [`seqset`] and [`utf7`].

// Unit tests may unwrap; the library itself may not (workspace lint `unwrap_used`).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cmd;
pub mod config;
pub mod connection;
pub mod error;
pub mod flags;
pub mod framer;
/// Entry points of the fuzz targets and their corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod limits;
/// LMTP delivery (RFC 2033): its own listener and room, sharing only the storage client.
pub mod lmtp;
pub mod metrics;
pub mod names;
pub mod preauth;
pub mod render;
pub mod response;
pub mod search;
pub mod seqset;
pub mod server;
pub mod session;
pub mod storage;
pub mod tls;
pub mod utf7;
pub mod watch;

pub use config::{ConfigError, FrontendConfig};
pub use error::FrontendError;
pub use server::ImapServer;
pub use tls::{TlsError, TlsMode, tls_config_from_pem};
