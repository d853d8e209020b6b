//! Integration tests of the RocksDB-backed Raft storage. One test binary (RocksDB makes each
//! link slow); one module per concern.

mod common;
mod dedup;
mod durability;
mod feature_level;
mod format;
mod log_bytes;
mod permissions;
mod retired;
mod snapshot;
mod suite;
