//! FETCH: streams message metadata, precomputed structure and bytes in bounded chunks.
//!
//! After the read-index round the stream pins one RocksDB snapshot (an owned
//! [`PinnedView`]) and produces chunks of at most [`CHUNK_MESSAGES`] messages or about
//! [`CHUNK_BYTES`], one at a time. Each chunk is first *planned* from message metadata (which
//! messages, and exactly how many bytes of bodies and structures they will carry), then its
//! bytes are reserved in the node's FETCH byte budget (`limits::ByteBudget`: node-wide and per
//! account), then it is read on the blocking pool under a read slot (`Pools::read_as`), which
//! also plans the next chunk. The producer, an async task that holds no thread and no slot while
//! it waits, hands chunks to the client through a one-chunk channel; a chunk's bytes go back to
//! the budget when the transport asks for the next one (it has taken this one) or the stream is
//! dropped. So:
//! - memory stays bounded whatever the client asked for, and whatever number of clients stall:
//!   each stream holds at most about three chunks (being produced, queued, in the transport) and
//!   one page of message metadata, and all streams together hold at most the byte budget, one
//!   tenant at most half and one account at most a quarter of it (a message larger than that is
//!   still sent, alone). A chunk's weight counts bodies, structures, flag names and a fixed
//!   overhead per message, so `FETCH 1:* FLAGS` over messages with many keywords reserves what
//!   it holds too; an account has at most `FETCH_STREAMS_PER_ACCOUNT` streams open;
//! - a client that does not read costs no blocking thread and no read slot, so a few hundred of
//!   them cannot starve other reads, let alone the Raft log and apply (own threads anyway);
//! - a client that goes away (its stream is dropped) stops the producer at once, even while it
//!   waits for bytes, a read slot or the client, and the snapshot is released;
//! - no stream keeps its snapshot (and the old versions RocksDB must keep for it) longer than
//!   `limits.read_stream_deadline_secs`, waiting for bytes included: then the producer stops and
//!   the stream ends with DEADLINE_EXCEEDED at the client's next read, dropping the chunk still
//!   queued. Until that read the queued chunk and the one in the transport stay reserved, as
//!   they still exist (inside the account's share).
//!
//! Because the whole stream reads one snapshot, a concurrent EXPUNGE cannot remove a blob
//! halfway through. `mailraft_read_streams_total{end}` counts how streams end,
//! `mailraft_read_streams_active` those producing now, `mailraft_fetch_buffered_bytes` the
//! bytes their chunks hold.
//!
//! Errors found before the first chunk (unknown mailbox, UIDVALIDITY mismatch) are returned as
//! the RPC's status; later ones end the stream with a status.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use mailraft_model::records::{Mailbox, MessageMeta};
use mailraft_model::{KvRead, ModelError, Principal, TenantId, Uid, query};
use mailraft_proto as pb;
use mailraft_store::PinnedView;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;

use crate::convert::{flag_strings, uid_set};
use crate::error::ServerError;
use crate::limits::HeldBytes;
use crate::metrics::{read_stream_ended, read_streams_active};
use crate::shared::Shared;
use crate::token::Claims;
use crate::storage_service::{RpcStream, StorageService};

/// Most messages per response chunk.
pub const CHUNK_MESSAGES: usize = 64;
/// A chunk ends once its bodies and structures reach this size (one large message can exceed
/// it; front-ends must accept responses larger than gRPC's 4 MiB default).
pub const CHUNK_BYTES: usize = 1 << 20;

/// What to attach to each message.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    structure: bool,
    body: pb::BodyWanted,
}

