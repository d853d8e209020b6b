//! The replicated state machine: runs the model's `apply` on committed entries and persists the
//! result.
//!
//! One call to [`RaftStateMachine::apply`] handles a batch of committed entries:
//! 1. every normal entry runs `mailraft_model::apply::apply` against the committed state (read
//!    directly from RocksDB) and the batch's shared [`WriteSet`], so later entries see earlier
//!    entries' writes;
//! 2. the write set, `last_applied` and, if the batch changed them, `last_membership` and the
//!    retired node ids (every node a membership change dropped) go into ONE `WriteBatch`, written
//!    to the WAL WITHOUT an fsync of its own;
//! 3. then the replies are returned (openraft forwards them to the proposers) and the batch's
//!    [`MailboxEvent`]s published to watchers.
//!
//! Why no fsync in step 2 (issue 8, "one fsync per write"): every entry applied here was already
//! fsynced into the Raft log on a quorum before it was committed, so the log alone makes it
//! durable. The log and the state machine share one RocksDB and so one sequential WAL: the batch
//! is atomic, and a later synced write (the next log append, a vote, a purge) fsyncs it too.
//! A process crash (SIGKILL) keeps the WAL's written bytes in the page cache; a power cut may
//! lose the newest apply batches, but only whole batches from the tail, each with its own
//! `last_applied`, so the state is always exactly "everything up to `last_applied`". openraft
//! then re-applies the log from the durable `last_applied` (the leader re-commits on restart,
//! and a follower learns the commit index from the leader); apply is deterministic, so the
//! same UIDs and MODSEQs come back. Log purges are synced writes made after the snapshot that
//! covers the purged entries, so the applies they depend on are on disk before any entry they
//! came from is deleted. `tests/durability_power_loss.rs` cuts power right after acknowledged
//! APPENDs (losing every unsynced byte) and checks each is still there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use mailraft_model::{FatalError, KvRead, MailboxEvent, Outcome, Reply, Request, WriteSet};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, StorageError};
use rocksdb::{DB, WriteBatch};
use tokio::sync::broadcast;

use crate::db::{self, CF_SM_STATE, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP, KEY_RETIRED_NODES};
use crate::error::{IntoStorage, Result, StoreError};
use crate::metrics;
use crate::pool::Executor;
use crate::reader::{StateRead, StateView};
use crate::snapshot::{self, SnapshotBuilder, SnapshotFiles};
use crate::types::{
    Entry, LogId, Membership, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};

/// Capacity of the event channel. A watcher that falls further behind gets `Lagged` and must
/// re-read changes since its last MODSEQ (which IDLE catch-up does anyway).
pub const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// The state machine of one node.
pub struct StateMachineStore {
    /// Shared with the log store.
    db: Arc<DB>,
    /// The current snapshot file.
    snapshots: Arc<SnapshotFiles>,
    /// Publishes each applied batch's mailbox changes, after they are durable.
    events: broadcast::Sender<MailboxEvent>,
    /// The thread that applies batches and installs snapshots: the write path never waits
    /// for a thread of tokio's shared blocking pool.
    worker: Executor,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore").finish_non_exhaustive()
    }
}

/// What applying one batch produced.
struct Applied {
    /// One reply per entry, in order.
    replies: Vec<Reply>,
    /// Mailbox changes of the batch, in order.
    events: Vec<MailboxEvent>,
    /// Entries answered from the dedup table (retries of already applied requests).
    dedup_hits: u64,
}

impl StateMachineStore {
    pub(crate) fn new(db: Arc<DB>, snapshots: Arc<SnapshotFiles>, worker: Executor) -> Self {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        StateMachineStore {
            db,
            snapshots,
            events,
            worker,
        }
    }

    /// Mailbox changes of every batch applied from now on, each published after the batch is
    /// durable. Nothing is published for a snapshot install: watchers must re-read after a gap.
    pub fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        self.events.subscribe()
    }

    /// A read handle on the applied state that outlives this store's move into [`crate::Raft`].
    pub fn reader(&self) -> StateView {
        StateView::new(self.db.clone(), self.events.clone())
    }

    /// Sets the `mailraft_rocksdb_size_bytes{cf}` gauges; cheap, call it periodically.
    pub fn report_sizes(&self) {
        metrics::report_sizes(&self.db);
    }

    fn read_applied_state(&self) -> Result<(Option<LogId>, StoredMembership)> {
        let last_applied = db::get_value(&self.db, CF_SM_STATE, KEY_LAST_APPLIED)?;
        let membership =
            db::get_value(&self.db, CF_SM_STATE, KEY_LAST_MEMBERSHIP)?.unwrap_or_default();
        Ok((last_applied, membership))
    }
}

