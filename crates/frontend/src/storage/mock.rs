//! A scriptable in-process `Storage` gRPC server for the unit tests of the router, the watch hub
//! and the IDLE loop.
//!
//! Every call is recorded (operation, request id, requested heartbeat) and then takes the next
//! [`Step`] of the script: answer, fail with a status, or hang without ever answering (a node
//! that vanished without closing its connections). An empty script answers. Answers are just
//! enough for the front-end paths under test: one mailbox (id 10, UIDVALIDITY 1) whose messages
//! are [`Mock::uids`], each with MODSEQ = UID.

use std::collections::VecDeque;
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

use super::status::{CODE_KEY, LEADER_KEY};

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
    /// This many FETCH streams break after their one chunk; later ones end cleanly.
    pub broken_fetches: AtomicUsize,
    /// Watch streams send this many heartbeats and then go silent; `None`: heartbeats forever.
    pub watch_silent_after: Mutex<Option<usize>>,
    /// Token lifetime announced by Authenticate and RefreshToken (0: none).
    pub ttl_ms: std::sync::atomic::AtomicU64,
    /// RefreshToken (and Changes) refuse the token with AUTHFAILED, as for a revoked session.
    pub revoked: AtomicBool,
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
        self.step("fetch", request.get_ref().ctx.as_ref(), 0).await?;
        let breaks = take_one(&self.broken_fetches);
        // One chunk, then maybe the stream breaks: the front-end must not reopen it by itself.
        let stream = async_stream::stream! {
            yield Ok(proto::FetchResponse {
                messages: vec![proto::FetchedMessage { uid: 1, ..Default::default() }],
            });
            if breaks {
                yield Err(Status::unavailable("stream broke"));
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn store(&self, _: Request<proto::StoreRequest>) -> Result<Response<proto::StoreResponse>, Status> {
        unimplemented()
    }

    async fn expunge(&self, _: Request<proto::ExpungeRequest>) -> Result<Response<proto::ExpungeResponse>, Status> {
        unimplemented()
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
