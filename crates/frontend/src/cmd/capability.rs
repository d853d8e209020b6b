//! CAPABILITY (RFC 3501 §6.1.1) and the capability list shared by the greeting and LOGIN.
//!
//! Only what is implemented is advertised. Before login LITERAL- replaces LITERAL+, and the
//! list depends on the connection:
//! STARTTLS while cleartext and configured, and LOGINDISABLED instead of AUTH=PLAIN when
//! cleartext authentication is off (RFC 3501 §6.2.3, §7.2.1).

use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::response::{Capability, Code, Data};

use super::{Ctx, Reply};
use crate::error::FrontendError;
use crate::session::Session;

/// The capabilities to advertise in the session's current state.
pub fn capabilities(session: &Session) -> Vec1<Capability<'static>> {
    // RFC 7888 §4, §5: LITERAL+ would let a client that never logs in push literals of any size
    // without waiting for us; before login we offer LITERAL- (at most 4096 bytes) instead.
    let literal = if session.user().is_some() { Capability::LiteralPlus } else { Capability::LiteralMinus };
    let mut caps = vec![
        Capability::Imap4Rev1,
        literal,
        Capability::SaslIr,
        Capability::Idle,
        Capability::UidPlus,
        Capability::Move,
        Capability::Unselect,
        Capability::Namespace,
        Capability::Id,
        // RFC 7162 §3.1.1 (`condstore.rs`); ENABLE (RFC 5161) is how clients turn it on.
        Capability::CondStore,
        Capability::Enable,
        // RFC 3516 §4.1: FETCH BINARY[section]<partial>, BINARY.PEEK, BINARY.SIZE
        // (`render/binary.rs`, NO [UNKNOWN-CTE] for an encoding we cannot decode) and `~{n}`
        // literal8 in APPEND (`append.rs`).
        Capability::Binary,
    ];
    // RFC 3348 (\HasChildren) and RFC 6154 (special-use attributes in LIST).
    for other in ["CHILDREN", "SPECIAL-USE"] {
        if let Ok(cap) = Capability::try_from(other) {
            caps.push(cap);
        }
    }
    if session.user().is_none() {
        if session.starttls_available {
            caps.push(Capability::StartTls);
        }
        if session.login_disabled() {
            caps.push(Capability::LoginDisabled);
        } else {
            caps.push(Capability::Auth(AuthMechanism::Plain));
        }
    }
    // The list is never empty; `Vec1::from` of the first element keeps this infallible.
    Vec1::try_from(caps).unwrap_or_else(|_| Vec1::from(Capability::Imap4Rev1))
}

/// `[CAPABILITY ...]` for the greeting and the LOGIN/AUTHENTICATE reply.
pub fn code(session: &Session) -> Code<'static> {
    Code::Capability(capabilities(session))
}

/// `CAPABILITY`.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Reply, FrontendError> {
    ctx.out.data(Data::Capability(capabilities(ctx.session)));
    Ok(Reply::ok("CAPABILITY completed"))
}
