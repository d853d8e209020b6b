//! IMAP command handlers, one file per command, and the single dispatch `match`.
//!
//! A handler gets a [`Ctx`] (process-wide services, the session, the output buffer) and the
//! decoded command arguments. It writes untagged responses to `ctx.out` and returns the tagged
//! [`Reply`]; errors are returned as [`FrontendError`] and turned into `NO`/`BAD` with a
//! response code in one place ([`FrontendError::to_imap`]). The connection loop owns everything
//! around a handler: the state gate, unsolicited updates before the tagged reply, metrics, and
//! the follow-up a reply asks for ([`Next`]: IDLE, the SASL exchange, STARTTLS, closing).

pub mod append;
pub mod authenticate;
pub mod capability;
pub mod check;
pub mod close;
pub mod condstore;
pub mod copy;
pub mod create;
pub mod delete;
pub mod enable;
pub mod expunge;
pub mod fetch;
pub mod id;
pub mod idle;
pub mod list;
pub mod login;
pub mod logout;
pub mod lsub;
pub mod r#move;
pub mod namespace;
pub mod noop;
pub mod rename;
pub mod search;
pub mod select;
pub mod starttls;
pub mod status;
pub mod store;
pub mod subscribe;
pub mod unselect;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::response::{Code, StatusKind};

use crate::config::FrontendConfig;
use crate::error::FrontendError;
use crate::io::ImapStream;
use crate::response::Out;
use crate::session::{Selected, Session, User};
use crate::storage::Storage;
use crate::watch::WatchHub;

/// Services shared by every connection of a server.
#[derive(Debug)]
pub struct Shared {
    /// Limits and timeouts.
    pub config: FrontendConfig,
    /// The storage tier.
    pub storage: Storage,
    /// Change notifications for IDLE.
    pub watch: WatchHub,
}

/// What a handler works with.
pub struct Ctx<'a> {
    /// Process-wide services.
    pub shared: &'a Shared,
    /// This connection's session.
    pub session: &'a mut Session,
    /// Pending output.
    pub out: &'a mut Out,
    /// The socket, for flushing large outputs (FETCH) before the command ends.
    pub io: &'a mut ImapStream,
    /// Set when a mid-command flush failed: the client is gone, stop working for it.
    pub broken: bool,
    /// LIST-EXTENDED options of this command (RFC 5258 §3), which imap-codec does not parse
    /// (see `list.rs`); the default for every other command.
    pub list_options: list::ListOptions,
}

/// Output beyond which a handler flushes mid-command, bounding memory per connection.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// Writes buffered output if it is large (FETCH of many or big messages). Takes the `Ctx`
/// fields separately so a handler can call it while holding the selected mailbox.
pub async fn flush_if_large(out: &mut Out, io: &mut ImapStream, broken: &mut bool) {
    if out.len() >= FLUSH_THRESHOLD
        && !*broken
        && let Err(error) = out.flush_to(io).await
    {
        tracing::debug!(%error, "client write failed during command");
        *broken = true;
    }
}

impl Ctx<'_> {
    /// The logged-in user; handlers only run after the state gate, so absence is a bug that
    /// we report instead of panicking.
    pub fn user(&self) -> Result<&User, FrontendError> {
        self.session.user().ok_or_else(|| FrontendError::BadArguments("log in first".into()))
    }

}

/// The user and the selected mailbox of `session`. A free function over the `session` field
/// only, so handlers can keep writing to `ctx.out` while holding the result.
pub fn selected(session: &mut Session) -> Result<(&User, &mut Selected), FrontendError> {
    session.user_and_selected().ok_or_else(|| FrontendError::BadArguments("no mailbox selected".into()))
}

/// What the connection does after writing the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Close the connection (LOGOUT).
    Close,
    /// Write `* BYE text` after the reply and close (too many failed logins).
    Bye(&'static str),
    /// Start the TLS handshake (STARTTLS); input buffered before it is discarded.
    StartTls,
    /// Enter IDLE (RFC 2177); the reply is written when the client sends DONE.
    Idle,
    /// Ask for the SASL response (AUTHENTICATE without initial response); the reply follows it.
    Sasl,
}

/// The tagged completion of a command.
#[derive(Debug, Clone)]
pub struct Reply {
    /// OK, NO or BAD.
    pub kind: StatusKind,
    /// Response code, e.g. `[APPENDUID ...]`.
    pub code: Option<Code<'static>>,
    /// Human-readable text.
    pub text: String,
    /// Follow-up action.
    pub next: Next,
}

impl Reply {
    /// `OK text`.
    pub fn ok(text: &str) -> Self {
        Self { kind: StatusKind::Ok, code: None, text: text.to_owned(), next: Next::Continue }
    }

