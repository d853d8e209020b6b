//! `mailraft.v1.Admin`: operator calls (tenants, users, passwords, disabling and deleting users,
//! rotating the session key, cluster state and membership, the latter in `membership.rs`,
//! backups, in `admin_service/backup.rs`, and raising the feature level, in
//! `admin_service/feature_level.rs`).
//!
//! Like data writes, tenant and user changes are Raft entries proposed on the leader; password
//! hashes are computed here (argon2id, random salt, on the blocking pool) so that no plaintext
//! password ever enters the log. Only operator certificates reach this service, on the node's
//! admin listener (`authz.rs`, `node.rs`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use mailraft_model::{Command, ModelError, Outcome, Record, Table, Tenant, keys, query};
use mailraft_proto as pb;
use mailraft_proto::admin_server::Admin;
use rand::RngCore;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::auth_budget::Key;
use crate::error::ServerError;
use crate::mailboxes::unexpected;
use crate::membership;
use crate::metrics::{observe, rpc_span};
use crate::network::Network;
use crate::password::{self, Login};
use crate::shared::Shared;

pub mod backup;
mod feature_level;

/// Bytes of a session key (HMAC-SHA256 key: its block size would be more than enough).
pub const SESSION_KEY_LEN: usize = 32;

/// Serves `mailraft.v1.Admin` for one group.
#[derive(Clone)]
pub struct AdminService {
    /// Raft and state view.
    shared: Arc<Shared>,
    /// Calls to other nodes during membership changes, and their admin URLs.
    network: Network,
}

impl AdminService {
    /// Serves the node described by `shared`, reaching other nodes through `network`.
    pub fn new(shared: Arc<Shared>, network: Network) -> Self {
        AdminService { shared, network }
    }
}

/// Hashes on a hashing thread (argon2 takes tens of milliseconds of CPU and 19 MiB), or answers
/// UNAVAILABLE when none is free in time (`Pools::hash`).
pub(crate) async fn hash_password(shared: &Shared, password: String) -> Result<String, ServerError> {
    shared.pools.hash(move || password::hash(&password)).await?
}

/// Creates a tenant; `AlreadyExists` when the domain has one.
pub(crate) async fn create_tenant(shared: &Shared, domain: &str) -> Result<u64, ServerError> {
    let domain = domain.trim().to_lowercase();
    if domain.is_empty() || domain.contains('@') || domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServerError::Invalid("invalid domain".into()));
    }
    match shared.write(Command::CreateTenant { domain }).await? {
        Outcome::TenantCreated { tenant } => Ok(tenant),
        other => Err(unexpected(other)),
    }
}

/// Creates an account `local@domain` with an INBOX; returns (tenant, account).
pub(crate) async fn create_user(shared: &Shared, login: &Login, password: String) -> Result<(u64, u64), ServerError> {
    let password_hash = hash_password(shared, password).await?;
    let command = Command::CreateAccount { domain: login.domain.clone(), login: login.local.clone(), password_hash };
    match shared.write(command).await? {
        Outcome::AccountCreated { tenant, account } => Ok((tenant, account)),
        other => Err(unexpected(other)),
    }
}

/// Rows (messages, change-log entries, mailboxes, subscriptions) one purge step of `delete-user`
/// removes: about the work of one large MULTIAPPEND, so the other tenants' writes queued behind a
/// step wait milliseconds, not the time it takes to remove a whole mail store.
pub const PURGE_STEP_ROWS: u32 = 1_000;

/// What [`delete_user`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Deleted {
    /// Accounts purged: the one deleted now, and earlier unfinished deletions of the login.
    pub accounts: Vec<u64>,
    /// Messages removed.
    pub messages: u64,
    /// Mailboxes removed.
    pub mailboxes: u64,
    /// Replicated purge steps.
    pub steps: u64,
}

