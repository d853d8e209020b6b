//! What every service of a node shares: the Raft handle, the read view of the applied state,
//! and the three operations all RPCs are built from.
//!
//! - [`Shared::authorize`]: token in the request context → [`Claims`] (or `UNAUTHENTICATED`),
//!   including the revocation check against the account's credential generation.
//! - [`Shared::write_with_id`]: a [`Command`] stamped with the clock and the caller's request id
//!   ([`request_id`], from `Context.request_id`) becomes one Raft entry; the reply is the model's
//!   result after the entry is committed and applied on this node. A retry with the same id gets
//!   the first application's reply from the replicated dedup table instead of applying again.
//!   [`Shared::write`] is the same without an id (admin calls).
//! - [`Shared::linearize`] then [`Shared::read`]: a read-index round (the leader confirms with a
//!   quorum that it still leads and waits until it has applied that index; concurrent reads
//!   share rounds, see `read_index.rs`), then a query on a
//!   point-in-time view on the blocking pool (RocksDB reads block), at most
//!   `limits.max_concurrent_reads` at once ([`Pools`]), so reads can never take every thread.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailraft_model::{Account, Command, KvRead, ModelError, Outcome, Principal, Request, RequestId, SessionKeys, query};
use mailraft_proto::Context;
use mailraft_store::{Node, NodeId, Raft, StateView};
use openraft::error::{CheckIsLeaderError, RaftError};

use crate::error::ServerError;
use crate::limits::Pools;
use crate::read_index::{ReadIndexBatcher, ReadIndexError};
use crate::metrics::record_tenant;
use crate::token::{self, Claims};

/// State shared by the Storage, Admin and Raft services of one node.
pub struct Shared {
    /// This node's id in its group.
    pub node_id: u64,
    /// The group this node serves; requests naming another are refused.
    pub group_id: u64,
    /// The local Raft node.
    pub raft: Raft,
    /// Read access to the applied state.
    pub view: StateView,
    /// Which cluster this node belongs to (checked on every Raft message).
    pub cluster: std::sync::Arc<crate::cluster_id::ClusterIdentity>,
    /// How long an issued session token is valid (`auth.token_ttl_secs`).
    token_ttl: Duration,
    /// Where blocking reads and password hashing run, and the guessing budgets.
    pub pools: Pools,
    /// Shares read-index rounds between concurrent reads.
    read_index: ReadIndexBatcher<RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>>,
}

