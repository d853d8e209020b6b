//! `mailraft admin`: a thin client of the Admin gRPC service. Passwords come from stdin so they
//! never appear in the process list or shell history.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use mailraft_proto::admin_client::AdminClient;
use mailraft_proto::{ClusterInfoRequest, CreateTenantRequest, CreateUserRequest, SetPasswordRequest};

use crate::cli::{AdminAction, AdminArgs};

/// Runs one admin action and prints its result.
pub async fn run(args: AdminArgs) -> Result<()> {
    let mut client = AdminClient::connect(args.endpoint.clone())
        .await
        .with_context(|| format!("connect to {}", args.endpoint))?;
    let group_id = args.group;
    match args.action {
        AdminAction::CreateTenant { domain } => {
            let r = client.create_tenant(CreateTenantRequest { group_id, domain: domain.clone() }).await?;
            println!("tenant {domain} created (id {})", r.into_inner().tenant_id);
        }
        AdminAction::CreateUser { login } => {
            let password = read_password()?;
            let r = client.create_user(CreateUserRequest { group_id, login: login.clone(), password }).await?;
            println!("user {login} created (account id {})", r.into_inner().account_id);
        }
        AdminAction::SetPassword { login } => {
            let password = read_password()?;
            client.set_password(SetPasswordRequest { group_id, login: login.clone(), password }).await?;
            println!("password of {login} changed");
        }
        AdminAction::ClusterInfo => {
            let info = client.cluster_info(ClusterInfoRequest { group_id }).await?.into_inner();
            println!("node {} leader {} ({}) last_applied {}", info.node_id, info.leader_id, info.leader_addr, info.last_applied);
            println!("{}", info.raft_metrics_json);
        }
    }
    Ok(())
}

/// First line of stdin, without its line ending.
fn read_password() -> Result<String> {
    eprintln!("password (read from stdin):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("read password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}
