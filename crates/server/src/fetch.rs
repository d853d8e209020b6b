//! FETCH: streams message metadata, precomputed structure and bytes in bounded chunks.
//!
//! After the read-index round the stream pins one RocksDB snapshot (an owned
//! [`PinnedView`]) and produces chunks of at most [`CHUNK_MESSAGES`] messages or about
//! [`CHUNK_BYTES`], one at a time: each chunk is read on the blocking pool under a read slot
//! (`Pools::read`), then the producer, an async task that holds no thread and no slot while it
//! waits, hands it to the client through a one-chunk channel. So:
//! - memory stays bounded whatever the client asked for (one chunk queued, one being sent, and
//!   one page of message metadata: each chunk lists the messages after the last UID sent);
//! - a client that does not read costs no blocking thread and no read slot, so a few hundred of
//!   them cannot starve other reads, let alone the Raft log and apply (own threads anyway);
//! - a client that goes away (its stream is dropped) stops the producer at once, even while it
//!   waits for a read slot or for the client, and the snapshot is released;
//! - no stream keeps its snapshot (and the old versions RocksDB must keep for it) longer than
//!   `limits.read_stream_deadline_secs`: then it ends with DEADLINE_EXCEEDED after the chunks
//!   already queued.
//! Because the whole stream reads one snapshot, a concurrent EXPUNGE cannot remove a blob
//! halfway through. `mailraft_read_streams_total{end}` counts how streams end,
//! `mailraft_read_streams_active` those producing now.
//!
//! Errors found before the first chunk (unknown mailbox, UIDVALIDITY mismatch) are returned as
//! the RPC's status; later ones end the stream with a status.

use std::sync::Arc;

use futures::StreamExt;
use mailraft_model::records::{Mailbox, MessageMeta};
use mailraft_model::{KvRead, ModelError, Principal, TenantId, Uid, query};
use mailraft_proto as pb;
use mailraft_store::PinnedView;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::convert::{flag_strings, uid_set};
use crate::error::ServerError;
use crate::metrics::{read_stream_ended, read_streams_active};
use crate::shared::Shared;
use crate::token::Claims;
use crate::storage_service::{RpcStream, StorageService};

/// Most messages per response chunk.
pub const CHUNK_MESSAGES: usize = 64;
/// A chunk is sent once its bodies and structures reach this size (one large message can
/// exceed it; front-ends must accept responses larger than gRPC's 4 MiB default). Small enough
/// that a stalled stream holds little: about three chunks between snapshot and socket.
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

        let deadline = Instant::now() + self.shared.pools.limits.read_stream_deadline;
        let reader = Reader { view: self.shared.view.pin(), mailbox: None, ranges: None, after: 0, who, req, wanted };
        let mut producer = Producer {
            shared: self.shared.clone(),
            reader: Some(reader),
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
        let (tx, rx) = mpsc::channel::<pb::FetchResponse>(1);
        let (end_tx, end_rx) = oneshot::channel::<ServerError>();
        tokio::spawn(producer.run(first, tx, end_tx));
        // The chunks, then the error that ended the stream early, if any.
        let end = futures::stream::once(end_rx).filter_map(|end| async move { end.ok().map(|e| Err(Status::from(e))) });
        Ok(Box::pin(ReceiverStream::new(rx).map(Ok).chain(end)))
    }
}

/// How a stream ended, for `mailraft_read_streams_total{end}`.
enum End {
    Complete,
    ClientGone,
    Deadline,
    Failed(ServerError),
}

/// Feeds one stream: reads chunks under read slots and waits for the client between them.
struct Producer {
    shared: Arc<Shared>,
    /// The snapshot and position; `None` only while a chunk is being read on the blocking pool.
    reader: Option<Reader>,
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
    /// Reads the next chunk (`None` at the end) under a read slot, within the deadline.
    async fn next_chunk(&mut self) -> Result<Option<Vec<pb::FetchedMessage>>, ServerError> {
        if !std::mem::take(&mut self.first) {
            self.shared.check_account(&self.claims)?;
        }
        let mut reader = self.reader.take().ok_or_else(|| ServerError::internal("fetch reader lost"))?;
        let read = self.shared.pools.read_as(self.claims.principal(), move || {
            let chunk = reader.chunk();
            (reader, chunk)
        });
        let (reader, chunk) = tokio::time::timeout_at(self.deadline, read).await.map_err(|_| self.expired())??;
        self.reader = Some(reader);
        chunk
    }

