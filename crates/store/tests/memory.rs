//! A snapshot larger than the snapshot buffers is built, received in chunks and installed with
//! the process's heap growing by a small fraction of the snapshot's size.
//!
//! Its own test binary (one process, one test), because it measures the whole process's Rust
//! heap with a counting global allocator. RocksDB allocates through C++ `new`, which is not
//! counted: its memtables are bounded by RocksDB's own configuration, not by the snapshot code
//! under test. The largest live heap during each phase is compared with the snapshot's size.
// A `GlobalAlloc` is unsafe to implement; this one only forwards to `System` and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mailraft_model::{Command, NewMessage};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

#[allow(dead_code)]
#[path = "store/common.rs"]
mod common;

/// Bytes currently allocated, and the most since the last [`reset_peak`].
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a measurement; returns the live bytes at its start.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// Growth of the heap's high-water mark since `base`.
fn peak_growth(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// Resident set size from `/proc/self/statm`, for the log only (it includes RocksDB).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Message bodies in the state machine.
const MESSAGES: usize = 50;
const BODY_BYTES: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_larger_than_its_buffers_moves_in_bounded_memory() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l_log, mut leader) = mailraft_store::open(leader_dir.path()).expect("open leader");
    let (_f_log, mut follower) = mailraft_store::open(follower_dir.path()).expect("open follower");

    let who = common::tenant_and_account(&mut leader, "alice").await;
    for n in 0..MESSAGES {
        // Distinct bodies (blobs are stored once per content), one message per entry.
        let mut body = format!("Subject: {n}\r\n\r\n").into_bytes();
        body.extend((0..BODY_BYTES).map(|i| b'a' + ((i * 31 + n * 7) % 26) as u8));
        let message = NewMessage {
            body,
            flags: Vec::new(),
            internal_date: None,
            tz_offset_minutes: 0,
            structure: Vec::new(),
        };
        let replies = leader
            .apply([common::entry(
                3 + n as u64,
                Command::Append {
                    who,
                    mailbox: "INBOX".into(),
                    messages: vec![message],
                },
            )])
            .await
            .expect("apply");
        assert!(replies[0].is_ok(), "{replies:?}");
    }

    let rss_start = rss_bytes();
    let base = reset_peak();
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let build_growth = peak_growth(base);
    let size = snap.snapshot.size().expect("size");
    assert!(
        size > (MESSAGES * BODY_BYTES) as u64,
        "snapshot of {size} bytes"
    );

    let base = reset_peak();
    let received = common::receive(&snap.snapshot, &mut follower, 0).await;
    follower
        .install_snapshot(&snap.meta, received)
        .await
        .expect("install");
    let install_growth = peak_growth(base);

    println!(
        "snapshot {size} bytes; heap high-water growth: build {build_growth}, receive+install \
         {install_growth}; rss {rss_start} -> {} (includes RocksDB memtables)",
        rss_bytes()
    );
    // Buffers are about 1 MiB each (I/O buffer, a chunk, the largest value): a handful of them
    // at once, whatever the size. A full copy of the snapshot would be 50 MiB.
    let budget = (size / 5) as usize;
    assert!(
        build_growth < budget,
        "build grew the heap by {build_growth} bytes"
    );
    assert!(
        install_growth < budget,
        "install grew the heap by {install_growth} bytes"
    );

    assert_eq!(
        follower.applied_state().await.expect("state"),
        leader.applied_state().await.expect("state")
    );
    assert_eq!(
        common::dump(&follower.reader()),
        common::dump(&leader.reader())
    );
}