/// Runs one command of the model: reads `kv` plus `writes`, adds its writes to `writes` only on
/// success (so a failed command leaves the batch untouched on every replica, apart from the
/// dedup bookkeeping). A retried request id is answered from the dedup table (`replayed`).
///
/// A refusal is the command's reply and the entry counts as applied. A [`FatalError`] is not:
/// this binary cannot apply the entry as the other replicas do (a feature level newer than it
/// knows, `mailraft_model::feature`), so it becomes [`StoreError::Fatal`], nothing of the batch
/// is written, and openraft stops the node with the model's message (which names the binary
/// needed) instead of applying it with the wrong rules.
fn model_apply(kv: &dyn KvRead, writes: &mut WriteSet, req: &Request) -> Result<mailraft_model::Applied, FatalError> {
    mailraft_model::apply_detailed(kv, writes, req)
}

/// Applies a batch and commits it with `last_applied` in one synced write (blocking).
fn apply_batch(db: &DB, entries: Vec<Entry>) -> Result<Applied> {
    let base = StateRead::latest(db);
    let mut writes = WriteSet::default();
    let mut replies = Vec::with_capacity(entries.len());
    let mut events = Vec::new();
    let mut dedup_hits = 0;
    let mut last_applied = None;
    let mut membership = None;
    let mut retired = Retired::default();
    for entry in entries {
        match entry.payload {
            EntryPayload::Blank => replies.push(Ok(Outcome::Done)),
            EntryPayload::Normal(req) => {
                let mut applied = match model_apply(&base, &mut writes, &req) {
                    Ok(applied) => applied,
                    Err(fatal) => {
                        tracing::error!(log_id = %entry.log_id, command = req.command.name(), error = %fatal, "cannot apply; stopping");
                        return Err(StoreError::Fatal(fatal));
                    }
                };
                if applied.replayed {
                    dedup_hits += 1;
                    tracing::debug!(request_id = ?req.request_id, command = req.command.name(), "replayed a retried request");
                }
                replies.push(applied.reply);
                events.append(&mut applied.events);
            }
            EntryPayload::Membership(m) => {
                retired.note_change(db, membership.as_ref(), &m)?;
                membership = Some(StoredMembership::new(Some(entry.log_id), m));
                replies.push(Ok(Outcome::Done));
            }
        }
        last_applied = Some(entry.log_id);
    }
    // A read that failed inside RocksDB made the model see a key as absent: its writes cannot
    // be trusted, so nothing of the batch is committed.
    base.finish()?;

    let mut batch = WriteBatch::default();
    db::add_write_set(db, &mut batch, writes)?;
    let sm_state = db::cf(db, CF_SM_STATE)?;
    if let Some(id) = &last_applied {
        batch.put_cf(&sm_state, KEY_LAST_APPLIED, db::encode(id)?);
    }
    if let Some(m) = &membership {
        batch.put_cf(&sm_state, KEY_LAST_MEMBERSHIP, db::encode(m)?);
    }
    if let Some(ids) = retired.changed() {
        batch.put_cf(&sm_state, KEY_RETIRED_NODES, db::encode(ids)?);
    }
    // Not synced: see the module header (the Raft log's fsync made these entries durable).
    db::write_unsynced(db, batch)?;
    Ok(Applied {
        replies,
        events,
        dedup_hits,
    })
}

/// The retired node ids as a batch changes them: loaded with the stored membership at the
/// batch's first membership entry, grown by every node a membership entry drops.
#[derive(Default)]
struct Retired {
    /// The membership stored before the batch, and the set.
    loaded: Option<(StoredMembership, BTreeSet<u64>)>,
    changed: bool,
}

impl Retired {
    /// Every node (voter or learner) of the membership before `after` (the batch's previous
    /// membership entry, else the stored one) that `after` no longer has is retired; a retired id
    /// that `after` holds again (an operator added it anew) is not retired any more.
    fn note_change(&mut self, db: &DB, in_batch: Option<&StoredMembership>, after: &Membership) -> Result<()> {
        if self.loaded.is_none() {
            let stored: StoredMembership = db::get_value(db, CF_SM_STATE, KEY_LAST_MEMBERSHIP)?.unwrap_or_default();
            self.loaded = Some((stored, retired_nodes(db)?));
        }
        let Some((stored, ids)) = &mut self.loaded else { return Ok(()) };
        let before = in_batch.unwrap_or(stored);
        for (id, _) in before.membership().nodes() {
            if !after.nodes().any(|(kept, _)| kept == id) {
                self.changed |= ids.insert(*id);
            }
        }
        for (id, _) in after.nodes() {
            self.changed |= ids.remove(id);
        }
        Ok(())
    }

