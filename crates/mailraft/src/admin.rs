//! `mailraft admin`: a thin client of the Admin gRPC service. Passwords come from stdin or a
//! file (`--password-file`, e.g. a mounted Kubernetes Secret; `password.rs`) so they never
//! appear in the process list or shell history.
//!
//! `create-tenant` and `create-user` take `--if-not-exists`: an existing tenant or user is then
//! success (exit 0, "already exists, left unchanged"), so Helm hooks and compose jobs can run
//! them on every start. `health` (`health.rs`) checks the whole group for scripts and probes.
//!
//! Writes and membership changes must run on the leader. Any node answers `NOT_LEADER` with the
//! leader's admin address (`mailraft-leader` metadata); the client follows that hint a few times,
//! so an operator can point `--endpoint` at any member's admin listener.
//!
//! The admin listener takes operator certificates only: the client presents the one from
//! `--tls-dir` (or `--ca/--cert/--key`) and verifies the node against the cluster CA.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mailraft_proto as pb;
use mailraft_proto::admin_client::AdminClient;
use mailraft_server::TlsBundle;
use tonic::transport::Channel;

use crate::cli::{AdminAction, AdminArgs};

mod backup_retention;
mod health;
mod password;

/// How many NOT_LEADER hints one command follows before giving up.
const MAX_HINTS: usize = 3;
/// Connecting to a node may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one admin action and prints its result.
pub async fn run(args: AdminArgs) -> Result<()> {
    let files = match (&args.ca, &args.cert, &args.key) {
        (Some(ca), Some(cert), Some(key)) => Some((ca.as_path(), cert.as_path(), key.as_path())),
        _ => None,
    };
    let tls = crate::tls::admin_client(files, args.tls_dir.as_deref(), &args.tls_name)?;
    let admin = Admin { endpoint: args.endpoint.clone(), tls };
    let group_id = args.group;
    match args.action {
        AdminAction::CreateTenant { domain, if_not_exists } => {
            let r = admin
                .try_call(|mut c| {
                    let req = pb::CreateTenantRequest { group_id, domain: domain.clone() };
                    async move { c.create_tenant(req).await }
                })
                .await?;
            match existing(r, if_not_exists)? {
                Some(r) => println!("tenant {domain} created (id {})", r.tenant_id),
                None => println!("tenant {domain} already exists, left unchanged"),
            }
        }
        AdminAction::CreateUser { login, password_file, if_not_exists } => {
            let password = password::read(password_file.as_deref())?;
            let l = login.clone();
            let r = admin
                .try_call(|mut c| {
                    let req = pb::CreateUserRequest { group_id, login: l.clone(), password: password.clone() };
                    async move { c.create_user(req).await }
                })
                .await?;
            match existing(r, if_not_exists)? {
                Some(r) => println!("user {login} created (account id {})", r.account_id),
                // Its password is NOT changed: a re-run must not undo a later `set-password`.
                None => println!("user {login} already exists, left unchanged (its password too)"),
            }
        }
        AdminAction::SetPassword { login, password_file } => {
            let password = password::read(password_file.as_deref())?;
            let l = login.clone();
            admin
                .call(|mut c| {
                    let req = pb::SetPasswordRequest { group_id, login: l.clone(), password: password.clone() };
                    async move { c.set_password(req).await }
                })
                .await?;
            println!("password of {login} changed; its sessions are ended");
        }
        AdminAction::DisableUser { login } => {
            set_disabled(&admin, group_id, &login, true).await?;
            println!("user {login} disabled; its sessions are ended");
        }
        AdminAction::EnableUser { login } => {
            set_disabled(&admin, group_id, &login, false).await?;
            println!("user {login} enabled");
        }
        AdminAction::DeleteUser { login } => {
            let l = login.clone();
            let r = admin
                .call(|mut c| {
                    let req = pb::DeleteUserRequest { group_id, login: l.clone() };
                    async move { c.delete_user(req).await }
                })
                .await?;
            let ids: Vec<String> = r.account_ids.iter().map(u64::to_string).collect();
            println!(
                "user {login} deleted (account id {}); its sessions are ended; removed {} messages in {} mailboxes \
                 ({} replicated steps)",
                ids.join(", "),
                r.messages,
                r.mailboxes,
                r.steps
            );
        }
        AdminAction::PendingDeletions => {
            let r = admin
                .call(|mut c| async move { c.pending_deletions(pb::PendingDeletionsRequest { group_id }).await })
                .await?;
            for d in &r.deletions {
                println!("{}\t{}\t{}", d.login, d.account_id, rfc3339_utc(d.deleted_ms));
            }
            if r.deletions.is_empty() {
                eprintln!("no unfinished deletions");
            }
        }
        AdminAction::RotateSessionKey { grace_secs } => {
            let r = admin
                .call(|mut c| {
                    let req = pb::RotateSessionKeyRequest {
                        group_id,
                        grace_secs: grace_secs.unwrap_or(0),
                        has_grace: grace_secs.is_some(),
                    };
                    async move { c.rotate_session_key(req).await }
                })
                .await?;
            println!(
                "session key {} installed; tokens signed with the previous key are accepted until unix time {} ms",
                r.key_id, r.previous_valid_until_ms
            );
        }
        AdminAction::SetFeatureLevel { level } => {
            // The leader asks every member; `call` follows NOT_LEADER there.
            let r = admin
                .call(|mut c| async move { c.set_feature_level(pb::SetFeatureLevelRequest { group_id, level }).await })
                .await?;
            println!("{}", level_set_message(level, &r));
        }
        AdminAction::ClusterInfo { json } => {
            // Deliberately not forwarded: an operator asks a node for its own view (a partitioned
            // node's answer is exactly what they need to see).
            let mut client = connect(&admin.endpoint, admin.tls.as_ref()).await?;
            let info = client.cluster_info(pb::ClusterInfoRequest { group_id }).await?.into_inner();
            if json {
                println!("{}", info_json(&info));
            } else {
                print_info(&info);
            }
        }
        AdminAction::Health { json, max_lag } => {
            health::run(&admin, group_id, json, max_lag).await?;
        }
        AdminAction::StateDigest => {
            // Like cluster-info, a question for this very node.
            let mut client = connect(&admin.endpoint, admin.tls.as_ref()).await?;
            let d = client.state_digest(pb::StateDigestRequest { group_id }).await?.into_inner();
            let hex: String = d.sha256.iter().map(|b| format!("{b:02x}")).collect();
            println!("{}", serde_json::json!({"applied_index": d.applied_index, "sha256": hex, "entries": d.entries}));
        }
        AdminAction::AddNode { id, addr, learner_only } => {
            eprintln!("adding node {id} at {addr}; waiting until it has caught up (this can take a while)...");
            let a = addr.clone();
            let r = admin
                .call(|mut c| {
                    let req = pb::AddNodeRequest { group_id, node_id: id, addr: a.clone(), learner_only };
                    async move { c.add_node(req).await }
                })
                .await?;
            let role = if r.promoted { "voter" } else { "learner" };
            println!("node {id} added as {role} (caught up at log index {})", r.caught_up_index);
        }
        AdminAction::Promote { id } => {
            admin.call(|mut c| async move { c.promote_node(pb::PromoteNodeRequest { group_id, node_id: id }).await }).await?;
            println!("node {id} is now a voter");
        }
        AdminAction::RemoveNode { id, force } => {
            admin
                .call(|mut c| async move { c.remove_node(pb::RemoveNodeRequest { group_id, node_id: id, force }).await })
                .await?;
            println!("node {id} removed; do not reuse its id, and wipe its data directory before reusing the machine");
        }
        AdminAction::Backup { file, force, dir, keep } => {
            // With --dir the name is stamped now; `force` is off (clap refuses it with --dir), so
            // a second backup in the same second fails instead of replacing the first.
            let (path, force) = match (&file, &dir) {
                (Some(file), _) => (file.clone(), force),
                (None, Some(dir)) => (dir.join(backup_retention::backup_name(chrono::Utc::now())), false),
                (None, None) => bail!("give FILE, or --dir DIR --keep N"),
            };
            // The snapshot is built and streamed by the leader: `call` follows NOT_LEADER there.
            let stream = admin.call(|mut c| async move { c.backup(pb::BackupRequest { group_id }).await }).await?;
            let w = crate::backup::write(stream, &path, force).await?;
            let h = &w.header;
            println!(
                "backup of cluster {:016x} up to log index {} (term {}) written to {}: {} bytes, sha256 {}",
                h.cluster_id,
                h.last_log_index,
                h.last_log_term,
                path.display(),
                h.size,
                w.sha256
            );
            // Only now, with the new backup complete and verified, may old ones go.
            if let (Some(dir), Some(keep)) = (&dir, keep) {
                let current = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let pruned = backup_retention::prune(dir, keep, &current)?;
                for p in &pruned {
                    println!("pruned {}", p.display());
                }
                println!("{} old backups pruned from {} (keeping up to {keep})", pruned.len(), dir.display());
            }
        }
        AdminAction::TransferLeader { id } => {
            let r = admin
                .call(|mut c| async move { c.transfer_leader(pb::TransferLeaderRequest { group_id, node_id: id }).await })
                .await?;
            println!("leader is now node {}", r.leader_id);
        }
        AdminAction::AuthBlocks { json } => {
            // The table lives on the leader: `call` follows the NOT_LEADER hint there.
            let r = admin.call(|mut c| async move { c.auth_blocks(pb::AuthBlocksRequest { group_id }).await }).await?;
            for b in &r.blocks {
                if json {
                    let line = serde_json::json!({"kind": b.kind, "key": b.key, "failures": b.failures, "until_ms": b.until_ms});
                    println!("{line}");
                } else {
                    println!("{}\t{}\t{}\t{}", b.kind, b.key, b.failures, rfc3339_utc(b.until_ms));
                }
            }
            if r.blocks.is_empty() && !json {
                eprintln!("no blocks");
            }
        }
        AdminAction::AuthUnblock { key, all } => {
            let key = key.unwrap_or_default();
            let k = key.clone();
            let r = admin
                .call(|mut c| {
                    let req = pb::AuthUnblockRequest { group_id, key: k.clone(), all };
                    async move { c.auth_unblock(req).await }
                })
                .await?;
            if all {
                println!("lifted {} records", r.lifted);
            } else if r.lifted == 0 {
                bail!("{key} is not blocked and has no failures on record");
            } else {
                println!("{key} unblocked");
            }
        }
    }
    Ok(())
}

