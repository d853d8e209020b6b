//! FETCH: streams message metadata, precomputed structure and bytes in bounded chunks.
//!
//! After the read-index round, one blocking task pins a RocksDB snapshot and walks the
//! requested messages, sending chunks of at most [`CHUNK_MESSAGES`] messages or about
//! [`CHUNK_BYTES`] through a small bounded channel: memory stays bounded whatever the client
//! asked for, a slow reader slows the producer down instead of buffering, and a client that
//! goes away stops it at the next chunk. Because the whole stream reads one snapshot, a
//! concurrent EXPUNGE cannot remove a blob halfway through.
//!
//! Errors found before the first chunk (unknown mailbox, UIDVALIDITY mismatch) are returned as
//! the RPC's status; later ones end the stream with a status.

use futures::StreamExt;
use mailraft_model::records::MessageMeta;
use mailraft_model::{KvRead, ModelError, Principal, TenantId, query};
use mailraft_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::convert::{flag_strings, uid_set};
use crate::error::ServerError;
use crate::storage_service::{RpcStream, StorageService};

/// Most messages per response chunk.
pub const CHUNK_MESSAGES: usize = 64;
/// A chunk is sent once its bodies and structures reach this size (one large message can
/// exceed it; front-ends must accept responses larger than gRPC's 4 MiB default).
pub const CHUNK_BYTES: usize = 4 << 20;

type Chunk = Result<pb::FetchResponse, ServerError>;

/// What to attach to each message.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    structure: bool,
    body: pb::BodyWanted,
}

impl StorageService {
    /// RFC 3501 §6.4.5 (UID FETCH) with RFC 7162 §3.1.4.1 CHANGEDSINCE.
    pub(crate) async fn fetch_op(&self, req: pb::FetchRequest) -> Result<RpcStream<pb::FetchResponse>, ServerError> {
        let who = self.shared.authorize(req.ctx.as_ref())?.principal();
        let body = pb::BodyWanted::try_from(req.body)
            .map_err(|_| ServerError::Invalid(format!("unknown body option {}", req.body)))?;
        let wanted = Wanted { structure: req.want_structure, body };
        self.shared.linearize().await?;

        let (tx, mut rx) = mpsc::channel::<Chunk>(2);
        let view = self.shared.view.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = view.read(|kv| produce(kv, who, &req, wanted, &tx));
            let err = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(e) => ServerError::from(e),
            };
            // The receiver may be gone already; then nobody needs the error.
            let _ = tx.blocking_send(Err(err));
        });

        match rx.recv().await {
            None => Ok(Box::pin(futures::stream::empty())),
            Some(Err(e)) => Err(e),
            Some(Ok(first)) => {
                let rest = ReceiverStream::new(rx).map(|chunk| chunk.map_err(Status::from));
                Ok(Box::pin(futures::stream::once(async move { Ok(first) }).chain(rest)))
            }
        }
    }
}

/// Walks the messages on one snapshot and sends chunks; returns early when the client left.
fn produce(
    kv: &dyn KvRead,
    who: Principal,
    req: &pb::FetchRequest,
    wanted: Wanted,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), ServerError> {
    let mailbox = query::mailbox_by_id(kv, who, req.mailbox_id, req.uidvalidity)?;
    let metas = query::messages(kv, who, &mailbox, &uid_set(req.uids.as_ref()), req.changed_since)?;
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    for meta in metas {
        let m = fetched(kv, who.tenant, meta, wanted)?;
        bytes = bytes.saturating_add(m.body.len() + m.structure.len());
        chunk.push(m);
        if chunk.len() >= CHUNK_MESSAGES || bytes >= CHUNK_BYTES {
            let messages = std::mem::take(&mut chunk);
            bytes = 0;
            if tx.blocking_send(Ok(pb::FetchResponse { messages })).is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        // An error means the client left; nothing else to do.
        let _ = tx.blocking_send(Ok(pb::FetchResponse { messages: chunk }));
    }
    Ok(())
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