    fn expired(&self) -> ServerError {
        let secs = self.shared.pools.limits.read_stream_deadline.as_secs();
        ServerError::DeadlineExceeded(format!("fetch stream outlived its {secs} s deadline"))
    }

    /// Sends `first` and every following chunk until the end, the client leaves, an error or
    /// the deadline; an early end is reported through `end`.
    async fn run(mut self, first: Vec<pb::FetchedMessage>, tx: mpsc::Sender<pb::FetchResponse>, end: oneshot::Sender<ServerError>) {
        let mut next = Some(first);
        let ended = loop {
            let Some(messages) = next.take() else { break End::Complete };
            tokio::select! {
                sent = tx.send(pb::FetchResponse { messages }) => {
                    if sent.is_err() {
                        break End::ClientGone;
                    }
                }
                _ = tokio::time::sleep_until(self.deadline) => break End::Deadline,
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
/// each chunk and back.
struct Reader {
    view: PinnedView,
    /// The mailbox, resolved (and its UIDVALIDITY checked) by the first chunk's read.
    mailbox: Option<Mailbox>,
    /// The requested UID set, normalized once.
    ranges: Option<Vec<(Uid, Uid)>>,
    /// UID of the last message sent: each chunk lists the next page after it, so the stream
    /// holds one page of message metadata, not the whole mailbox's.
    after: Uid,
    who: Principal,
    req: pb::FetchRequest,
    wanted: Wanted,
}

impl Reader {
    /// The next chunk on the pinned snapshot, `None` when every message was sent (blocking).
    fn chunk(&mut self) -> Result<Option<Vec<pb::FetchedMessage>>, ServerError> {
        let Reader { view, mailbox, ranges, after, who, req, wanted } = self;
        let ranges = ranges.get_or_insert_with(|| uid_set(req.uids.as_ref()).normalized());
        view.read(|kv| chunk(kv, *who, req, *wanted, mailbox, ranges, after))?
    }
}

/// Collects up to one chunk of the messages after `after`, advancing it.
fn chunk(
    kv: &dyn KvRead,
    who: Principal,
    req: &pb::FetchRequest,
    wanted: Wanted,
    mailbox: &mut Option<Mailbox>,
    ranges: &[(Uid, Uid)],
    after: &mut Uid,
) -> Result<Option<Vec<pb::FetchedMessage>>, ServerError> {
    let mailbox = match mailbox {
        Some(m) => m,
        None => mailbox.insert(query::mailbox_by_id(kv, who, req.mailbox_id, req.uidvalidity)?),
    };
    let page = query::messages_page(kv, who, mailbox, ranges, req.changed_since, *after, CHUNK_MESSAGES)?;
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    for meta in page {
        *after = meta.uid;
        let m = fetched(kv, who.tenant, meta, wanted)?;
        bytes = bytes.saturating_add(m.body.len() + m.structure.len());
        chunk.push(m);
        if bytes >= CHUNK_BYTES {
            break;
        }
    }
    Ok((!chunk.is_empty()).then_some(chunk))
}

/// One message with what the request asked for.
fn fetched(kv: &dyn KvRead, tenant: TenantId, m: MessageMeta, wanted: Wanted) -> Result<pb::FetchedMessage, ServerError> {
    let corrupt = || ServerError::Model(ModelError::Corrupt(format!("blob of message {} missing", m.uid)));
    let need_meta = wanted.structure || wanted.body == pb::BodyWanted::BodyHeader;
    let blob_meta = if need_meta { Some(query::blob_meta(kv, tenant, &m.blob).ok_or_else(corrupt)?) } else { None };
    let body = match wanted.body {
        pb::BodyWanted::BodyNone => Vec::new(),
        pb::BodyWanted::BodyFull => query::blob(kv, tenant, &m.blob).ok_or_else(corrupt)?,
        pb::BodyWanted::BodyHeader => {
            let mut raw = query::blob(kv, tenant, &m.blob).ok_or_else(corrupt)?;
            let stored = blob_meta.as_ref().and_then(|b| mailraft_mime::MessageInfo::from_bytes(&b.structure).ok());
            // A structure in an unknown format is recomputed rather than trusted.
            let header_len = stored.map_or_else(|| mailraft_mime::analyze(&raw).header_len, |i| i.header_len);
            raw.truncate(usize::try_from(header_len).unwrap_or(usize::MAX));
            raw
        }
    };
    let structure = match (wanted.structure, blob_meta) {
        (true, Some(b)) => b.structure,
        _ => Vec::new(),
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