/// With `if_not_exists`, ALREADY_EXISTS becomes `Ok(None)`; every other error stays an error.
fn existing<T>(result: Result<T, tonic::Status>, if_not_exists: bool) -> Result<Option<T>> {
    match result {
        Ok(r) => Ok(Some(r)),
        Err(status) if if_not_exists && status.code() == tonic::Code::AlreadyExists => Ok(None),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            bail!("{} (add --if-not-exists to accept an existing one)", describe(&status))
        }
        Err(status) => bail!("{}", describe(&status)),
    }
}

/// `until_ms` (Unix milliseconds) as RFC 3339 in UTC.
fn rfc3339_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Disables or enables `login` (SetUserDisabled, sent to the leader).
async fn set_disabled(admin: &Admin, group_id: u64, login: &str, disabled: bool) -> Result<()> {
    admin
        .call(|mut c| {
            let req = pb::SetUserDisabledRequest { group_id, login: login.to_owned(), disabled };
            async move { c.set_user_disabled(req).await }
        })
        .await?;
    Ok(())
}

/// Where to send calls; follows NOT_LEADER hints.
struct Admin {
    endpoint: String,
    /// The operator certificate; `None` talks plaintext (a loopback dev node without TLS).
    tls: Option<TlsBundle>,
}

impl Admin {
    /// Runs `call` against the endpoint, then against the leader each NOT_LEADER names.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.try_call(call).await?.map_err(|status| anyhow::anyhow!("{}", describe(&status)))
    }

    /// [`Admin::call`], handing back the final status (after the hints) for the caller to
    /// interpret; the outer error is a connection failure or too many hints.
    async fn try_call<T, F, Fut>(&self, mut call: F) -> Result<Result<T, tonic::Status>>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut target = self.endpoint.clone();
        for _ in 0..=MAX_HINTS {
            let client = connect(&target, self.tls.as_ref()).await?;
            match call(client).await {
                Ok(resp) => return Ok(Ok(resp.into_inner())),
                Err(status) => {
                    let hint = status.metadata().get("mailraft-leader").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    match hint {
                        Some(leader) if leader != target => {
                            eprintln!("{target} is not the leader; sending to {leader}");
                            target = leader;
                        }
                        _ => return Ok(Err(status)),
                    }
                }
            }
        }
        bail!("no leader found after following {MAX_HINTS} hints")
    }
}

