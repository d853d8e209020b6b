//! Typed access to the storage tier's `Storage` gRPC service.
//!
//! One [`Storage`] per front-end process, cloned into every session: all sessions share the
//! router's channels (HTTP/2 multiplexes their calls) and its leader cache. Each method is one
//! RPC through [`route::Router::call`], which adds routing, retries and the request deadline,
//! and maps failures to [`FrontendError`] (see [`status`]). Data calls carry the session's
//! [`proto::Context`] (group id, session token, session id), which the caller builds once at
//! login.
//!
//! Every mutating call (APPEND, STORE, EXPUNGE, COPY/MOVE, CREATE, DELETE, RENAME, SUBSCRIBE)
//! also carries a request id in `Context.request_id`: 16 random bytes chosen once per `Storage`
//! (i.e. per front-end process) followed by a big-endian counter. The id is chosen once per
//! logical call, before the router's retry loop, so every retry of that call carries the same id
//! and the storage answers a retry whose first attempt was applied with the original reply
//! instead of applying it again.

pub mod route;
pub mod status;

#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mailraft_proto as proto;
use tonic::Streaming;

use crate::error::FrontendError;
use route::{RetryPolicy, Router, StorageTls};

/// Length of the random part of a request id.
const REQUEST_ID_PREFIX: usize = 16;

/// Client of the storage tier, cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    router: Arc<Router>,
    group_id: u64,
    ids: Arc<RequestIds>,
}

/// Source of request ids: unique across front-end processes (random prefix) and within one
/// (counter), without coordination.
#[derive(Debug)]
struct RequestIds {
    prefix: [u8; REQUEST_ID_PREFIX],
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self { prefix: rand::random(), counter: AtomicU64::new(0) }
    }

    /// The next id: prefix ‖ counter (big-endian).
    fn next(&self) -> Vec<u8> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = Vec::with_capacity(REQUEST_ID_PREFIX + 8);
        id.extend_from_slice(&self.prefix);
        id.extend_from_slice(&n.to_be_bytes());
        id
    }
}

/// The messages of one FETCH, as the storage streams them.
#[derive(Debug)]
pub struct FetchStream {
    inner: Streaming<proto::FetchResponse>,
    /// Bound on the wait for each chunk, so a stalled node cannot hang the session.
    timeout: Duration,
}

impl FetchStream {
    /// The next chunk of messages, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<proto::FetchResponse>, FrontendError> {
        match tokio::time::timeout(self.timeout, self.inner.message()).await {
            Err(_) => Err(FrontendError::Timeout),
            Ok(result) => result.map_err(FrontendError::from),
        }
    }
}

impl Storage {
    /// A plaintext client for the storage group `group_id` reachable at `endpoints`.
    pub fn new(endpoints: &[String], group_id: u64, policy: RetryPolicy) -> Self {
        Self::with_tls(endpoints, group_id, policy, None)
    }

    /// A client for the storage group `group_id` at `endpoints`, over mutual TLS with `tls`.
    pub fn with_tls(endpoints: &[String], group_id: u64, policy: RetryPolicy, tls: Option<StorageTls>) -> Self {
        let router = Arc::new(Router::with_tls(endpoints, policy, tls));
        Self { router, group_id, ids: Arc::new(RequestIds::new()) }
    }

    /// The router (the watch hub shares its channels).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The Raft group this front-end talks to.
    pub fn group_id(&self) -> u64 {
        self.group_id
    }

    /// The context of a session that logged in with `token` (without a request id: reads need
    /// none, and mutating calls add a fresh one per call).
    pub fn context(&self, token: Vec<u8>, session_id: &str) -> proto::Context {
        proto::Context { group_id: self.group_id, token, session_id: session_id.to_owned(), request_id: Vec::new() }
    }

    /// `ctx` with a fresh request id, for one mutating call.
    fn mutating(&self, ctx: &proto::Context) -> proto::Context {
        proto::Context { request_id: self.ids.next(), ..ctx.clone() }
    }

