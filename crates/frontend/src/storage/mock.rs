//! A scriptable in-process `Storage` gRPC server for the unit tests of the router, the watch hub
//! and the IDLE loop.
//!
//! Every call is recorded (operation, request id, requested heartbeat) and then takes the next
//! [`Step`] of the script: answer, fail with a status, or hang without ever answering (a node
//! that vanished without closing its connections). An empty script answers. Answers are just
//! enough for the front-end paths under test: one mailbox (id 10, UIDVALIDITY 1) whose messages
//! are [`Mock::uids`], each with MODSEQ = UID and the flags of [`Mock::flags`]. STORE and EXPUNGE
//! act on them; both refuse calls over [`Mock::write_limit`] messages with `LIMIT` marked splittable (`mailraft-split`), as the
//! storage refuses a command whose records exceed its byte bound, and STORE refuses new keywords
//! past [`Mock::keyword_cap`] with `LIMIT`, as the storage does at a mailbox's keyword cap.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use mailraft_proto as proto;
use mailraft_proto::storage_server::{Storage, StorageServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::status::{CODE_KEY, LEADER_KEY, SPLIT_KEY};

/// What the next call does.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Answer,
    Fail(Status),
    /// Never answers (the caller's timeout has to notice).
    Hang,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub op: &'static str,
    pub request_id: Vec<u8>,
    pub heartbeat_ms: u32,
    /// The session token the call carried.
    pub token: Vec<u8>,
}