impl StorageService {
    /// RFC 3501 §6.4.5 (UID FETCH) with RFC 7162 §3.1.4.1 CHANGEDSINCE.
    pub(crate) async fn fetch_op(&self, req: pb::FetchRequest) -> Result<RpcStream<pb::FetchResponse>, ServerError> {
        let claims = self.shared.authorize_read(req.ctx.as_ref()).await?;
        let who = claims.principal();
        let body = pb::BodyWanted::try_from(req.body)
            .map_err(|_| ServerError::Invalid(format!("unknown body option {}", req.body)))?;
        let wanted = Wanted { structure: req.want_structure, body };

        let stream_permit = self.shared.pools.fetch_bytes.open_stream(who)?;
        let deadline = Instant::now() + self.shared.pools.limits.read_stream_deadline;
        let reader = Reader { view: self.shared.view.pin(), mailbox: None, ranges: None, after: 0, who, req, wanted };
        let mut producer = Producer {
            shared: self.shared.clone(),
            reader: Some(reader),
            plan: None,
            claims,
            first: true,
            deadline,
            _active: Active::new(),
        };
        // The first chunk is read before answering, so that errors found by then (unknown
        // mailbox, UIDVALIDITY) become the RPC's status.
        let first = match producer.next_chunk().await {
            Ok(Some(first)) => first,
            Ok(None) => {
                read_stream_ended("complete");
                return Ok(Box::pin(futures::stream::empty()));
            }
            Err(e) => {
                read_stream_ended(if matches!(e, ServerError::DeadlineExceeded(_)) { "deadline" } else { "error" });
                return Err(e);
            }
        };
        let (tx, mut rx) = mpsc::channel::<Vec<pb::FetchedMessage>>(1);
        let (end_tx, end_rx) = oneshot::channel::<ServerError>();
        // The bytes of the chunks sent to the channel and not yet taken by the transport, in
        // order. They stay reserved as long as the chunks exist: a client that reads a little
        // now and then keeps its last chunks (and their reservation, inside its account's share)
        // until its next read, which then ends the stream if the deadline has passed. Giving the
        // bytes back while the chunks still exist would let the account reserve its share again
        // and hold more than it.
        let ledger: Ledger = Arc::default();
        tokio::spawn(producer.run(first, tx, end_tx, ledger.clone()));
        let limit = self.shared.pools.limits.read_stream_deadline;
        // The chunks, then the error that ended the stream early, if any.
        let chunks = async_stream::stream! {
            let _permit = stream_permit;
            let mut cut = false;
            loop {
                let next = tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(deadline) => {
                        cut = true;
                        None
                    }
                    next = rx.recv() => next,
                };
                let Some(messages) = next else { break };
                yield Ok::<_, Status>(pb::FetchResponse { messages });
                // Resumed: the transport took the chunk and asks for the next, so its bytes are
                // no longer ours to count. (Dropping the stream drops them too.)
                drop(lock(&ledger).pop_front());
            }
            drop(rx);
            lock(&ledger).clear();
            if cut {
                // Even if the producer had finished: what was queued was not sent, so the
                // client must not take the stream for complete.
                yield Err(Status::from(expired(limit)));
            } else if let Ok(e) = end_rx.await {
                yield Err(Status::from(e));
            }
        };
        Ok(Box::pin(chunks))
    }
}