    /// Gives the request's context a fresh request id, for one mutating call.
    fn stamp(&self, ctx: &mut Option<proto::Context>) {
        if let Some(ctx) = ctx {
            ctx.request_id = self.ids.next();
        }
    }

    /// Checks a login and password; the response carries the session token. `client` is the
    /// IMAP client's address, for the storage tier's per-source failure budget.
    pub async fn authenticate(
        &self,
        session_id: &str,
        login: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<proto::AuthenticateResponse, FrontendError> {
        let request = proto::AuthenticateRequest {
            ctx: Some(self.context(Vec::new(), session_id)),
            login: login.to_owned(),
            password: password.to_owned(),
            client_ip: client.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        self.router
            .call("authenticate", |mut c| {
                let request = request.clone();
                async move { c.authenticate(request).await }
            })
            .await
    }

    /// Exchanges the context's token for a fresh one (see `session/lifetime.rs`). Not a write:
    /// a retry only signs another token, so it needs no request id.
    pub async fn refresh_token(&self, ctx: &proto::Context) -> Result<proto::RefreshTokenResponse, FrontendError> {
        let request = proto::RefreshTokenRequest { ctx: Some(ctx.clone()) };
        self.router
            .call("refresh_token", |mut c| {
                let request = request.clone();
                async move { c.refresh_token(request).await }
            })
            .await
    }

    /// Every mailbox and subscription of the account.
    pub async fn list_mailboxes(
        &self,
        ctx: &proto::Context,
    ) -> Result<proto::ListMailboxesResponse, FrontendError> {
        let request = proto::ListMailboxesRequest { ctx: Some(ctx.clone()) };
        self.router
            .call("list_mailboxes", |mut c| {
                let request = request.clone();
                async move { c.list_mailboxes(request).await }
            })
            .await
    }

    /// Creates a mailbox.
    pub async fn create_mailbox(
        &self,
        ctx: &proto::Context,
        name: &str,
    ) -> Result<proto::CreateMailboxResponse, FrontendError> {
        let request = proto::CreateMailboxRequest {
            ctx: Some(self.mutating(ctx)),
            name: name.to_owned(),
            special_use: String::new(),
        };
        self.router
            .call("create_mailbox", |mut c| {
                let request = request.clone();
                async move { c.create_mailbox(request).await }
            })
            .await
    }

    /// Deletes a mailbox.
    pub async fn delete_mailbox(&self, ctx: &proto::Context, name: &str) -> Result<(), FrontendError> {
        let request = proto::DeleteMailboxRequest { ctx: Some(self.mutating(ctx)), name: name.to_owned() };
        self.router
            .call("delete_mailbox", |mut c| {
                let request = request.clone();
                async move { c.delete_mailbox(request).await }
            })
            .await
            .map(|_| ())
    }

    /// Renames a mailbox (and its children).
    pub async fn rename_mailbox(
        &self,
        ctx: &proto::Context,
        from: &str,
        to: &str,
    ) -> Result<(), FrontendError> {
        let request = proto::RenameMailboxRequest {
            ctx: Some(self.mutating(ctx)),
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.router
            .call("rename_mailbox", |mut c| {
                let request = request.clone();
                async move { c.rename_mailbox(request).await }
            })
            .await
            .map(|_| ())
    }

    /// Adds or removes `name` from the subscriptions.
    pub async fn subscribe(
        &self,
        ctx: &proto::Context,
        name: &str,
        subscribe: bool,
    ) -> Result<(), FrontendError> {
        let request =
            proto::SubscribeRequest { ctx: Some(self.mutating(ctx)), name: name.to_owned(), subscribe };
        self.router
            .call("subscribe", |mut c| {
                let request = request.clone();
                async move { c.subscribe(request).await }
            })
            .await
            .map(|_| ())
    }

    /// Counters of a mailbox (STATUS).
    pub async fn status(
        &self,
        ctx: &proto::Context,
        name: &str,
    ) -> Result<proto::MailboxStatus, FrontendError> {
        let request = proto::StatusRequest { ctx: Some(ctx.clone()), name: name.to_owned() };
        let response = self
            .router
            .call("status", |mut c| {
                let request = request.clone();
                async move { c.status(request).await }
            })
            .await?;
        response.status.ok_or_else(|| FrontendError::Internal("status response without status".into()))
    }

    /// Opens a mailbox: counters and every UID.
    pub async fn select(
        &self,
        ctx: &proto::Context,
        name: &str,
    ) -> Result<proto::SelectResponse, FrontendError> {
        let request = proto::SelectRequest { ctx: Some(ctx.clone()), name: name.to_owned() };
        self.router
            .call("select", |mut c| {
                let request = request.clone();
                async move { c.select(request).await }
            })
            .await
    }

    /// Appends messages to a mailbox.
    pub async fn append(&self, mut request: proto::AppendRequest) -> Result<proto::AppendResponse, FrontendError> {
        self.stamp(&mut request.ctx);
        self.router
            .call("append", |mut c| {
                let request = request.clone();
                async move { c.append(request).await }
            })
            .await
    }

    /// Starts a FETCH; messages arrive through the returned stream.
    pub async fn fetch(&self, request: proto::FetchRequest) -> Result<FetchStream, FrontendError> {
        let inner = self
            .router
            .call("fetch", |mut c| {
                let request = request.clone();
                async move { c.fetch(request).await }
            })
            .await?;
        Ok(FetchStream { inner, timeout: self.router.request_timeout() })
    }

    /// Changes flags.
    pub async fn store(&self, mut request: proto::StoreRequest) -> Result<proto::StoreResponse, FrontendError> {
        self.stamp(&mut request.ctx);
        self.router
            .call("store", |mut c| {
                let request = request.clone();
                async move { c.store(request).await }
            })
            .await
    }

    /// Removes messages flagged `\Deleted`.
    pub async fn expunge(
        &self,
        mut request: proto::ExpungeRequest,
    ) -> Result<proto::ExpungeResponse, FrontendError> {
        self.stamp(&mut request.ctx);
        self.router
            .call("expunge", |mut c| {
                let request = request.clone();
                async move { c.expunge(request).await }
            })
            .await
    }

    /// Copies (or moves) messages to another mailbox.
    pub async fn copy(&self, mut request: proto::CopyRequest) -> Result<proto::CopyResponse, FrontendError> {
        self.stamp(&mut request.ctx);
        self.router
            .call("copy", |mut c| {
                let request = request.clone();
                async move { c.copy(request).await }
            })
            .await
    }

    /// Runs a SEARCH next to the data.
    pub async fn search(&self, request: proto::SearchRequest) -> Result<proto::SearchResponse, FrontendError> {
        self.router
            .call("search", |mut c| {
                let request = request.clone();
                async move { c.search(request).await }
            })
            .await
    }

    /// What changed in a mailbox since a modseq.
    pub async fn changes(
        &self,
        request: proto::ChangesRequest,
    ) -> Result<proto::ChangesResponse, FrontendError> {
        self.router
            .call("changes", |mut c| {
                let request = request.clone();
                async move { c.changes(request).await }
            })
            .await
    }

    /// Opens the process-wide stream of committed mailbox changes (the watch hub's only caller),
    /// asking for a heartbeat every `heartbeat`. Only the leader serves it; the router follows
    /// `NOT_LEADER` hints. Returns the stream and the address of the node serving it.
    pub async fn watch(&self, heartbeat: Duration) -> Result<(Streaming<proto::WatchEvent>, String), FrontendError> {
        let heartbeat_ms = u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX).max(1);
        let request = proto::WatchRequest { group_id: self.group_id, heartbeat_ms };
        self.router
            .call_traced("watch", |mut c| async move { c.watch(request).await })
            .await
    }
}