/// The server's behaviour and what it saw.
#[derive(Debug, Default)]
pub(crate) struct Mock {
    script: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<Call>>,
    /// UIDs in the one mailbox; Changes reports those above `since_modseq`.
    pub uids: Mutex<Vec<u32>>,
    /// This many Changes calls fail with INTERNAL (an answer: the router does not retry it, so
    /// one failure is one failed poll).
    pub changes_failures: AtomicUsize,
    /// Changes answers "resync" (the change log does not reach back far enough).
    pub resync: AtomicBool,
    /// This many FETCH streams break after their first chunk; later ones end cleanly.
    pub broken_fetches: AtomicUsize,
    /// Watch streams send this many heartbeats and then go silent; `None`: heartbeats forever.
    pub watch_silent_after: Mutex<Option<usize>>,
    /// Token lifetime announced by Authenticate and RefreshToken (0: none).
    pub ttl_ms: std::sync::atomic::AtomicU64,
    /// RefreshToken (and Changes) refuse the token with AUTHFAILED, as for a revoked session.
    pub revoked: AtomicBool,
    /// Flags of each message (none when absent), as FETCH returns them and STORE changes them.
    pub flags: Mutex<HashMap<u32, Vec<String>>>,
    /// Messages per FETCH chunk of a request that names UIDs; 0: all in one chunk.
    pub fetch_chunk: AtomicUsize,
    /// A FETCH stream stops after this many chunks until [`Mock::fetch_resume`] is notified
    /// (once), so a test can look at what the client got while the stream is still open.
    pub fetch_pause_after: Mutex<Option<usize>>,
    /// Lets a paused FETCH stream go on.
    pub fetch_resume: Arc<tokio::sync::Notify>,
    /// Chunks the FETCH streams have produced so far.
    pub fetch_chunks_sent: Arc<AtomicUsize>,
    /// STORE and EXPUNGE calls naming more messages than this fail with `LIMIT` marked splittable (gRPC
    /// RESOURCE_EXHAUSTED) and change nothing; `None`: no limit.
    pub write_limit: Mutex<Option<usize>>,
    /// A STORE that would leave the mailbox with more distinct keywords than this fails with
    /// `LIMIT` and changes nothing, whatever its size; `None`: no cap.
    pub keyword_cap: Mutex<Option<usize>>,
    /// STORE calls from this index on (0: the first) wait for [`Mock::store_resume`] after they
    /// were recorded and before they act, so a test can look at what the client got meanwhile.
    /// A retry of a paused call (its attempt timed out) waits too.
    pub store_pause_at: Mutex<Option<usize>>,
    /// Lets paused STORE calls go on, and later ones not pause.
    pub store_resume: tokio_util::sync::CancellationToken,
    /// Every Changes call, once answered, adds this many messages behind the session's back (a
    /// mailbox that keeps growing).
    pub grow_on_changes: AtomicUsize,
    /// Every UID a successful STORE changed, in call order (a UID twice: stored twice).
    pub stored: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Mock {
    /// A mock whose calls take `steps` in order, then answer.
    pub fn scripted(steps: impl IntoIterator<Item = Step>) -> Self {
        Self { script: Mutex::new(steps.into_iter().collect()), ..Self::default() }
    }

    /// Every call `op` received, in order.
    pub fn calls(&self, op: &str) -> Vec<Call> {
        lock(&self.calls).iter().filter(|c| c.op == op).cloned().collect()
    }

    /// A splittable `LIMIT` for a write naming more than [`Mock::write_limit`] messages.
    fn check_write_limit(&self, messages: usize) -> Result<(), Status> {
        match *lock(&self.write_limit) {
            Some(limit) if messages > limit => {
                let mut status = Status::resource_exhausted(format!("at most {limit} messages per call"));
                status.metadata_mut().insert(CODE_KEY, tonic::metadata::MetadataValue::from_static("LIMIT"));
                status.metadata_mut().insert(SPLIT_KEY, tonic::metadata::MetadataValue::from_static("1"));
                Err(status)
            }
            _ => Ok(()),
        }
    }

    /// A final `LIMIT` for a STORE that would bring the mailbox's keywords past [`Mock::keyword_cap`].
    fn check_keyword_cap(&self, request: &proto::StoreRequest) -> Result<(), Status> {
        let Some(cap) = *lock(&self.keyword_cap) else { return Ok(()) };
        let flags = lock(&self.flags);
        let mut keywords: Vec<&String> =
            flags.values().flatten().chain(&request.flags).filter(|f| !f.starts_with('\\')).collect();
        keywords.sort_unstable();
        keywords.dedup();
        if keywords.len() <= cap {
            return Ok(());
        }
        // Final, as a storage node at feature level 2 marks it.
        let mut status = coded("LIMIT", None);
        status.metadata_mut().insert(SPLIT_KEY, tonic::metadata::MetadataValue::from_static("0"));
        Err(status)
    }

    async fn step(&self, op: &'static str, ctx: Option<&proto::Context>, heartbeat_ms: u32) -> Result<(), Status> {
        let request_id = ctx.map(|c| c.request_id.clone()).unwrap_or_default();
        let token = ctx.map(|c| c.token.clone()).unwrap_or_default();
        lock(&self.calls).push(Call { op, request_id, heartbeat_ms, token });
        let step = lock(&self.script).pop_front().unwrap_or(Step::Answer);
        match step {
            Step::Answer => Ok(()),
            Step::Fail(status) => Err(status),
            Step::Hang => std::future::pending().await,
        }
    }
}

/// Decrements `counter` if it is positive; says whether it did.
fn take_one(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// The mailbox's messages inside `set`, ascending.
fn members(uids: &[u32], set: &proto::UidSet) -> Vec<u32> {
    uids.iter().copied().filter(|u| set.ranges.iter().any(|r| r.start <= *u && *u <= r.end)).collect()
}

/// A status as our storage service sends it: `mailraft-code` and, for NOT_LEADER, the hint.
pub(crate) fn coded(code: &str, leader: Option<&str>) -> Status {
    let mut status = Status::unavailable(code.to_lowercase());
    if let Ok(value) = code.parse() {
        status.metadata_mut().insert(CODE_KEY, value);
    }
    if let Some(Ok(value)) = leader.map(str::parse) {
        status.metadata_mut().insert(LEADER_KEY, value);
    }
    status
}

/// A running mock; the server task is aborted on drop.
pub(crate) struct Server {
    pub addr: String,
    pub mock: Arc<Mock>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `mock` on a loopback port.
pub(crate) async fn serve(mock: Mock) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let mock = Arc::new(mock);
    let service = StorageServer::from_arc(mock.clone());
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    Server { addr, mock, task }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the mock"))
}

#[tonic::async_trait]
impl Storage for Mock {
    type FetchStream = BoxStream<proto::FetchResponse>;
    type WatchStream = BoxStream<proto::WatchEvent>;

    async fn authenticate(
        &self,
        request: Request<proto::AuthenticateRequest>,
    ) -> Result<Response<proto::AuthenticateResponse>, Status> {
        let request = request.into_inner();
        self.step("authenticate", request.ctx.as_ref(), 0).await?;
        Ok(Response::new(proto::AuthenticateResponse {
            token: b"token".to_vec(),
            tenant_id: 1,
            account_id: 2,
            login: request.login,
            ttl_ms: self.ttl_ms.load(Ordering::SeqCst),
        }))
    }

    async fn check_recipient(
        &self,
        _request: Request<proto::CheckRecipientRequest>,
    ) -> Result<Response<proto::CheckRecipientResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn deliver(&self, _request: Request<proto::DeliverRequest>) -> Result<Response<proto::DeliverResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn refresh_token(
        &self,
        request: Request<proto::RefreshTokenRequest>,
    ) -> Result<Response<proto::RefreshTokenResponse>, Status> {
        self.step("refresh_token", request.get_ref().ctx.as_ref(), 0).await?;
        if self.revoked.load(Ordering::SeqCst) {
            return Err(coded("AUTHFAILED", None));
        }
        let n = self.calls("refresh_token").len();
        Ok(Response::new(proto::RefreshTokenResponse {
            token: format!("token-{n}").into_bytes(),
            ttl_ms: self.ttl_ms.load(Ordering::SeqCst),
        }))
    }

    async fn list_mailboxes(
        &self,
        _: Request<proto::ListMailboxesRequest>,
    ) -> Result<Response<proto::ListMailboxesResponse>, Status> {
        unimplemented()
    }

    async fn create_mailbox(
        &self,
        request: Request<proto::CreateMailboxRequest>,
    ) -> Result<Response<proto::CreateMailboxResponse>, Status> {
        self.step("create_mailbox", request.get_ref().ctx.as_ref(), 0).await?;
        Ok(Response::new(proto::CreateMailboxResponse::default()))
    }

    async fn delete_mailbox(
        &self,
        _: Request<proto::DeleteMailboxRequest>,
    ) -> Result<Response<proto::DeleteMailboxResponse>, Status> {
        unimplemented()
    }

    async fn rename_mailbox(
        &self,
        _: Request<proto::RenameMailboxRequest>,
    ) -> Result<Response<proto::RenameMailboxResponse>, Status> {
        unimplemented()
    }

    async fn subscribe(
        &self,
        _: Request<proto::SubscribeRequest>,
    ) -> Result<Response<proto::SubscribeResponse>, Status> {
        unimplemented()
    }

    async fn status(&self, _: Request<proto::StatusRequest>) -> Result<Response<proto::StatusResponse>, Status> {
        unimplemented()
    }

    async fn select(&self, request: Request<proto::SelectRequest>) -> Result<Response<proto::SelectResponse>, Status> {
        self.step("select", request.get_ref().ctx.as_ref(), 0).await?;
        let uids = lock(&self.uids).clone();
        let last = uids.last().copied().unwrap_or(0);
        let status = proto::MailboxStatus {
            mailbox_id: 10,
            uidvalidity: 1,
            uidnext: last + 1,
            highest_modseq: u64::from(last),
            messages: uids.len() as u32,
            ..Default::default()
        };
        let ranges = uids.iter().map(|&uid| proto::UidRange { start: uid, end: uid }).collect();
        Ok(Response::new(proto::SelectResponse {
            status: Some(status),
            uids: Some(proto::UidSet { ranges }),
            first_unseen_uid: 0,
        }))
    }

    async fn append(&self, request: Request<proto::AppendRequest>) -> Result<Response<proto::AppendResponse>, Status> {
        self.step("append", request.get_ref().ctx.as_ref(), 0).await?;
        Ok(Response::new(proto::AppendResponse { uidvalidity: 1, uids: vec![1], mailbox_id: 10 }))
    }

    async fn fetch(&self, request: Request<proto::FetchRequest>) -> Result<Response<Self::FetchStream>, Status> {
        let request = request.into_inner();
        self.step("fetch", request.ctx.as_ref(), 0).await?;
        let breaks = take_one(&self.broken_fetches);
        // The named messages with their flags; without a UID set, message 1 (retry tests).
        let messages: Vec<proto::FetchedMessage> = match &request.uids {
            None => vec![proto::FetchedMessage { uid: 1, ..Default::default() }],
            Some(set) => {
                let flags = lock(&self.flags);
                members(&lock(&self.uids), set)
                    .into_iter()
                    .map(|uid| proto::FetchedMessage {
                        uid,
                        flags: flags.get(&uid).cloned().unwrap_or_default(),
                        modseq: u64::from(uid),
                        ..Default::default()
                    })
                    .collect()
            }
        };
        let size = match self.fetch_chunk.load(Ordering::SeqCst) {
            0 => messages.len().max(1),
            n => n,
        };
        let chunks: Vec<Vec<proto::FetchedMessage>> = messages.chunks(size).map(<[_]>::to_vec).collect();
        let pause_after = *lock(&self.fetch_pause_after);
        let resume = self.fetch_resume.clone();
        let sent = self.fetch_chunks_sent.clone();
        // Chunk by chunk; after the first the stream may break: the front-end must not reopen it.
        let stream = async_stream::stream! {
            for (i, messages) in chunks.into_iter().enumerate() {
                if pause_after == Some(i) {
                    resume.notified().await;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                yield Ok(proto::FetchResponse { messages });
                if breaks {
                    yield Err(Status::unavailable("stream broke"));
                    break;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn store(&self, request: Request<proto::StoreRequest>) -> Result<Response<proto::StoreResponse>, Status> {
        let request = request.into_inner();
        self.step("store", request.ctx.as_ref(), 0).await?;
        let index = self.calls("store").len() - 1;
        if lock(&self.store_pause_at).is_some_and(|at| index >= at) {
            self.store_resume.cancelled().await;
        }
        let uids = members(&lock(&self.uids), request.uids.as_ref().unwrap_or(&proto::UidSet::default()));
        self.check_write_limit(uids.len())?;
        self.check_keyword_cap(&request)?;
        let mut flags = lock(&self.flags);
        let mut updated = Vec::new();
        for &uid in &uids {
            let current = flags.entry(uid).or_default();
            match proto::StoreOp::try_from(request.op) {
                Ok(proto::StoreOp::StoreAdd) => {
                    for flag in &request.flags {
                        if !current.contains(flag) {
                            current.push(flag.clone());
                        }
                    }
                }
                Ok(proto::StoreOp::StoreRemove) => current.retain(|f| !request.flags.contains(f)),
                _ => current.clone_from(&request.flags),
            }
            updated.push(proto::MessageFlags { uid, flags: current.clone(), modseq: u64::from(uid) });
        }
        lock(&self.stored).extend(&uids);
        Ok(Response::new(proto::StoreResponse { updated, ..Default::default() }))
    }

    async fn expunge(&self, request: Request<proto::ExpungeRequest>) -> Result<Response<proto::ExpungeResponse>, Status> {
        let request = request.into_inner();
        self.step("expunge", request.ctx.as_ref(), 0).await?;
        let mut uids = lock(&self.uids);
        // Every message counts as \Deleted.
        let expunged = match (request.has_uids, &request.uids) {
            (true, Some(set)) => members(&uids, set),
            (true, None) => Vec::new(),
            (false, _) => uids.clone(),
        };
        self.check_write_limit(expunged.len())?;
        uids.retain(|u| !expunged.contains(u));
        Ok(Response::new(proto::ExpungeResponse { expunged, highest_modseq: 0 }))
    }

    async fn copy(&self, _: Request<proto::CopyRequest>) -> Result<Response<proto::CopyResponse>, Status> {
        unimplemented()
    }

    async fn search(&self, _: Request<proto::SearchRequest>) -> Result<Response<proto::SearchResponse>, Status> {
        unimplemented()
    }

    async fn changes(
        &self,
        request: Request<proto::ChangesRequest>,
    ) -> Result<Response<proto::ChangesResponse>, Status> {
        let request = request.into_inner();
        self.step("changes", request.ctx.as_ref(), 0).await?;
        if self.revoked.load(Ordering::SeqCst) {
            return Err(coded("AUTHFAILED", None));
        }
        if take_one(&self.changes_failures) {
            return Err(coded("INTERNAL", None));
        }
        let uids = lock(&self.uids).clone();
        let last = uids.last().copied().unwrap_or(0);
        let changed = uids
            .iter()
            .filter(|&&uid| u64::from(uid) > request.since_modseq)
            .map(|&uid| proto::MessageFlags { uid, flags: Vec::new(), modseq: u64::from(uid) })
            .collect();
        let grow = self.grow_on_changes.load(Ordering::SeqCst) as u32;
        lock(&self.uids).extend(last + 1..=last + grow);
        Ok(Response::new(proto::ChangesResponse {
            expunged: Vec::new(),
            changed,
            highest_modseq: u64::from(last).max(request.since_modseq),
            uidnext: last + 1,
            resync: self.resync.load(Ordering::SeqCst),
        }))
    }

    async fn watch(&self, request: Request<proto::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let heartbeat_ms = request.get_ref().heartbeat_ms;
        self.step("watch", None, heartbeat_ms).await?;
        let every = Duration::from_millis(u64::from(heartbeat_ms.max(1)));
        let silent_after = *lock(&self.watch_silent_after);
        let stream = async_stream::stream! {
            let mut sent = 0usize;
            loop {
                if silent_after.is_some_and(|n| sent >= n) {
                    // Blackholed: the connection stays open, nothing more arrives.
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(every).await;
                sent += 1;
                yield Ok(proto::WatchEvent { heartbeat: true, applied_index: sent as u64, ..Default::default() });
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

/// An IMAP client of a real [`crate::connection::Connection`] over an in-memory pipe, whose
/// storage is a mock: for tests of whole commands (split STORE and EXPUNGE).
pub(crate) struct Client {
    reader: tokio::io::BufReader<tokio::io::DuplexStream>,
    /// The mock storage behind the connection.
    pub server: Server,
    tags: u32,
    _shutdown: tokio_util::sync::DropGuard,
}

/// How long a test waits for an expected line.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

impl Client {
    /// A connection to `mock` with the front-end's default configuration changed by `configure`,
    /// logged in.
    pub async fn logged_in(mock: Mock, configure: impl FnOnce(&mut crate::config::FrontendConfig)) -> Self {
        let server = serve(mock).await;
        let mut config = crate::config::FrontendConfig {
            storage_endpoints: vec![server.addr.clone()],
            allow_plaintext_auth: true,
            ..Default::default()
        };
        configure(&mut config);
        let policy = super::route::RetryPolicy::new(Duration::from_secs(5), Duration::from_secs(1));
        let storage = super::Storage::new(&config.storage_endpoints, 1, policy);
        let shared = Arc::new(crate::cmd::Shared { config, storage, watch: crate::watch::WatchHub::new() });
        let (client, socket) = tokio::io::duplex(1 << 20);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let io = crate::io::ImapStream::Plain(Box::new(socket));
        let connection = crate::connection::Connection::new(shared, io, None, shutdown.clone(), "s1".into());
        tokio::spawn(connection.run());
        let mut client =
            Self { reader: tokio::io::BufReader::new(client), server, tags: 0, _shutdown: shutdown.drop_guard() };
        client.expect("* OK").await;
        let (_, done) = client.run("LOGIN alice@example.org pw").await;
        assert!(done.contains(" OK "), "{done}");
        client
    }

    /// Sends `command` with a fresh tag; returns the lines before its completion and the
    /// completion.
    pub async fn run(&mut self, command: &str) -> (Vec<String>, String) {
        let tag = self.send(command).await;
        let mut before = self.expect(&tag).await;
        let done = before.pop().unwrap_or_default();
        (before, done)
    }

    /// Sends `command` with a fresh tag and returns the tag (with its trailing space), without
    /// waiting for anything.
    pub async fn send(&mut self, command: &str) -> String {
        self.tags += 1;
        let tag = format!("t{} ", self.tags);
        let line = format!("{tag}{command}\r\n");
        tokio::io::AsyncWriteExt::write_all(self.reader.get_mut(), line.as_bytes()).await.unwrap();
        tag
    }

    /// Reads lines (without CRLF) up to and including the first that starts with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + CLIENT_DEADLINE;
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout_at(deadline, tokio::io::AsyncBufReadExt::read_line(&mut self.reader, &mut line));
            let n = read.await.unwrap_or_else(|_| panic!("no {prefix:?} in time; got {seen:?}")).unwrap();
            assert!(n > 0, "connection closed waiting for {prefix:?}; got {seen:?}");
            let line = line.trim_end().to_owned();
            let found = line.starts_with(prefix);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }
}