    /// `OK [code] text`.
    pub fn ok_code(code: Option<Code<'static>>, text: &str) -> Self {
        Self { code, ..Self::ok(text) }
    }

    /// `NO [code] text`.
    pub fn no(code: Option<Code<'static>>, text: &str) -> Self {
        Self { kind: StatusKind::No, code, text: text.to_owned(), next: Next::Continue }
    }

    /// `BAD text`.
    pub fn bad(text: &str) -> Self {
        Self { kind: StatusKind::Bad, code: None, text: text.to_owned(), next: Next::Continue }
    }

    /// The reply for an error.
    pub fn from_error(error: &FrontendError) -> Self {
        let (kind, code, text) = error.to_imap();
        Self { kind, code, text, next: Next::Continue }
    }

    /// The same reply with a follow-up action.
    pub fn then(mut self, next: Next) -> Self {
        self.next = next;
        self
    }

    /// Metrics label of the result.
    pub fn result_label(&self) -> &'static str {
        match self.kind {
            StatusKind::Ok => "ok",
            StatusKind::No => "no",
            StatusKind::Bad => "bad",
        }
    }
}

/// Whether unsolicited EXPUNGE responses may accompany this command (RFC 3501 §7.4.1: not
/// during FETCH, STORE or SEARCH; their UID forms are different commands and allow them).
pub fn allows_expunge(body: &CommandBody<'_>) -> bool {
    !matches!(
        body,
        CommandBody::Fetch { uid: false, .. }
            | CommandBody::Store { uid: false, .. }
            | CommandBody::Search { uid: false, .. }
    )
}

/// Runs one command that passed the state gate.
pub async fn dispatch(ctx: &mut Ctx<'_>, body: CommandBody<'static>) -> Result<Reply, FrontendError> {
    use CommandBody as C;
    // RFC 7162 §3.1: an enabling command turns CONDSTORE on before it runs, so its own responses
    // (SELECT's HIGHESTMODSEQ, STORE's FETCHes) already carry mod-sequences.
    if condstore::enables(&body) {
        ctx.session.condstore = true;
    }
    match body {
        C::Capability => capability::run(ctx),
        C::Noop => noop::run(ctx),
        C::Logout => logout::run(ctx),
        C::StartTLS => starttls::run(ctx),
        C::Authenticate { mechanism, initial_response } => {
            authenticate::run(ctx, mechanism, initial_response).await
        }
        C::Login { username, password } => login::run(ctx, username, password).await,
        C::Select { mailbox, parameters } => select::run(ctx, mailbox, &parameters, false).await,
        C::Examine { mailbox, parameters } => select::run(ctx, mailbox, &parameters, true).await,
        C::Create { mailbox } => create::run(ctx, mailbox).await,
        C::Delete { mailbox } => delete::run(ctx, mailbox).await,
        C::Rename { from, to } => rename::run(ctx, from, to).await,
        C::Subscribe { mailbox } => subscribe::run(ctx, mailbox, true).await,
        C::Unsubscribe { mailbox } => subscribe::run(ctx, mailbox, false).await,
        C::List { reference, mailbox_wildcard } => list::run(ctx, reference, mailbox_wildcard).await,
        C::Lsub { reference, mailbox_wildcard } => lsub::run(ctx, reference, mailbox_wildcard).await,
        C::Status { mailbox, item_names } => status::run(ctx, mailbox, &item_names).await,
        C::Append { mailbox, flags, date, message } => {
            append::run(ctx, mailbox, flags, date, message).await
        }
        C::Check => check::run(ctx),
        C::Close => close::run(ctx).await,
        C::Unselect => unselect::run(ctx),
        C::Expunge => expunge::run(ctx, None).await,
        C::ExpungeUid { sequence_set } => expunge::run(ctx, Some(sequence_set)).await,
        C::Search { charset, criteria, uid } => search::run(ctx, charset, criteria, uid).await,
        C::Fetch { sequence_set, macro_or_item_names, uid, modifiers } => {
            fetch::run(ctx, sequence_set, macro_or_item_names, uid, &modifiers).await
        }
        C::Store { sequence_set, kind, response, flags, uid, modifiers } => {
            let request = store::StoreCommand { set: sequence_set, kind, response, flags, uid, modifiers };
            store::run(ctx, request).await
        }
        C::Copy { sequence_set, mailbox, uid } => copy::run(ctx, sequence_set, mailbox, uid).await,
        C::Move { sequence_set, mailbox, uid } => r#move::run(ctx, sequence_set, mailbox, uid).await,
        C::Idle => idle::run(ctx),
        C::Enable { capabilities } => enable::run(ctx, capabilities),
        C::Namespace => namespace::run(ctx),
        C::Id { parameters } => id::run(ctx, parameters),
        // The state gate answers `BAD` for everything else before dispatch.
        _ => Ok(Reply::bad("command not supported")),
    }
}