/// The idempotency key of a mutating call: `Context.request_id`, empty (or no context) = none.
/// Checked before any work is done, so an over-long id costs the caller one round trip.
pub fn request_id(ctx: Option<&Context>) -> Result<Option<RequestId>, ServerError> {
    let bytes = ctx.map(|c| c.request_id.clone()).unwrap_or_default();
    RequestId::from_wire(bytes).map_err(|e| ServerError::Invalid(e.to_string()))
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shared {
    /// Shares `raft` and `view` of node `node_id` in group `group_id`, with its `pools`.
    pub fn new(
        node_id: u64,
        group_id: u64,
        raft: Raft,
        view: StateView,
        cluster: std::sync::Arc<crate::cluster_id::ClusterIdentity>,
        pools: Pools,
    ) -> Self {
        let read_index = ReadIndexBatcher::new({
            let raft = raft.clone();
            std::sync::Arc::new(move || {
                let raft = raft.clone();
                Box::pin(async move { raft.ensure_linearizable().await.map(|_| ()) })
            })
        });
        Shared { node_id, group_id, raft, view, cluster, token_ttl: crate::token::DEFAULT_TOKEN_TTL, pools, read_index }
    }

    /// Issues tokens valid for `ttl` (at least [`crate::token::MIN_TOKEN_TTL`]).
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl.max(crate::token::MIN_TOKEN_TTL);
        self
    }

    /// How long the tokens this node issues are valid.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// Refuses requests for another group. 0 is accepted as "the node's group" so single-group
    /// clients need not know the id.
    pub fn check_group(&self, group_id: u64) -> Result<(), ServerError> {
        if group_id == self.group_id || group_id == 0 {
            Ok(())
        } else {
            Err(ServerError::Invalid(format!("this node does not serve group {group_id}")))
        }
    }

    /// The replicated session keys; `UNAVAILABLE` until `Init` has been applied here. Read on
    /// every use (one small point read) because a rotation replaces them.
    pub fn session_keys(&self) -> Result<SessionKeys, ServerError> {
        query::session_keys(&self.view)?.ok_or_else(|| ServerError::Unavailable("cluster not initialized".into()))
    }

    /// Verifies the context's group and session token, and that the token's account still has
    /// the credential generation it was issued at (a point read of this node's copy of the
    /// account); records the tenant on the RPC span.
    pub fn authorize(&self, ctx: Option<&Context>) -> Result<Claims, ServerError> {
        let claims = self.verify_token(ctx)?;
        self.check_account(&claims)?;
        Ok(claims)
    }

    /// [`Shared::authorize`] for reads: the signature is checked first (garbage costs no
    /// read-index round), then the read index, then the account. In that order the account check
    /// sees every change committed before the call, so a read issued after `disable-user` or
    /// `set-password` was acknowledged is refused even while this leader's apply trails its commit.
    pub async fn authorize_read(&self, ctx: Option<&Context>) -> Result<Claims, ServerError> {
        let claims = self.verify_token(ctx)?;
        self.linearize().await?;
        self.check_account(&claims)?;
        Ok(claims)
    }

    /// Group, signature and expiry of the context's token; no state beyond the session keys.
    fn verify_token(&self, ctx: Option<&Context>) -> Result<Claims, ServerError> {
        let ctx = ctx.ok_or(ServerError::BadToken)?;
        self.check_group(ctx.group_id)?;
        if ctx.token.is_empty() {
            return Err(ServerError::BadToken);
        }
        Ok(token::verify(&self.session_keys()?, &ctx.token, now_ms())?)
    }

    /// The token's account still exists, is enabled and has the generation the token was issued
    /// at (a point read of this node's applied state). Long reads call it again as they go.
    pub(crate) fn check_account(&self, claims: &Claims) -> Result<(), ServerError> {
        let account = match query::account(&self.view, claims.principal()) {
            Ok(account) => Some(account),
            Err(ModelError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        token::check_account(claims, account.as_ref())?;
        record_tenant(claims.tenant);
        Ok(())
    }

    /// A token for `account` (whose principal is `who`), valid for the configured TTL, signed
    /// with the current session key. Returns it with its lifetime in milliseconds.
    pub fn issue_token(
        &self,
        who: Principal,
        account: &Account,
        login: String,
        kind: &'static str,
    ) -> Result<(Vec<u8>, Claims, u64), ServerError> {
        let ttl_ms = u64::try_from(self.token_ttl.as_millis()).unwrap_or(u64::MAX);
        let claims = Claims {
            tenant: who.tenant,
            account: who.account,
            login,
            generation: account.generation,
            expires_ms: now_ms().saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
        };
        let token = token::issue(&self.session_keys()?.current, &claims)?;
        crate::metrics::token_issued(kind);
        Ok((token, claims, ttl_ms))
    }

    /// Proposes `command` without a request id; see [`Shared::write_with_id`].
    pub async fn write(&self, command: Command) -> Result<Outcome, ServerError> {
        self.write_with_id(command, None).await
    }

    /// Proposes `command` and waits until it is applied; maps the model's refusal to an error.
    /// With a `request_id` already applied within the dedup window, the reply is the recorded
    /// one (success or error) and nothing changes.
    pub async fn write_with_id(&self, command: Command, request_id: Option<RequestId>) -> Result<Outcome, ServerError> {
        let resp = self.raft.client_write(Request { now_ms: now_ms(), request_id, command }).await?;
        match resp.data {
            // From level 2 the model says `TooBig` for what a split would pass, so its `Limit` is
            // final. The level is read after the apply; it only goes up, so at worst a `Limit`
            // applied just before a raise is reported without splitting.
            Err(ModelError::Limit(why))
                if mailraft_model::feature::stored_level(&self.view)
                    .is_ok_and(|l| l >= mailraft_model::feature::LEVEL_KEYWORD_INDEX) =>
            {
                Err(ServerError::FinalLimit(why))
            }
            data => Ok(data?),
        }
    }

    /// Read-index: returns once this node is confirmed leader and has applied everything
    /// committed before the call, so a following [`Shared::read`] is linearizable. Concurrent
    /// calls share one round that started after each of them ([`ReadIndexBatcher`]).
    pub async fn linearize(&self) -> Result<(), ServerError> {
        match self.read_index.linearize().await {
            Ok(()) => Ok(()),
            Err(ReadIndexError::Failed(e)) => Err(e.into()),
            Err(ReadIndexError::Stopped) => Err(ServerError::Unavailable("read-index round stopped".into())),
        }
    }

    /// Runs a query on one point-in-time view of the applied state, on the blocking pool once
    /// a read slot is free (reads on nobody's behalf: logins, LMTP recipients, admin).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn KvRead) -> Result<T, ModelError> + Send + 'static,
    {
        let view = self.view.clone();
        let result = self.pools.read(move || view.read(|kv| f(kv))).await??;
        Ok(result?)
    }

    /// [`Shared::read`] on behalf of `who`: within the account's short-read places
    /// (`Pools::read_short_as`), so one account cannot hold every read slot.
    pub async fn read_as<T, F>(&self, who: Principal, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn KvRead) -> Result<T, ModelError> + Send + 'static,
    {
        let view = self.view.clone();
        let result = self.pools.read_short_as(who, move || view.read(|kv| f(kv))).await??;
        Ok(result?)
    }
}
