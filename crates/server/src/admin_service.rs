//! `mailraft.v1.Admin`: operator calls (tenants, users, passwords, cluster state and membership,
//! the latter in `membership.rs`).
//!
//! Like data writes, tenant and user changes are Raft entries proposed on the leader; password
//! hashes are computed here (argon2id, random salt, on the blocking pool) so that no plaintext
//! password ever enters the log. The Admin service has no authentication of its own: it must
//! only be reachable from the operator network (see the deployment notes).

use std::sync::Arc;

use mailraft_model::{Command, Outcome};
use mailraft_proto as pb;
use mailraft_proto::admin_server::Admin;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::ServerError;
use crate::mailboxes::unexpected;
use crate::membership;
use crate::metrics::{observe, rpc_span};
use crate::password::{self, Login};
use crate::shared::Shared;

/// Serves `mailraft.v1.Admin` for one group.
#[derive(Clone)]
pub struct AdminService {
    /// Raft and state view.
    shared: Arc<Shared>,
}

impl AdminService {
    /// Serves the node described by `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminService { shared }
    }
}

/// Hashes on the blocking pool: argon2 takes tens of milliseconds of CPU.
pub(crate) async fn hash_password(password: String) -> Result<String, ServerError> {
    tokio::task::spawn_blocking(move || password::hash(&password)).await?
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
    let password_hash = hash_password(password).await?;
    let command = Command::CreateAccount { domain: login.domain.clone(), login: login.local.clone(), password_hash };
    match shared.write(command).await? {
        Outcome::AccountCreated { tenant, account } => Ok((tenant, account)),
        other => Err(unexpected(other)),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
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
            let password_hash = hash_password(req.password).await?;
            let command = Command::SetPassword { domain: login.domain, login: login.local, password_hash };
            self.shared.write(command).await?;
            Ok(pb::SetPasswordResponse {})
        };
        observe("SetPassword", work).instrument(rpc_span("SetPassword", "")).await.map(Response::new)
    }

    async fn cluster_info(
        &self,
        request: Request<pb::ClusterInfoRequest>,
    ) -> Result<Response<pb::ClusterInfoResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::cluster_info(&self.shared)
        };
        observe("ClusterInfo", work).instrument(rpc_span("ClusterInfo", "")).await.map(Response::new)
    }

    async fn add_node(&self, request: Request<pb::AddNodeRequest>) -> Result<Response<pb::AddNodeResponse>, Status> {
        let req = request.into_inner();
        let work = async {
            self.shared.check_group(req.group_id)?;
            membership::add_node(&self.shared, req.node_id, req.addr.trim(), req.learner_only).await
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
            membership::remove(&self.shared, req.node_id, req.force).await?;
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
            let leader_id = membership::transfer_leader(&self.shared, req.node_id).await?;
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
            let m = self.shared.raft.metrics().borrow().clone();
            if !m.membership_config.membership().voter_ids().any(|id| id == self.shared.node_id) {
                return Err(ServerError::Membership(format!("node {} is not a voter", self.shared.node_id)));
            }
            tracing::info!("election requested by the leader (leadership transfer)");
            self.shared.raft.trigger().elect().await?;
            Ok(pb::TriggerElectionResponse {})
        };
        observe("TriggerElection", work).instrument(rpc_span("TriggerElection", "")).await.map(Response::new)
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