    /// The new set, if the batch retired a node.
    fn changed(&self) -> Option<&BTreeSet<u64>> {
        self.loaded.as_ref().filter(|_| self.changed).map(|(_, ids)| ids)
    }
}

/// The ids of nodes that have left the membership (read by the Raft service for every message).
pub(crate) fn retired_nodes(db: &DB) -> Result<BTreeSet<u64>> {
    Ok(db::get_value(db, CF_SM_STATE, KEY_RETIRED_NODES)?.unwrap_or_default())
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<u64>> {
        self.read_applied_state()
            .storage(ErrorSubject::StateMachine, ErrorVerb::Read)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let count = entries.len();
        let started = Instant::now();
        let db = self.db.clone();
        let applied = self
            .worker
            .run(move || apply_batch(&db, entries))
            .await
            .and_then(|r| r)
            .storage(ErrorSubject::Apply(last), ErrorVerb::Write)?;
        metrics::applied(count, started.elapsed());
        metrics::dedup_hits(applied.dedup_hits);
        for event in applied.events {
            // No receiver is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        Ok(applied.replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(self.db.clone(), self.snapshots.clone())
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError<u64>> {
        let files = self.snapshots.clone();
        tokio::task::spawn_blocking(move || files.receiving().map(Box::new))
            .await
            .map_err(StoreError::from)
            .and_then(|r| r)
            .storage(ErrorSubject::Snapshot(None), ErrorVerb::Write)
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<u64>> {
        let signature = meta.signature();
        let installed = self
            .install_from_file(meta, snapshot, snapshot::InstallLimits::default())
            .await;
        // A snapshot at a feature level this binary cannot apply was refused before the state
        // was touched (`snapshot::install`); the storage error stops openraft, as a `FatalError`
        // from apply does, and the model's message names the binary needed.
        if let Err(StoreError::Fatal(fatal)) = &installed {
            tracing::error!(snapshot = %meta.snapshot_id, error = %fatal, "cannot install snapshot; stopping");
        }
        installed
            .map(|_| ())
            .storage(ErrorSubject::Snapshot(Some(signature)), ErrorVerb::Write)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError<u64>> {
        let files = self.snapshots.clone();
        tokio::task::spawn_blocking(move || files.current())
            .await
            .map_err(StoreError::from)
            .and_then(|r| r)
            .storage(ErrorSubject::Snapshot(None), ErrorVerb::Read)
    }
}

/// Snapshot installs from a file (see `snapshot.rs`), shared by openraft's `install_snapshot` and
/// the crash-simulation hook below.
impl StateMachineStore {
    async fn install_from_file(
        &mut self,
        meta: &SnapshotMeta,
        data: Box<SnapshotData>,
        limits: snapshot::InstallLimits,
    ) -> Result<snapshot::Applied> {
        let db = self.db.clone();
        let files = self.snapshots.clone();
        let meta = meta.clone();
        self.worker.run(move || -> Result<snapshot::Applied> {
            let started = Instant::now();
            let (applied, bytes) = snapshot::install(&db, &files, &meta, *data, limits)?;
            tracing::info!(
                last_log_id = ?meta.last_log_id,
                bytes,
                seconds = started.elapsed().as_secs_f64(),
                "installed snapshot"
            );
            metrics::snapshot("install", bytes, started.elapsed());
            Ok(applied)
        })
        .await
        .and_then(|r| r)
    }

    /// Tests only: commits `writes` to the state directly, bypassing `apply`, to make a state no
    /// entry this binary applies can make (one at the feature level of newer binaries, whose
    /// snapshot or backup this binary must refuse).
    #[doc(hidden)]
    pub fn write_state_for_tests(&self, writes: WriteSet) -> Result<()> {
        let mut batch = WriteBatch::default();
        db::add_write_set(&self.db, &mut batch, writes)?;
        db::write_sync(&self.db, batch)
    }

    /// Tests only: installs like `install_snapshot` with batches of `batch_bytes`, but stops
    /// after writing `batches` of them, leaving the database as a crash at that point would.
    /// Drop the store and reopen it to see the recovery.
    #[doc(hidden)]
    pub async fn install_snapshot_then_crash(
        &mut self,
        meta: &SnapshotMeta,
        data: Box<SnapshotData>,
        batch_bytes: usize,
        batches: usize,
    ) -> Result<()> {
        let limits = snapshot::InstallLimits {
            batch_bytes,
            crash_after_batches: Some(batches),
        };
        match self.install_from_file(meta, data, limits).await? {
            snapshot::Applied::Interrupted => Ok(()),
            snapshot::Applied::Complete => Err(StoreError::Task(
                "the install finished before the simulated crash".into(),
            )),
        }
    }
}