/// A status as an operator should read it.
fn describe(status: &tonic::Status) -> String {
    let code = status.metadata().get("mailraft-code").and_then(|v| v.to_str().ok()).unwrap_or("");
    match code {
        "NOT_LEADER" => "no leader is known right now (election in progress, or no quorum); try again".into(),
        "" => format!("{:?}: {}", status.code(), status.message()),
        code => format!("{code}: {}", status.message()),
    }
}

async fn connect(endpoint: &str, tls: Option<&TlsBundle>) -> Result<AdminClient<Channel>> {
    let endpoint_config = mailraft_server::tls::endpoint(endpoint, tls).map_err(|e| match tls {
        None => anyhow::anyhow!("{e}; give the operator certificate with --tls-dir DIR (`mailraft dev`: <data-dir>/certs)"),
        Some(_) => anyhow::anyhow!("{e}"),
    })?;
    let channel = endpoint_config
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connect to {endpoint}"))?;
    Ok(AdminClient::new(channel))
}

/// What `set-feature-level N` tells the operator. `previous` is the level just before this
/// request's entry was applied, so an unchanged level does not say who raised it: a retry whose
/// first attempt was applied (its answer lost) sees that raise as `previous`. The result is
/// stated, not explained.
fn level_set_message(requested: u32, r: &pb::SetFeatureLevelResponse) -> String {
    if r.level > r.previous {
        format!("feature level raised from {} to {}", r.previous, r.level)
    } else if r.level > requested {
        format!("cluster is at feature level {}, above {requested} (levels never go down)", r.level)
    } else {
        format!("cluster is at feature level {}", r.level)
    }
}