/// Deletes `login` (its sessions end with the first entry) and then purges its mail, one bounded
/// Raft entry at a time. Resumable: if an earlier deletion of the same login was cut short (the
/// caller gave up, a leader change), this run only finishes that one, by account id, and leaves
/// an account created under the login since then alone (run the command again to delete it), so
/// rerunning after a failure can never take a new user's mail. `NotFound` when there is neither
/// an account nor such a rest.
pub(crate) async fn delete_user(shared: &Shared, login: &Login) -> Result<Deleted, ServerError> {
    shared.linearize().await?;
    let (domain, local) = (login.domain.clone(), login.local.clone());
    let mut targets = shared
        .read(move |kv| {
            let tenant = match query::tenant_by_domain(kv, &domain) {
                Ok(t) => t.id,
                Err(ModelError::NotFound(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let pending = mailraft_model::apply::pending_deletions(kv)?;
            let same_login = pending.into_iter().filter(|d| d.tenant == tenant && d.login == local);
            Ok(same_login.map(|d| (d.tenant, d.account)).collect::<Vec<_>>())
        })
        .await?;
    if targets.is_empty() {
        match shared.write(Command::DeleteAccount { domain: login.domain.clone(), login: login.local.clone() }).await {
            Ok(Outcome::AccountDeleted { tenant, account }) => {
                tracing::info!(tenant, account, "user deleted; purging its mail");
                targets.push((tenant, account));
            }
            Ok(other) => return Err(unexpected(other)),
            Err(ServerError::Model(ModelError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
    } else {
        tracing::info!(login = %login.canonical(), "finishing an interrupted deletion; a current account of that login is kept");
    }
    if targets.is_empty() {
        return Err(ServerError::NotFound(format!("user {}", login.canonical())));
    }
    let mut deleted = Deleted::default();
    for (tenant, account) in targets {
        loop {
            let step = Command::PurgeAccount { tenant, account, max_rows: PURGE_STEP_ROWS };
            match shared.write(step).await {
                Ok(Outcome::AccountPurged { messages, mailboxes, done, .. }) => {
                    deleted.messages += messages;
                    deleted.mailboxes += mailboxes;
                    deleted.steps += 1;
                    if done {
                        break;
                    }
                }
                Ok(other) => return Err(unexpected(other)),
                // Another run of the same command finished this purge first.
                Err(ServerError::Model(ModelError::NotFound(_))) => break,
                Err(e) => return Err(e),
            }
        }
        tracing::info!(tenant, account, "deleted user's mail purged");
        deleted.accounts.push(account);
    }
    Ok(deleted)
}

/// The deletions whose purge has not finished, with their logins as `user@domain`.
async fn pending_deletions(shared: &Shared) -> Result<pb::PendingDeletionsResponse, ServerError> {
    shared.linearize().await?;
    shared
        .read(|kv| {
            let mut deletions = Vec::new();
            for d in mailraft_model::apply::pending_deletions(kv)? {
                let tenant = kv.get(Table::Tenants, &keys::tenant(d.tenant)).map(|v| Tenant::decode(&v)).transpose()?;
                let domain = tenant.map_or_else(|| format!("tenant-{}", d.tenant), |t| t.domain);
                let login = format!("{}@{domain}", d.login);
                deletions.push(pb::PendingDeletion { login, account_id: d.account, deleted_ms: d.deleted_ms });
            }
            Ok(pb::PendingDeletionsResponse { deletions })
        })
        .await
}

/// Longest grace period a rotation accepts: a replaced key should not verify for long.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Installs a fresh random session key; the replaced one verifies for `grace_secs` more seconds
/// (default: the token TTL, after which every token it signed has expired anyway). Returns the
/// new key id and when the old key stops verifying.
pub(crate) async fn rotate_session_key(shared: &Shared, grace_secs: Option<u64>) -> Result<(u32, i64), ServerError> {
    let grace = grace_secs.map(Duration::from_secs).unwrap_or_else(|| shared.token_ttl());
    if grace > MAX_ROTATION_GRACE {
        return Err(ServerError::Invalid(format!("grace period over {} seconds", MAX_ROTATION_GRACE.as_secs())));
    }
    let mut session_key = vec![0u8; SESSION_KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut session_key);
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    match shared.write(Command::RotateSessionKey { session_key: session_key.into(), grace_ms }).await? {
        Outcome::SessionKeyRotated { key_id, previous_valid_until_ms } => {
            tracing::info!(key_id, grace_secs = grace.as_secs(), "session key rotated");
            Ok((key_id, previous_valid_until_ms))
        }
        other => Err(unexpected(other)),
    }
}

/// The failure-budget key an operator names: `user@domain`, an address, or an IPv6 `/64`.
pub(crate) fn auth_key(text: &str) -> Result<Key, ServerError> {
    let text = text.trim();
    if text.contains('@') {
        return Ok(Key::Login(Login::parse(text)?.canonical()));
    }
    let addr = text.strip_suffix("/64").unwrap_or(text);
    let ip: IpAddr = addr.parse().map_err(|_| ServerError::Invalid(format!("{text:?} is neither user@domain nor an address")))?;
    Ok(Key::source(ip))
}

/// The blocks of the leader's guessing budget (`auth_budget.rs`), for `mailraft admin auth-blocks`.
async fn auth_blocks(shared: &Shared) -> Result<pb::AuthBlocksResponse, ServerError> {
    // Only the leader's table counts; a follower answers NOT_LEADER with the leader's address.
    shared.linearize().await?;
    let blocks = shared
        .pools
        .auth
        .blocked(Instant::now())
        .into_iter()
        .map(|b| pb::AuthBlock {
            kind: b.key.kind().to_owned(),
            key: b.key.value(),
            failures: b.failures,
            until_ms: b.until.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        })
        .collect();
    Ok(pb::AuthBlocksResponse { blocks })
}

/// Lifts one block (or all) on the leader.
async fn auth_unblock(shared: &Shared, key: &str, all: bool) -> Result<pb::AuthUnblockResponse, ServerError> {
    shared.linearize().await?;
    let budget = &shared.pools.auth;
    let lifted = if all {
        budget.lift_all()
    } else {
        usize::from(budget.lift(&auth_key(key)?))
    };
    Ok(pb::AuthUnblockResponse { lifted: u32::try_from(lifted).unwrap_or(u32::MAX) })
}

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = backup::BackupStream;

    async fn backup(&self, request: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            backup::backup(&self.shared).await
        };
        observe("Backup", work).instrument(rpc_span("Backup", "")).await.map(Response::new)
    }

    async fn auth_blocks(
        &self,
        request: Request<pb::AuthBlocksRequest>,
    ) -> Result<Response<pb::AuthBlocksResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            auth_blocks(&self.shared).await
        };
        observe("AuthBlocks", work).instrument(rpc_span("AuthBlocks", "")).await.map(Response::new)
    }

    async fn auth_unblock(
        &self,
        request: Request<pb::AuthUnblockRequest>,
    ) -> Result<Response<pb::AuthUnblockResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            auth_unblock(&self.shared, &req.key, req.all).await
        };
        observe("AuthUnblock", work).instrument(rpc_span("AuthUnblock", "")).await.map(Response::new)
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let tenant_id = create_tenant(&self.shared, &req.domain).await?;
            tracing::info!(tenant = tenant_id, "tenant created");
            Ok(pb::CreateTenantResponse { tenant_id })
        };
        observe("CreateTenant", work).instrument(rpc_span("CreateTenant", "")).await.map(Response::new)
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let login = Login::parse(&req.login)?;
            let (tenant_id, account_id) = create_user(&self.shared, &login, req.password).await?;
            tracing::info!(tenant = tenant_id, account = account_id, "user created");
            Ok(pb::CreateUserResponse { tenant_id, account_id })
        };
        observe("CreateUser", work).instrument(rpc_span("CreateUser", "")).await.map(Response::new)
    }

    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let login = Login::parse(&req.login)?;
            let password_hash = hash_password(&self.shared, req.password).await?;
            let command = Command::SetPassword { domain: login.domain, login: login.local, password_hash };
            self.shared.write(command).await?;
            Ok(pb::SetPasswordResponse {})
        };
        observe("SetPassword", work).instrument(rpc_span("SetPassword", "")).await.map(Response::new)
    }

    async fn set_user_disabled(
        &self,
        request: Request<pb::SetUserDisabledRequest>,
    ) -> Result<Response<pb::SetUserDisabledResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let login = Login::parse(&req.login)?;
            let disabled = req.disabled;
            let command = Command::SetAccountDisabled { domain: login.domain, login: login.local, disabled };
            self.shared.write(command).await?;
            tracing::info!(disabled = req.disabled, "user disabled flag set");
            Ok(pb::SetUserDisabledResponse {})
        };
        observe("SetUserDisabled", work).instrument(rpc_span("SetUserDisabled", "")).await.map(Response::new)
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let login = Login::parse(&req.login)?;
            let d = delete_user(&self.shared, &login).await?;
            let (messages, mailboxes, steps) = (d.messages, d.mailboxes, d.steps);
            Ok(pb::DeleteUserResponse { account_ids: d.accounts, messages, mailboxes, steps })
        };
        observe("DeleteUser", work).instrument(rpc_span("DeleteUser", "")).await.map(Response::new)
    }

    async fn pending_deletions(
        &self,
        request: Request<pb::PendingDeletionsRequest>,
    ) -> Result<Response<pb::PendingDeletionsResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            pending_deletions(&self.shared).await
        };
        observe("PendingDeletions", work).instrument(rpc_span("PendingDeletions", "")).await.map(Response::new)
    }

    async fn rotate_session_key(
        &self,
        request: Request<pb::RotateSessionKeyRequest>,
    ) -> Result<Response<pb::RotateSessionKeyResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let grace_secs = req.has_grace.then_some(req.grace_secs);
            let (key_id, previous_valid_until_ms) = rotate_session_key(&self.shared, grace_secs).await?;
            Ok(pb::RotateSessionKeyResponse { key_id, previous_valid_until_ms })
        };
        observe("RotateSessionKey", work).instrument(rpc_span("RotateSessionKey", "")).await.map(Response::new)
    }

    async fn cluster_info(
        &self,
        request: Request<pb::ClusterInfoRequest>,
    ) -> Result<Response<pb::ClusterInfoResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::cluster_info(&self.shared, &self.network)
        };
        observe("ClusterInfo", work).instrument(rpc_span("ClusterInfo", "")).await.map(Response::new)
    }

    async fn add_node(&self, request: Request<pb::AddNodeRequest>) -> Result<Response<pb::AddNodeResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::add_node(&self.shared, &self.network, req.node_id, req.addr.trim(), req.learner_only).await
        };
        observe("AddNode", work).instrument(rpc_span("AddNode", "")).await.map(Response::new)
    }

    async fn promote_node(
        &self,
        request: Request<pb::PromoteNodeRequest>,
    ) -> Result<Response<pb::PromoteNodeResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::promote(&self.shared, req.node_id).await?;
            Ok(pb::PromoteNodeResponse {})
        };
        observe("PromoteNode", work).instrument(rpc_span("PromoteNode", "")).await.map(Response::new)
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::remove(&self.shared, &self.network, req.node_id, req.force).await?;
            Ok(pb::RemoveNodeResponse {})
        };
        observe("RemoveNode", work).instrument(rpc_span("RemoveNode", "")).await.map(Response::new)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            let leader_id = membership::transfer_leader(&self.shared, &self.network, req.node_id).await?;
            Ok(pb::TransferLeaderResponse { leader_id })
        };
        observe("TransferLeader", work).instrument(rpc_span("TransferLeader", "")).await.map(Response::new)
    }

    async fn trigger_election(
        &self,
        request: Request<pb::TriggerElectionRequest>,
    ) -> Result<Response<pb::TriggerElectionResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::elect_self(&self.shared.raft).await?;
            Ok(pb::TriggerElectionResponse {})
        };
        observe("TriggerElection", work).instrument(rpc_span("TriggerElection", "")).await.map(Response::new)
    }

    async fn set_feature_level(
        &self,
        request: Request<pb::SetFeatureLevelRequest>,
    ) -> Result<Response<pb::SetFeatureLevelResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            feature_level::set_feature_level(&self.shared, &self.network, req.level).await
        };
        observe("SetFeatureLevel", work).instrument(rpc_span("SetFeatureLevel", "")).await.map(Response::new)
    }

    async fn state_digest(
        &self,
        request: Request<pb::StateDigestRequest>,
    ) -> Result<Response<pb::StateDigestResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::state_digest(&self.shared).await
        };
        observe("StateDigest", work).instrument(rpc_span("StateDigest", "")).await.map(Response::new)
    }
}
