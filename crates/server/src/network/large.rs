//! The client half of "Large entries" (see the parent module's docs): byte-bounded AppendEntries
//! batches, and large entries staged on the peer in chunks before the AppendEntries that carries
//! them.
//!
//! Flow of one `append_entries` call ([`PeerClient::append`]):
//! 1. Size the entries with [`size_hint`]. A small first entry: send the prefix that
//!    [`split_point`] allows; a cut batch answers `PartialSuccess(last sent)`.
//! 2. A large first entry: get its [`Outgoing`] state for this peer (encoding it on a blocking
//!    thread the first time), send chunks until half of the deadline is spent, then either commit
//!    it with `AppendStaged` (the peer holds and has decoded it) or send an AppendEntries without
//!    entries and answer `PartialSuccess(prev_log_id)`, so openraft calls again at once.
//!
//! All state lives in the shared [`Network`], so a call that openraft's deadline cancels loses at
//! most the chunk in flight, and the peer's reply to the next chunk says where to resume.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mailraft_model::Command;
use mailraft_proto::{StageChunk, StageReply};
use mailraft_store::{Entry, LogId, NodeId, TypeConfig, Vote};
use openraft::EntryPayload;
use openraft::network::RPCTypes;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Network, PeerClient, RaftResult, Rpc, TransportError, classify};

/// An entry of at least this many bytes (by [`size_hint`]) is staged in chunks, not inlined.
pub(crate) const LARGE_ENTRY: usize = 1 << 20;
/// One AppendEntries carries about this many bytes of entries at most; the rest follows.
pub(crate) const MAX_BATCH_BYTES: usize = 4 << 20;
/// Largest `StageEntry` chunk.
const STAGE_CHUNK_MAX: usize = 1 << 20;
/// The chunk size never shrinks below this, however slow the link.
const STAGE_CHUNK_MIN: usize = 64 << 10;
/// What [`size_hint`] adds to an entry's bulk: log id, request header, names, flags.
const ENTRY_OVERHEAD: usize = 256;
/// Requests whose entries are bigger than this are encoded on a blocking thread: postcard encodes
/// a byte vector one element at a time, which would stall the runtime for milliseconds.
const ENCODE_INLINE_MAX: usize = 256 << 10;
/// No call is given less than this, even when openraft's deadline is nearly spent.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(1);

/// The encoded entry once the encoder is done (`None` while it runs).
type Encoded = Option<Result<Arc<Vec<u8>>, String>>;

/// A large entry on its way to one peer, shared by every call to that peer.
pub(super) struct Outgoing {
    /// The leader's vote the entry is staged under.
    vote: Vote,
    /// The entry.
    log_id: LogId,
    /// Its encoding, published by a blocking thread.
    encoded: watch::Receiver<Encoded>,
    /// How far the transfer is.
    progress: Mutex<Progress>,
}

/// How far the transfer of an [`Outgoing`] entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Bytes the peer last said it holds.
    held: u64,
    /// The peer holds every byte and has decoded the entry: it can be committed.
    ready: bool,
    /// Bytes per chunk: halved after a chunk timed out, doubled after a quick one.
    chunk: usize,
}

impl Outgoing {
    fn progress(&self) -> Progress {
        *lock(&self.progress)
    }

