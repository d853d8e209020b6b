//! Per-connection IMAP session state (RFC 3501 §3) and the one gate deciding which commands a
//! state accepts.
//!
//! ```text
//!   NotAuthenticated --LOGIN/AUTHENTICATE--> Authenticated <--CLOSE/UNSELECT-- Selected
//!                                              \--SELECT/EXAMINE--> Selected --SELECT--> Selected
//!   any state --LOGOUT / BYE--> Logout
//! ```
//! The state carries exactly what is valid in it: the logged-in [`User`] exists from
//! `Authenticated` on, the [`Selected`] mailbox view only in `Selected`, so handlers receive
//! what they need instead of unwrapping optional fields.

pub mod lifetime;
pub mod selected;
pub mod updates;

use imap_codec::imap_types::command::CommandBody;
use mailraft_proto as proto;

pub use lifetime::TokenLifetime;
pub use selected::{Selected, Update};

/// The account a session acts as.
#[derive(Clone)]
pub struct User {
    /// Canonical login (`user@domain`).
    pub login: String,
    /// Tenant (domain) id, for routing watch events and logs.
    pub tenant_id: u64,
    /// Account id within the tenant.
    pub account_id: u64,
    /// Context sent with every storage call (carries the session token).
    pub ctx: proto::Context,
    /// When the token must be renewed (see [`lifetime`]).
    pub lifetime: TokenLifetime,
}

/// Hand-written so the session token, a bearer credential, never reaches a log line.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ctx = &self.ctx;
        let token = if ctx.token.is_empty() { "<none>" } else { "<redacted>" };
        f.debug_struct("User")
            .field("login", &self.login)
            .field("tenant_id", &self.tenant_id)
            .field("account_id", &self.account_id)
            .field("group_id", &ctx.group_id)
            .field("session_id", &ctx.session_id)
            .field("token", &token)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl User {
    /// The user a successful `Authenticate` describes; `ctx` carries its token.
    pub fn authenticated(ctx: proto::Context, response: &proto::AuthenticateResponse) -> Self {
        Self {
            login: response.login.clone(),
            tenant_id: response.tenant_id,
            account_id: response.account_id,
            ctx,
            lifetime: TokenLifetime::new(response.ttl_ms),
        }
    }
}

/// RFC 3501 §3 connection states.
#[derive(Debug)]
pub enum State {
    /// Before LOGIN/AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated(User),
    /// Logged in with a mailbox selected.
    Selected(User, Box<Selected>),
    /// LOGOUT or BYE: the connection is closing.
    Logout,
}

/// The gate's verdict for a command in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Run it.
    Allowed,
    /// Valid IMAP, but not in this state; the text says why.
    WrongState(&'static str),
    /// An extension command this server does not implement (and does not advertise).
    Unsupported,
}

/// Everything a connection remembers about its client.
#[derive(Debug)]
pub struct Session {
    /// Correlates logs of this connection with the storage tier.
    pub id: String,
    /// RFC 3501 state.
    pub state: State,
    /// Failed LOGIN/AUTHENTICATE attempts so far.
    pub auth_failures: u32,
    /// Whether the stream is TLS (implicit or after STARTTLS).
    pub tls: bool,
    /// Whether STARTTLS can be offered on this connection now.
    pub starttls_available: bool,
    /// Whether LOGIN/AUTHENTICATE may run over cleartext.
    pub allow_plaintext_auth: bool,
    /// Wakes the session when its account's credentials change (from login on).
    pub revocations: Option<crate::watch::Subscription>,
    /// The client's address, sent with LOGIN/AUTHENTICATE for the storage tier's per-source
    /// failure budget; `None` when unknown (tests).
    pub peer: Option<std::net::IpAddr>,
    /// RFC 7162 §3.1: the client issued a CONDSTORE enabling command, so until the connection
    /// closes every untagged FETCH carries MODSEQ and SELECT/EXAMINE report HIGHESTMODSEQ. Off
    /// by default because clients that never asked for it may not parse those additions.
    pub condstore: bool,
}

impl Session {
    /// A fresh session in the not-authenticated state.
    pub fn new(id: String, tls: bool, starttls_available: bool, allow_plaintext_auth: bool) -> Self {
        Self {
            id,
            state: State::NotAuthenticated,
            auth_failures: 0,
            tls,
            starttls_available: starttls_available && !tls,
            allow_plaintext_auth,
            revocations: None,
            peer: None,
            condstore: false,
        }
    }