/// The cluster's feature level as reported, `None` when the node could not read it: levels
/// start at 1, and a node whose stored level does not decode answers 0 so that the rest of
/// cluster-info still reaches the operator diagnosing it.
fn reported_level(info: &pb::ClusterInfoResponse) -> Option<u32> {
    (info.feature_level != 0).then_some(info.feature_level)
}

/// The `features` line of [`print_info`].
fn features_line(info: &pb::ClusterInfoResponse) -> String {
    let level = reported_level(info).map_or_else(|| "unknown (unreadable on this node, or a node older than feature levels)".to_string(), |l| l.to_string());
    format!("features  level {level} (this node's binary knows up to {})", info.known_feature_level)
}

fn info_json(info: &pb::ClusterInfoResponse) -> String {
    let members: Vec<serde_json::Value> = info
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "node_id": m.node_id, "addr": m.addr, "admin_addr": m.admin_addr, "role": m.role,
                "has_matched": m.has_matched, "matched_index": m.matched_index, "lag": m.lag,
            })
        })
        .collect();
    serde_json::json!({
        "node_id": info.node_id,
        "leader_id": info.leader_id,
        "leader_addr": info.leader_addr,
        "leader_admin_addr": info.leader_admin_addr,
        "term": info.term,
        "last_log_index": info.last_log_index,
        "last_applied": info.last_applied,
        "snapshot_index": info.snapshot_index,
        "cluster_id": format!("{:016x}", info.cluster_id),
        "state": info.state,
        "feature_level": reported_level(info),
        "known_feature_level": info.known_feature_level,
        "members": members,
    })
    .to_string()
}

fn print_info(info: &pb::ClusterInfoResponse) {
    println!("cluster   {:016x}", info.cluster_id);
    println!("node      {} ({})", info.node_id, info.state);
    let leader = match (info.leader_id, info.leader_admin_addr.as_str()) {
        (0, _) => "none known".to_string(),
        (id, "") => format!("{id} {}", info.leader_addr),
        (id, admin) => format!("{id} {} (admin {admin})", info.leader_addr),
    };
    println!("leader    {leader}");
    println!("term      {}", info.term);
    println!("log       last {} applied {} snapshot {}", info.last_log_index, info.last_applied, info.snapshot_index);
    println!("{}", features_line(info));
    println!();
    println!("{:<6} {:<8} {:<34} {:>10} {:>8}", "id", "role", "address", "matched", "lag");
    for m in &info.members {
        let (matched, lag) = if m.has_matched {
            (m.matched_index.to_string(), m.lag.to_string())
        } else if info.state == "leader" && m.node_id == info.node_id {
            ("(leader)".to_string(), "0".to_string())
        } else {
            ("-".to_string(), "-".to_string())
        };
        println!("{:<6} {:<8} {:<34} {:>10} {:>8}", m.node_id, m.role, m.addr, matched, lag);
    }
    if info.state != "leader" {
        println!("(replication progress is known only on the leader)");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn answer(previous: u32, level: u32) -> pb::SetFeatureLevelResponse {
        pb::SetFeatureLevelResponse { previous, level }
    }

    #[test]
    fn an_unchanged_level_is_stated_without_claiming_nothing_happened() {
        // A retry whose first attempt raised the level gets previous == level: the message must
        // fit that case as well as a request that really changed nothing.
        assert_eq!(level_set_message(3, &answer(3, 3)), "cluster is at feature level 3");
        assert_eq!(level_set_message(3, &answer(2, 3)), "feature level raised from 2 to 3");
        assert_eq!(
            level_set_message(2, &answer(3, 3)),
            "cluster is at feature level 3, above 2 (levels never go down)"
        );
    }

    #[test]
    fn an_unreadable_level_is_shown_as_such_not_as_level_0() {
        let mut info = pb::ClusterInfoResponse { feature_level: 0, known_feature_level: 2, ..Default::default() };
        let json: serde_json::Value = serde_json::from_str(&info_json(&info)).unwrap();
        assert_eq!(json["feature_level"], serde_json::Value::Null);
        assert_eq!(json["known_feature_level"], 2);
        assert_eq!(
            features_line(&info),
            "features  level unknown (unreadable on this node, or a node older than feature levels) (this node's binary knows up to 2)"
        );
        info.feature_level = 2;
        let json: serde_json::Value = serde_json::from_str(&info_json(&info)).unwrap();
        assert_eq!(json["feature_level"], 2);
        assert_eq!(features_line(&info), "features  level 2 (this node's binary knows up to 2)");
    }
}