    fn set_progress(&self, p: Progress) {
        *lock(&self.progress) = p;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Network {
    /// The staging state of `entry` for `target`. A new entry (which replaces whatever was staged
    /// for `target`) starts encoding on a blocking thread that publishes into the state, so the
    /// work survives the call that started it.
    fn outgoing_entry(&self, target: NodeId, vote: Vote, entry: Entry) -> Arc<Outgoing> {
        let mut map = lock(&self.outgoing);
        if let Some(out) = map.get(&target)
            && out.vote == vote
            && out.log_id == entry.log_id
        {
            return out.clone();
        }
        let (tx, rx) = watch::channel(None);
        let log_id = entry.log_id;
        tokio::task::spawn_blocking(move || {
            let encoded = postcard::to_allocvec(&entry).map(Arc::new).map_err(|e| e.to_string());
            // Fails only when the entry was replaced meanwhile and nobody waits for it.
            let _ = tx.send(Some(encoded));
        });
        let progress = Progress { held: 0, ready: false, chunk: STAGE_CHUNK_MAX };
        let out = Arc::new(Outgoing { vote, log_id, encoded: rx, progress: Mutex::new(progress) });
        map.insert(target, out.clone());
        out
    }

    /// Drops what is staged for `target`: only if it is `only`, or whatever it is for `None`.
    fn forget_outgoing(&self, target: NodeId, only: Option<&Arc<Outgoing>>) {
        let mut map = lock(&self.outgoing);
        if let Some(current) = map.get(&target)
            && only.is_none_or(|o| Arc::ptr_eq(o, current))
        {
            map.remove(&target);
        }
    }
}

impl PeerClient {
    /// `RaftNetwork::append_entries` within `ttl` (openraft's `hard_ttl`): see the module docs.
    pub(super) async fn append(
        &self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> RaftResult<AppendEntriesResponse<NodeId>> {
        let started = Instant::now();
        let hints: Vec<usize> = rpc.entries.iter().map(size_hint).collect();
        if hints.first().is_some_and(|h| *h >= LARGE_ENTRY) {
            return self.append_large(rpc, started, ttl).await;
        }
        if !rpc.entries.is_empty() {
            // The leader has moved on from whatever was staged for this peer.
            self.network.forget_outgoing(self.target, None);
        }
        let n = split_point(&hints);
        let split = n < rpc.entries.len();
        if split {
            rpc.entries.truncate(n);
            crate::metrics::raft_batch_split();
        }
        let last = rpc.entries.last().map(|e| e.log_id);
        let payload = if hints[..n].iter().sum::<usize>() <= ENCODE_INLINE_MAX {
            postcard::to_allocvec(&rpc).map_err(TransportError::from)
        } else {
            match tokio::task::spawn_blocking(move || postcard::to_allocvec(&rpc)).await {
                Ok(encoded) => encoded.map_err(TransportError::from),
                Err(e) => Err(TransportError::Encode(e.to_string())),
            }
        };
        let result = match payload {
            Ok(payload) => self.request(Rpc::AppendEntries, payload, remaining(started, ttl)).await,
            Err(e) => Err(e),
        };
        Ok(match self.settle(result, RPCTypes::AppendEntries)? {
            AppendEntriesResponse::Success if split => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    /// Moves a large first entry towards the peer and ends with a real AppendEntries RPC: the
    /// staged entry's commit once the peer is ready, a heartbeat without entries before.
    async fn append_large(
        &self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        started: Instant,
        ttl: Duration,
    ) -> RaftResult<AppendEntriesResponse<NodeId>> {
        let more = rpc.entries.len() > 1;
        // From here on `rpc` has no entries: it is the commit or the heartbeat.
        let Some(entry) = std::mem::take(&mut rpc.entries).into_iter().next() else {
            return self.heartbeat(rpc, started, ttl).await;
        };
        let out = self.network.outgoing_entry(self.target, rpc.vote, entry);
        if let Some(committed) = self.advance(&rpc, &out, started, ttl).await {
            return committed.map(|resp| self.committed(resp, &out, more));
        }
        let progress = out.progress();
        tracing::trace!(
            target_node = self.target,
            log_id = %out.log_id,
            held = progress.held,
            ready = progress.ready,
            elapsed = ?started.elapsed(),
            "large entry not committed yet; heartbeat"
        );
        self.heartbeat(rpc, started, ttl).await
    }

    /// Stages more of `out` within half of `ttl` and commits it with `commit` (an AppendEntries
    /// without entries) once the peer is ready. `None`: not committed, end the call with a
    /// heartbeat (still encoding, more chunks to go, too little time left, the peer lost it).
    async fn advance(
        &self,
        commit: &AppendEntriesRequest<TypeConfig>,
        out: &Arc<Outgoing>,
        started: Instant,
        ttl: Duration,
    ) -> Option<RaftResult<AppendEntriesResponse<NodeId>>> {
        let window = ttl / 2;
        let bytes = match wait_encoded(out, started + window).await? {
            Ok(bytes) => bytes,
            Err(e) => {
                self.network.forget_outgoing(self.target, Some(out));
                return Some(Err(self.rpc_error(TransportError::Encode(e), RPCTypes::AppendEntries)));
            }
        };
        let progress = match self.stage(out, &bytes, started, window, started + ttl * 3 / 4).await {
            Ok(progress) => progress,
            Err(e) => return Some(Err(self.rpc_error(e, RPCTypes::AppendEntries))),
        };
        // The commit hands the entry to the peer's log: give it at least half the deadline.
        if !progress.ready || started.elapsed() > window {
            return None;
        }
        let result = match postcard::to_allocvec(commit) {
            Ok(payload) => self.request(Rpc::AppendStaged, payload, remaining(started, ttl)).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Err(TransportError::Rpc(status)) if status.code() == tonic::Code::FailedPrecondition => {
                // The peer lost the entry (restart, idle drop, a newer key): stage it again.
                tracing::debug!(target_node = self.target, log_id = %out.log_id, "peer lost a staged entry");
                out.set_progress(Progress { held: 0, ready: false, ..progress });
                None
            }
            result => {
                tracing::trace!(
                    target_node = self.target,
                    log_id = %out.log_id,
                    ok = result.is_ok(),
                    elapsed = ?started.elapsed(),
                    "sent a staged entry's commit"
                );
                Some(self.settle(result, RPCTypes::AppendEntries))
            }
        }
    }

    /// The answer to openraft for a staged entry's commit.
    fn committed(
        &self,
        resp: AppendEntriesResponse<NodeId>,
        out: &Arc<Outgoing>,
        more: bool,
    ) -> AppendEntriesResponse<NodeId> {
        match resp {
            AppendEntriesResponse::Success => {
                crate::metrics::raft_staged_entry();
                self.network.forget_outgoing(self.target, Some(out));
                if more {
                    AppendEntriesResponse::PartialSuccess(Some(out.log_id))
                } else {
                    AppendEntriesResponse::Success
                }
            }
            AppendEntriesResponse::HigherVote(v) => {
                self.network.forget_outgoing(self.target, Some(out));
                AppendEntriesResponse::HigherVote(v)
            }
            other => other,
        }
    }

    /// An AppendEntries without entries: it resets the peer's election timer and checks
    /// `prev_log_id`. Its `Success` is a `PartialSuccess` that matched `prev_log_id` and no more.
    async fn heartbeat(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
        started: Instant,
        ttl: Duration,
    ) -> RaftResult<AppendEntriesResponse<NodeId>> {
        let prev = rpc.prev_log_id;
        let resp = self.exchange(Rpc::AppendEntries, RPCTypes::AppendEntries, &rpc, remaining(started, ttl)).await?;
        Ok(match resp {
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(prev),
            other => other,
        })
    }

    /// Sends chunks of `bytes` from where the peer is, starting new ones only within `window`
    /// of `started` and letting each run until `deadline`. A chunk that times out ends the round
    /// (and halves the chunk size); any other failure is returned.
    async fn stage(
        &self,
        out: &Outgoing,
        bytes: &[u8],
        started: Instant,
        window: Duration,
        deadline: Instant,
    ) -> Result<Progress, TransportError> {
        let total = bytes.len() as u64;
        let key = postcard::to_allocvec(&(out.vote, out.log_id))?;
        let mut p = out.progress();
        while !p.ready && started.elapsed() < window {
            let start = usize::try_from(p.held).unwrap_or(usize::MAX).min(bytes.len());
            // At the end this is an empty chunk that asks whether the peer has decoded the entry.
            let end = bytes.len().min(start.saturating_add(p.chunk));
            let chunk = StageChunk {
                head: Some(self.network.header(key.clone())),
                total,
                offset: start as u64,
                data: bytes[start..end].to_vec(),
            };
            let sent = Instant::now();
            match self.stage_chunk(chunk, deadline.saturating_duration_since(sent).max(MIN_CALL_TIMEOUT)).await {
                Ok(reply) => {
                    if end > start && reply.held == end as u64 {
                        crate::metrics::raft_staged_bytes((end - start) as u64);
                    }
                    p.held = reply.held.min(total);
                    p.ready = reply.ready && p.held == total;
                    if sent.elapsed() * 4 < window {
                        p.chunk = (p.chunk * 2).min(STAGE_CHUNK_MAX);
                    }
                    out.set_progress(p);
                }
                Err(TransportError::Timeout(_)) => {
                    if end > start {
                        p.chunk = (p.chunk / 2).max(STAGE_CHUNK_MIN);
                    }
                    out.set_progress(p);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(p)
    }

    async fn stage_chunk(&self, chunk: StageChunk, timeout: Duration) -> Result<StageReply, TransportError> {
        let mut client = self.grpc()?;
        let mut req = tonic::Request::new(chunk);
        req.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.stage_entry(req)).await {
            Err(_) => Err(TransportError::Timeout(timeout)),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(classify(status, timeout)),
        }
    }
}

/// What is left of `ttl` since `started`, at least [`MIN_CALL_TIMEOUT`].
fn remaining(started: Instant, ttl: Duration) -> Duration {
    ttl.saturating_sub(started.elapsed()).max(MIN_CALL_TIMEOUT)
}

/// Waits for the entry's encoding until `until`; `None` if it is not done by then.
async fn wait_encoded(out: &Outgoing, until: Instant) -> Encoded {
    let mut rx = out.encoded.clone();
    match tokio::time::timeout_at(until, rx.wait_for(Option::is_some)).await {
        Err(_) => None,
        Ok(Ok(encoded)) => encoded.clone(),
        // The encoder ended without publishing: it panicked.
        Ok(Err(_)) => Some(Err("the encoder stopped".into())),
    }
}

/// Roughly how many bytes `entry` takes encoded, without encoding it. Only APPEND carries bulk
/// (the messages and their MIME structure); every other entry is a few hundred bytes. A hint that
/// is too low for some future command only means that command is inlined, as before staging.
pub(crate) fn size_hint(entry: &Entry) -> usize {
    let bulk = match &entry.payload {
        EntryPayload::Normal(req) => match &req.command {
            Command::Append { messages, .. } => messages.iter().map(|m| m.body.len() + m.structure.len()).sum(),
            _ => 0,
        },
        EntryPayload::Blank | EntryPayload::Membership(_) => 0,
    };
    ENTRY_OVERHEAD + bulk
}

/// How many entries (given their size hints) one AppendEntries carries: at least one, then more
/// while the total stays within [`MAX_BATCH_BYTES`], and never a large entry after the first (it
/// goes first in a later call, so it is staged).
pub(crate) fn split_point(hints: &[usize]) -> usize {
    let mut total = 0usize;
    for (i, &hint) in hints.iter().enumerate() {
        if i > 0 && (hint >= LARGE_ENTRY || total.saturating_add(hint) > MAX_BATCH_BYTES) {
            return i;
        }
        total = total.saturating_add(hint);
    }
    hints.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mailraft_model::{NewMessage, Principal, Request};
    use openraft::{CommittedLeaderId, Entry as RaftEntry};

    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;

    fn append_entry(index: u64, body: usize, structure: usize) -> Entry {
        let message = NewMessage {
            body: vec![b'x'; body],
            flags: vec![],
            internal_date: None,
            tz_offset_minutes: 0,
            structure: vec![7; structure],
        };
        let who = Principal { tenant: 1, account: 2 };
        let command = Command::Append { who, mailbox: "INBOX".into(), messages: vec![message] };
        RaftEntry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload: EntryPayload::Normal(Request::new(1_700_000_000_000, command)),
        }
    }

    #[test]
    fn batches_stop_at_the_byte_bound() {
        // Small entries: as many as fit in 4 MiB.
        let hints = vec![512 * KIB; 20];
        assert_eq!(split_point(&hints), 8);
        // Everything fits: no split.
        assert_eq!(split_point(&[100, 200, 300]), 3);
        assert_eq!(split_point(&[]), 0);
        // One entry is always sent, however big.
        assert_eq!(split_point(&[50 * MIB, 100]), 1);
        // A large entry is never batched behind others: it goes first next time, to be staged.
        assert_eq!(split_point(&[100, 200, LARGE_ENTRY, 300]), 2);
        // Just below the large threshold, batched until the bound.
        assert_eq!(split_point(&[MIB - 1, MIB - 1, MIB - 1, MIB - 1, MIB - 1]), 4);
    }

    #[test]
    fn size_hint_tracks_the_encoded_size() {
        for (body, structure) in [(0, 0), (10 * KIB, 300), (3 * MIB, 20 * KIB)] {
            let entry = append_entry(7, body, structure);
            let encoded = postcard::to_allocvec(&entry).unwrap().len();
            let hint = size_hint(&entry);
            assert!(hint >= encoded && hint <= encoded + ENTRY_OVERHEAD, "hint {hint} for {encoded} encoded bytes");
        }
        let blank: Entry =
            RaftEntry { log_id: LogId::new(CommittedLeaderId::new(1, 1), 1), payload: EntryPayload::Blank };
        assert!(postcard::to_allocvec(&blank).unwrap().len() <= size_hint(&blank));
    }
}
