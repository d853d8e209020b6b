//! The deterministic heart of Mailraft: tenants, accounts, mailboxes, messages, flags, UID and
//! MODSEQ allocation, the change log and reference-counted blobs.
//!
//! Flow: the storage node turns a client operation into a [`Request`] (adding the clock and
//! anything random or expensive), Raft replicates it, and every replica calls [`apply`] with a
//! read view of its state. `apply` is a pure function of (state, request): it returns the
//! [`Reply`] and records its writes in a [`WriteSet`], which the store commits atomically with
//! `last_applied`. Reads that do not change state (select, fetch, status, changes) are the
//! functions in [`query`], run against the same [`KvRead`] view.
//!
//! Invariants (property-tested in `tests/`): UIDs strictly increase and are never reused;
//! UIDVALIDITY of a living mailbox never changes; every change raises the mailbox's MODSEQ;
//! counters match the messages; a blob is dropped exactly when its last reference goes; a
//! request whose id was applied within [`DEDUP_WINDOW_MS`] gets the same reply again and
//! changes nothing.

#![deny(missing_docs)]

mod access;
pub mod apply;
pub mod command;
pub mod feature;
pub mod flags;
pub mod keys;
pub mod kv;
pub mod limits;
pub mod message_record;
pub mod names;
pub mod query;
pub mod records;
pub mod types;

pub use apply::dedup::{DEDUP_WINDOW_MS, PURGE_PER_APPLY};
pub use apply::{Applied, apply, apply_detailed};
pub use command::*;
pub use feature::{FatalError, KNOWN_FEATURE_LEVEL};
pub use kv::{KvRead, MemKv, Overlay, Table, WriteSet};
pub use query::ChangesView;
pub use records::{
    Account, BlobMeta, Change, DedupEntry, Mailbox, MessageMeta, Record, RetiredKey, SessionKey, SessionKeys, Tenant,
};
pub use types::*;