    /// Whether LOGIN and AUTHENTICATE are refused here (RFC 3501 §6.2.3 LOGINDISABLED).
    pub fn login_disabled(&self) -> bool {
        !self.tls && !self.allow_plaintext_auth
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&User> {
        match &self.state {
            State::Authenticated(user) | State::Selected(user, _) => Some(user),
            State::NotAuthenticated | State::Logout => None,
        }
    }

    /// The logged-in user, mutably (token refresh).
    pub fn user_mut(&mut self) -> Option<&mut User> {
        match &mut self.state {
            State::Authenticated(user) | State::Selected(user, _) => Some(user),
            State::NotAuthenticated | State::Logout => None,
        }
    }

    /// The selected mailbox, if any.
    pub fn selected(&self) -> Option<&Selected> {
        match &self.state {
            State::Selected(_, selected) => Some(selected),
            _ => None,
        }
    }

    /// The selected mailbox, mutably.
    pub fn selected_mut(&mut self) -> Option<&mut Selected> {
        match &mut self.state {
            State::Selected(_, selected) => Some(selected),
            _ => None,
        }
    }

    /// The user and the selected mailbox together (both needed by most selected-state commands).
    pub fn user_and_selected(&mut self) -> Option<(&User, &mut Selected)> {
        match &mut self.state {
            State::Selected(user, selected) => Some((user, selected)),
            _ => None,
        }
    }

    /// Enters the authenticated state.
    pub fn login(&mut self, user: User) {
        self.state = State::Authenticated(user);
    }

    /// Leaves the selected state (CLOSE, UNSELECT, failed SELECT); returns the old view.
    pub fn deselect(&mut self) -> Option<Selected> {
        match std::mem::replace(&mut self.state, State::Logout) {
            State::Selected(user, selected) => {
                self.state = State::Authenticated(user);
                Some(*selected)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Enters the selected state (from authenticated or selected).
    pub fn select(&mut self, selected: Selected) {
        self.state = match std::mem::replace(&mut self.state, State::Logout) {
            State::Authenticated(user) | State::Selected(user, _) => {
                State::Selected(user, Box::new(selected))
            }
            other => other,
        };
    }

    /// Whether `body` may run in the current state (RFC 3501 §6.1–§6.4).
    pub fn is_allowed(&self, body: &CommandBody<'_>) -> Gate {
        use CommandBody as C;
        let authenticated = matches!(self.state, State::Authenticated(_) | State::Selected(..));
        let selected = matches!(self.state, State::Selected(..));
        match body {
            // §6.1: any state.
            C::Capability | C::Noop | C::Logout | C::Id { .. } => Gate::Allowed,
            // §6.2: not authenticated only.
            C::StartTLS | C::Authenticate { .. } | C::Login { .. } => {
                if authenticated {
                    Gate::WrongState("already authenticated")
                } else {
                    Gate::Allowed
                }
            }
            // §6.3: authenticated or selected.
            C::Select { .. }
            | C::Examine { .. }
            | C::Create { .. }
            | C::Delete { .. }
            | C::Rename { .. }
            | C::Subscribe { .. }
            | C::Unsubscribe { .. }
            | C::List { .. }
            | C::Lsub { .. }
            | C::Status { .. }
            | C::Append { .. }
            | C::Idle
            | C::Enable { .. }
            | C::Namespace => {
                if authenticated {
                    Gate::Allowed
                } else {
                    Gate::WrongState("log in first")
                }
            }
            // §6.4: selected only.
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::ExpungeUid { .. }
            | C::Search { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. } => {
                if selected {
                    Gate::Allowed
                } else if authenticated {
                    Gate::WrongState("no mailbox selected")
                } else {
                    Gate::WrongState("log in first")
                }
            }
            _ => Gate::Unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            login: "a@b".into(),
            tenant_id: 1,
            account_id: 2,
            ctx: proto::Context::default(),
            lifetime: TokenLifetime::new(0),
        }
    }

    #[test]
    fn gate_follows_rfc3501_states() {
        let mut session = Session::new("s".into(), false, true, true);
        assert_eq!(session.is_allowed(&CommandBody::Noop), Gate::Allowed);
        assert_eq!(session.is_allowed(&CommandBody::Check), Gate::WrongState("log in first"));
        assert_eq!(session.is_allowed(&CommandBody::StartTLS), Gate::Allowed);
        session.login(user());
        assert_eq!(session.is_allowed(&CommandBody::StartTLS), Gate::WrongState("already authenticated"));
        assert_eq!(session.is_allowed(&CommandBody::Check), Gate::WrongState("no mailbox selected"));
        assert_eq!(session.is_allowed(&CommandBody::Idle), Gate::Allowed);
    }

    #[test]
    fn select_and_deselect_keep_the_user() {
        let mut session = Session::new("s".into(), true, false, false);
        assert!(!session.login_disabled());
        session.login(user());
        session.select(Selected::new("INBOX".into(), &proto::SelectResponse::default(), false));
        assert!(session.selected().is_some());
        assert!(session.deselect().is_some());
        assert_eq!(session.user().map(|u| u.account_id), Some(2));
        assert!(session.deselect().is_none());
    }

    #[test]
    fn cleartext_without_permission_disables_login() {
        let session = Session::new("s".into(), false, true, false);
        assert!(session.login_disabled());
    }

    #[test]
    fn debug_redacts_the_session_token() {
        let ctx = proto::Context { token: b"secret-token-bytes".to_vec(), ..Default::default() };
        let user = User::authenticated(ctx, &proto::AuthenticateResponse::default());
        let shown = format!("{user:?}");
        assert!(!shown.contains("secret") && !shown.contains("115, 101, 99"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
