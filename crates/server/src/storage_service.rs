//! `mailraft.v1.Storage`: the data service front-ends call for every IMAP session.
//!
//! This file is only the dispatch: each RPC gets a tracing span (`session_id`, later `tenant`)
//! and goes through [`observe`] (metrics, error → `Status`). The work is in one file per group
//! of operations, as `impl StorageService` blocks: `session.rs` (Authenticate), `refresh.rs`
//! (RefreshToken), `mailboxes.rs` (LIST, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS, SELECT),
//! `messages.rs` (APPEND, STORE, EXPUNGE, COPY/MOVE), `fetch.rs`, `search.rs`, and
//! `changes.rs` (Changes, Watch).
//!
//! Every operation except Authenticate and Watch starts with `Shared::authorize`: the token
//! decides which (tenant, account) the call acts for, never a field of the request.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use mailraft_proto as pb;
use mailraft_proto::storage_server::Storage;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::metrics::{observe, rpc_span};
use crate::shared::Shared;

/// A server-streaming response body.
pub type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves `mailraft.v1.Storage` for one group.
#[derive(Clone)]
pub struct StorageService {
    /// Raft, state view, session key.
    pub(crate) shared: Arc<Shared>,
    /// Flips to `true` when the node shuts down, so endless streams (Watch) end and the
    /// server's graceful shutdown does not wait for them forever.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

impl StorageService {
    /// Serves the node described by `shared`.
    pub fn new(shared: Arc<Shared>, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        StorageService { shared, shutdown }
    }
}

fn session_id(ctx: &Option<pb::Context>) -> &str {
    ctx.as_ref().map(|c| c.session_id.as_str()).unwrap_or("")
}

/// Runs `self.$op(request)` in a span with metrics, as RPC `$name`.
macro_rules! unary {
    ($self:ident, $name:literal, $op:ident, $req:ident) => {{
        let req = $req.into_inner();
        let span = rpc_span($name, session_id(&req.ctx));
        observe($name, $self.$op(req)).instrument(span).await.map(Response::new)
    }};
}

#[tonic::async_trait]
impl Storage for StorageService {
    type FetchStream = RpcStream<pb::FetchResponse>;
    type WatchStream = RpcStream<pb::WatchEvent>;

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        unary!(self, "Authenticate", authenticate_op, request)
    }

    async fn list_mailboxes(
        &self,
        request: Request<pb::ListMailboxesRequest>,
    ) -> Result<Response<pb::ListMailboxesResponse>, Status> {
        unary!(self, "ListMailboxes", list_mailboxes_op, request)
    }

    async fn create_mailbox(
        &self,
        request: Request<pb::CreateMailboxRequest>,
    ) -> Result<Response<pb::CreateMailboxResponse>, Status> {
        unary!(self, "CreateMailbox", create_mailbox_op, request)
    }

    async fn delete_mailbox(
        &self,
        request: Request<pb::DeleteMailboxRequest>,
    ) -> Result<Response<pb::DeleteMailboxResponse>, Status> {
        unary!(self, "DeleteMailbox", delete_mailbox_op, request)
    }

    async fn rename_mailbox(
        &self,
        request: Request<pb::RenameMailboxRequest>,
    ) -> Result<Response<pb::RenameMailboxResponse>, Status> {
        unary!(self, "RenameMailbox", rename_mailbox_op, request)
    }

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<pb::SubscribeResponse>, Status> {
        unary!(self, "Subscribe", subscribe_op, request)
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        unary!(self, "Status", status_op, request)
    }

    async fn select(&self, request: Request<pb::SelectRequest>) -> Result<Response<pb::SelectResponse>, Status> {
        unary!(self, "Select", select_op, request)
    }

    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        unary!(self, "Append", append_op, request)
    }

    async fn fetch(&self, request: Request<pb::FetchRequest>) -> Result<Response<Self::FetchStream>, Status> {
        unary!(self, "Fetch", fetch_op, request)
    }

    async fn store(&self, request: Request<pb::StoreRequest>) -> Result<Response<pb::StoreResponse>, Status> {
        unary!(self, "Store", store_op, request)
    }

    async fn expunge(&self, request: Request<pb::ExpungeRequest>) -> Result<Response<pb::ExpungeResponse>, Status> {
        unary!(self, "Expunge", expunge_op, request)
    }

    async fn copy(&self, request: Request<pb::CopyRequest>) -> Result<Response<pb::CopyResponse>, Status> {
        unary!(self, "Copy", copy_op, request)
    }

    async fn search(&self, request: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        unary!(self, "Search", search_op, request)
    }

    async fn changes(&self, request: Request<pb::ChangesRequest>) -> Result<Response<pb::ChangesResponse>, Status> {
        unary!(self, "Changes", changes_op, request)
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        unary!(self, "RefreshToken", refresh_token_op, request)
    }

    async fn check_recipient(
        &self,
        request: Request<pb::CheckRecipientRequest>,
    ) -> Result<Response<pb::CheckRecipientResponse>, Status> {
        self.check_recipient_rpc(request).await
    }

    async fn deliver(&self, request: Request<pb::DeliverRequest>) -> Result<Response<pb::DeliverResponse>, Status> {
        self.deliver_rpc(request).await
    }

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        // A node's certificate is checked against the retired list again at every heartbeat.
        let node = crate::authz::caller_node(request.extensions().get::<crate::authz::Caller>());
        let req = request.into_inner();
        let span = rpc_span("Watch", "");
        observe("Watch", self.watch_op(req, node)).instrument(span).await.map(Response::new)
    }
}
