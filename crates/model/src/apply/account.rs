//! Cluster, tenant and account commands: Init, CreateTenant, CreateAccount, SetPassword.

use super::Txn;
use crate::access::get_id;
use crate::command::{ModelError, Outcome, Principal, Reply};
use crate::keys;
use crate::kv::{KvRead, Table};
use crate::names::INBOX;
use crate::query::{self, fold};
use crate::records::{Account, Tenant};

/// Longest domain (RFC 1035 §2.3.4) and login accepted.
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LOGIN_LEN: usize = 255;

fn check_text(what: &str, s: &str, max: usize) -> Result<(), ModelError> {
    if s.is_empty() || s.len() > max || s.chars().any(|c| c.is_control() || c.is_whitespace() || c == '@') {
        return Err(ModelError::Invalid(what.to_string()));
    }
    Ok(())
}

/// Installs the session key once; later `Init`s (a re-bootstrapped proposer) are no-ops so the
/// key, and every token signed with it, stays valid.
pub(super) fn init(txn: &mut Txn<'_>, session_key: &[u8]) -> Reply {
    if session_key.is_empty() {
        return Err(ModelError::Invalid("empty session key".into()));
    }
    if txn.get(Table::Meta, keys::META_SESSION_KEY).is_none() {
        txn.put_raw(Table::Meta, keys::META_SESSION_KEY.to_vec(), session_key.to_vec());
    }
    Ok(Outcome::Done)
}

pub(super) fn create_tenant(txn: &mut Txn<'_>, domain: &str) -> Reply {
    let domain = fold(domain);
    check_text("domain", &domain, MAX_DOMAIN_LEN)?;
    if txn.get(Table::TenantByDomain, &keys::tenant_by_domain(&domain)).is_some() {
        return Err(ModelError::AlreadyExists(format!("tenant {domain}")));
    }
    let id = txn.alloc_id()?;
    txn.put_raw(Table::TenantByDomain, keys::tenant_by_domain(&domain), keys::id_value(id));
    txn.put(Table::Tenants, keys::tenant(id), &Tenant { id, domain, quota_bytes: None, used_bytes: 0 });
    Ok(Outcome::TenantCreated { tenant: id })
}

/// Creates the account and its INBOX (every account has one; it cannot be deleted).
pub(super) fn create_account(txn: &mut Txn<'_>, domain: &str, login: &str, password_hash: &str) -> Reply {
    let tenant = query::tenant_by_domain(txn, domain)?;
    let login = fold(login);
    check_text("login", &login, MAX_LOGIN_LEN)?;
    if txn.get(Table::AccountByLogin, &keys::account_by_login(tenant.id, &login)).is_some() {
        return Err(ModelError::AlreadyExists(format!("account {login}")));
    }
    let id = txn.alloc_id()?;
    txn.put_raw(Table::AccountByLogin, keys::account_by_login(tenant.id, &login), keys::id_value(id));
    let account = Account {
        id,
        tenant: tenant.id,
        login,
        password_hash: password_hash.to_string(),
        quota_bytes: None,
        used_bytes: 0,
    };
    txn.put(Table::Accounts, keys::account(tenant.id, id), &account);
    txn.new_mailbox(Principal { tenant: tenant.id, account: id }, INBOX, None)?;
    Ok(Outcome::AccountCreated { tenant: tenant.id, account: id })
}

pub(super) fn set_password(txn: &mut Txn<'_>, domain: &str, login: &str, password_hash: &str) -> Reply {
    let tenant = query::tenant_by_domain(txn, domain)?;
    let login = fold(login);
    let id = get_id(txn, Table::AccountByLogin, &keys::account_by_login(tenant.id, &login))?
        .ok_or_else(|| ModelError::NotFound(format!("account {login}")))?;
    let who = Principal { tenant: tenant.id, account: id };
    let mut account = txn.load_account(who)?;
    account.password_hash = password_hash.to_string();
    txn.put(Table::Accounts, keys::account(tenant.id, id), &account);
    Ok(Outcome::Done)
}