/// The error of a stream cut at its deadline (`limit` after it started).
fn expired(limit: std::time::Duration) -> ServerError {
    ServerError::DeadlineExceeded(format!("fetch stream outlived its {} s deadline", limit.as_secs()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reservations of a stream's chunks between the producer and the transport, oldest first.
type Ledger = Arc<Mutex<VecDeque<HeldBytes>>>;

/// One chunk ready to send, and its bytes in the node's FETCH budget.
struct Chunk {
    messages: Vec<pb::FetchedMessage>,
    held: HeldBytes,
}

/// The messages of the next chunk, before their bytes are read.
#[derive(Default)]
struct Plan {
    messages: Vec<Planned>,
    /// Bytes of bodies and structures the chunk will carry.
    bytes: usize,
    /// Bytes held only while the chunk is read: for BODY[HEADER], the whole body of the largest
    /// message, read and cut to its header one message at a time.
    transient: usize,
}

/// One message of a [`Plan`].
struct Planned {
    meta: MessageMeta,
    /// For BODY[HEADER]: the header's length, from the stored structure.
    header_len: Option<usize>,
}

/// What one message costs in a chunk besides its bytes and flags: the fixed fields and the
/// vectors' bookkeeping, rounded up. Counting it (and the flags) means even `FETCH 1:* FLAGS`
/// reserves what it holds: a message's flags alone may be 33 KiB of keywords.
const MESSAGE_OVERHEAD: usize = 128;

/// What one flag costs in a chunk besides its name: a `String` in a `Vec`.
const FLAG_OVERHEAD: usize = 24;

/// Bytes of flag names of these lengths as a chunk carries them.
fn flag_bytes(lengths: impl Iterator<Item = usize>) -> usize {
    lengths.fold(0usize, |n, len| n.saturating_add(len).saturating_add(FLAG_OVERHEAD))
}

/// Bodies, structures, flags and per-message overhead of a chunk: what the budget counts.
fn weight(messages: &[pb::FetchedMessage]) -> usize {
    messages.iter().fold(0usize, |n, m| {
        let flags = flag_bytes(m.flags.iter().map(String::len));
        n.saturating_add(m.body.len()).saturating_add(m.structure.len()).saturating_add(flags).saturating_add(MESSAGE_OVERHEAD)
    })
}

/// How a stream ended, for `mailraft_read_streams_total{end}`.
enum End {
    Complete,
    ClientGone,
    Deadline,
    Failed(ServerError),
}

/// Feeds one stream: plans chunks, reserves their bytes, reads them under read slots and waits
/// for the client between them.
struct Producer {
    shared: Arc<Shared>,
    /// The snapshot and position; `None` only while a read runs on the blocking pool.
    reader: Option<Reader>,
    /// The next chunk, planned by the previous read (`None` before the first).
    plan: Option<Plan>,
    /// Whose stream this is: checked again before every chunk after the first, so a password
    /// change or a disabled account also ends a FETCH that is still running.
    claims: Claims,
    first: bool,
    /// When the stream must end, snapshot released, whatever the client does.
    deadline: Instant,
    _active: Active,
}

/// Counts a stream in `mailraft_read_streams_active` while it exists.
struct Active;

impl Active {
    fn new() -> Self {
        read_streams_active(1.0);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        read_streams_active(-1.0);
    }
}

impl Producer {
    /// The next chunk (`None` at the end) with its bytes reserved, within the deadline.
    async fn next_chunk(&mut self) -> Result<Option<Chunk>, ServerError> {
        if !std::mem::take(&mut self.first) {
            self.shared.check_account(&self.claims)?;
        }
        let deadline = self.deadline;
        tokio::time::timeout_at(deadline, self.produce()).await.map_err(|_| self.expired())?
    }

    async fn produce(&mut self) -> Result<Option<Chunk>, ServerError> {
        let plan = match self.plan.take() {
            Some(plan) => plan,
            None => self.blocking(Reader::plan).await?,
        };
        if plan.messages.is_empty() {
            return Ok(None);
        }
        // Before the bytes are read: a stream waiting here holds only its plan and snapshot.
        let mut held = self.shared.pools.fetch_bytes.reserve(self.claims.principal(), plan.bytes.saturating_add(plan.transient)).await?;
        let (messages, next) = self.blocking(move |reader| reader.load(plan)).await?;
        self.plan = Some(next);
        held.shrink_to(weight(&messages));
        Ok(Some(Chunk { messages, held }))
    }

    /// Runs `f` on the reader on the blocking pool under a read slot of this account.
    async fn blocking<T, F>(&mut self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Reader) -> Result<T, ServerError> + Send + 'static,
    {
        let mut reader = self.reader.take().ok_or_else(|| ServerError::internal("fetch reader lost"))?;
        let (reader, out) = self
            .shared
            .pools
            .read_as(self.claims.principal(), move || {
                let out = f(&mut reader);
                (reader, out)
            })
            .await?;
        self.reader = Some(reader);
        out
    }

    fn expired(&self) -> ServerError {
        expired(self.shared.pools.limits.read_stream_deadline)
    }

    /// Sends `first` and every following chunk until the end, the client leaves, an error or
    /// the deadline; an early end is reported through `end`.
    async fn run(mut self, first: Chunk, tx: mpsc::Sender<Vec<pb::FetchedMessage>>, end: oneshot::Sender<ServerError>, ledger: Ledger) {
        let mut next = Some(first);
        let ended = loop {
            let Some(Chunk { messages, held }) = next.take() else { break End::Complete };
            // In the ledger before it can be taken: the stream pops one entry per chunk taken.
            lock(&ledger).push_back(held);
            tokio::select! {
                sent = tx.send(messages) => {
                    if sent.is_err() {
                        break End::ClientGone;
                    }
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    // Not sent: the chunk is gone, and so is its reservation (the last entry).
                    drop(lock(&ledger).pop_back());
                    break End::Deadline;
                }
            }
            tokio::select! {
                chunk = self.next_chunk() => match chunk {
                    Ok(chunk) => next = chunk,
                    Err(ServerError::DeadlineExceeded(_)) => break End::Deadline,
                    Err(e) => break End::Failed(e),
                },
                _ = tx.closed() => break End::ClientGone,
            }
        };
        // The snapshot goes before anything else, whatever the client does next.
        self.reader = None;
        self.plan = None;
        match ended {
            End::Complete => read_stream_ended("complete"),
            End::ClientGone => read_stream_ended("client_gone"),
            End::Deadline => {
                read_stream_ended("deadline");
                tracing::info!("fetch stream cut at its deadline; the client was not reading");
                // The receiver may be gone already; then nobody needs the error.
                let _ = end.send(self.expired());
            }
            End::Failed(e) => {
                read_stream_ended("error");
                let _ = end.send(e);
            }
        }
    }
}

/// The blocking half of a stream: its snapshot and position. Moves to the blocking pool for
/// each read and back.
struct Reader {
    view: PinnedView,
    /// The mailbox, resolved (and its UIDVALIDITY checked) by the first plan.
    mailbox: Option<Mailbox>,
    /// The requested UID set, normalized once.
    ranges: Option<Vec<(Uid, Uid)>>,
    /// UID of the last message planned: each plan lists the next page after it, so the stream
    /// holds one page of message metadata, not the whole mailbox's.
    after: Uid,
    who: Principal,
    req: pb::FetchRequest,
    wanted: Wanted,
}

impl Reader {
    /// Plans the next chunk on the pinned snapshot; an empty plan when every message was sent
    /// (blocking).
    fn plan(&mut self) -> Result<Plan, ServerError> {
        let Reader { view, mailbox, ranges, after, who, req, wanted } = self;
        let ranges = ranges.get_or_insert_with(|| uid_set(req.uids.as_ref()).normalized());
        view.read(|kv| plan(kv, *who, req, *wanted, mailbox, ranges, after))?
    }

    /// Reads the messages of `plan`, and plans the chunk after them in the same read (blocking).
    fn load(&mut self, plan: Plan) -> Result<(Vec<pb::FetchedMessage>, Plan), ServerError> {
        let (tenant, wanted) = (self.who.tenant, self.wanted);
        let messages = self.view.read(|kv| {
            plan.messages.into_iter().map(|p| fetched(kv, tenant, p, wanted)).collect::<Result<Vec<_>, _>>()
        })??;
        Ok((messages, self.plan()?))
    }
}

/// Plans up to one chunk of the messages after `after`, advancing it.
fn plan(
    kv: &dyn KvRead,
    who: Principal,
    req: &pb::FetchRequest,
    wanted: Wanted,
    mailbox: &mut Option<Mailbox>,
    ranges: &[(Uid, Uid)],
    after: &mut Uid,
) -> Result<Plan, ServerError> {
    let mailbox = match mailbox {
        Some(m) => m,
        None => mailbox.insert(query::mailbox_by_id(kv, who, req.mailbox_id, req.uidvalidity)?),
    };
    let page = query::messages_page(kv, who, mailbox, ranges, req.changed_since, *after, CHUNK_MESSAGES)?;
    let mut plan = Plan::default();
    for meta in page {
        let (bytes, header_len) = weigh(kv, who.tenant, &meta, wanted)?;
        let transient = if wanted.body == pb::BodyWanted::BodyHeader { usize::try_from(meta.size).unwrap_or(usize::MAX) } else { 0 };
        // A message that would take the chunk past CHUNK_BYTES starts the next one instead, so
        // a chunk is larger than CHUNK_BYTES only when one message alone is.
        if !plan.messages.is_empty() && plan.bytes.saturating_add(bytes) > CHUNK_BYTES {
            break;
        }
        *after = meta.uid;
        plan.bytes = plan.bytes.saturating_add(bytes);
        plan.transient = plan.transient.max(transient);
        plan.messages.push(Planned { meta, header_len });
        if plan.bytes >= CHUNK_BYTES {
            break;
        }
    }
    Ok(plan)
}

/// What one message will add to its chunk (the same sum [`weight`] makes of the loaded
/// message), and the header length BODY[HEADER] cuts at. The
/// structure record is read here only to be measured and read again with the body, so that a
/// stream waiting for its bytes holds nothing of the message.
fn weigh(kv: &dyn KvRead, tenant: TenantId, m: &MessageMeta, wanted: Wanted) -> Result<(usize, Option<usize>), ServerError> {
    let size = usize::try_from(m.size).unwrap_or(usize::MAX);
    let need_meta = wanted.structure || wanted.body == pb::BodyWanted::BodyHeader;
    let blob_meta = if need_meta { Some(query::blob_meta(kv, tenant, &m.blob).ok_or_else(|| missing(m.uid))?) } else { None };
    let structure = match (&blob_meta, wanted.structure) {
        (Some(b), true) => b.structure.len(),
        _ => 0,
    };
    let (body, header_len) = match wanted.body {
        pb::BodyWanted::BodyNone => (0, None),
        pb::BodyWanted::BodyFull => (size, None),
        pb::BodyWanted::BodyHeader => {
            let stored = blob_meta.as_ref().and_then(|b| mailraft_mime::MessageInfo::from_bytes(&b.structure).ok());
            // Without a readable structure the header is found when the bytes are read; until
            // then the whole message is what it may weigh.
            match stored.map(|i| usize::try_from(i.header_len).unwrap_or(usize::MAX).min(size)) {
                Some(len) => (len, Some(len)),
                None => (size, None),
            }
        }
    };
    let fixed = flag_bytes(m.flags.iter().map(|f| f.as_imap().len())).saturating_add(MESSAGE_OVERHEAD);
    Ok((body.saturating_add(structure).saturating_add(fixed), header_len))
}

fn missing(uid: Uid) -> ServerError {
    ServerError::Model(ModelError::Corrupt(format!("blob of message {uid} missing")))
}

/// One message with what the request asked for.
fn fetched(kv: &dyn KvRead, tenant: TenantId, p: Planned, wanted: Wanted) -> Result<pb::FetchedMessage, ServerError> {
    let Planned { meta: m, header_len } = p;
    let body = match wanted.body {
        pb::BodyWanted::BodyNone => Vec::new(),
        pb::BodyWanted::BodyFull => query::blob(kv, tenant, &m.blob).ok_or_else(|| missing(m.uid))?,
        pb::BodyWanted::BodyHeader => {
            let mut raw = query::blob(kv, tenant, &m.blob).ok_or_else(|| missing(m.uid))?;
            // A structure in an unknown format (no `header_len` planned) is recomputed rather
            // than trusted.
            let header_len = header_len.unwrap_or_else(|| {
                usize::try_from(mailraft_mime::analyze(&raw).header_len).unwrap_or(usize::MAX)
            });
            raw.truncate(header_len);
            // Give back the rest of the body now: the chunk keeps only headers (its reservation
            // counted the whole body of one message, the one being read).
            raw.shrink_to_fit();
            raw
        }
    };
    let structure = if wanted.structure {
        query::blob_meta(kv, tenant, &m.blob).ok_or_else(|| missing(m.uid))?.structure
    } else {
        Vec::new()
    };
    Ok(pb::FetchedMessage {
        uid: m.uid,
        flags: flag_strings(&m.flags),
        modseq: m.modseq,
        internal_date: m.internal_date,
        tz_offset_minutes: m.tz_offset_minutes,
        size: m.size,
        structure,
        body,
        save_date: m.save_date,
    })
}
