//! The front-end's error type and its one mapping to IMAP responses.
//!
//! Storage failures arrive as gRPC statuses carrying a stable `mailraft-code`
//! (see `storage::status`); session-level refusals (read-only mailbox, bad arguments) are raised
//! here directly. [`FrontendError::to_imap`] is the only place that decides which IMAP status and
//! response code (RFC 5530, RFC 3501 §7.1, RFC 4315, RFC 4469) a failure becomes.

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::response::{Code, StatusKind};

use crate::response::other_code;

/// Everything a command can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontendError {
    /// The named mailbox or message does not exist (storage `NONEXISTENT`).
    #[error("{0}")]
    NonExistent(String),
    /// CREATE/RENAME target exists (storage `ALREADYEXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The selected mailbox was deleted and recreated: our UIDs are meaningless now.
    #[error("{0}")]
    UidValidityChanged(String),
    /// The operation is not possible on this mailbox (storage `CANNOT`, e.g. deleting INBOX).
    #[error("{0}")]
    Cannot(String),
    /// A quota would be exceeded (storage `OVERQUOTA`).
    #[error("{0}")]
    OverQuota(String),
    /// A bound on one command or one mailbox would be exceeded (storage `LIMIT`, or the
    /// front-end's own check before calling the storage). No smaller part of the command would
    /// pass (a mailbox's keyword cap, its message count): it is reported at once.
    #[error("{0}")]
    Limit(String),
    /// One storage call was too big (storage `LIMIT` marked `mailraft-split`: the bytes of the
    /// command's records, or its number of messages), and a smaller part would pass. Split commands (STORE, EXPUNGE)
    /// retry it in smaller parts (`limits::smaller_part`); the client sees it as `Limit`.
    #[error("{0}")]
    TooBig(String),
    /// The storage rejected an argument (storage `INVALID`, e.g. a bad mailbox name).
    #[error("{0}")]
    Invalid(String),
    /// Wrong login or password, or a session token the storage no longer accepts.
    #[error("{0}")]
    AuthFailed(String),
    /// No storage node could serve the call in time (after retries).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The storage node failed unexpectedly.
    #[error("storage internal error: {0}")]
    Internal(String),
    /// The node is not the Raft leader; `leader` is its hint, if any. Retried by the router and
    /// only surfaces when retries are exhausted.
    #[error("storage node is not the leader")]
    NotLeader {
        /// The leader's gRPC address, when the node knows it.
        leader: Option<String>,
    },
    /// The storage call exceeded the configured request timeout.
    #[error("storage request timed out")]
    Timeout,
    /// Arguments the front-end itself rejects (RFC 3501 `BAD`).
    #[error("{0}")]
    BadArguments(String),
    /// A modifying command on a mailbox opened with EXAMINE.
    #[error("mailbox is read-only")]
    ReadOnly,
    /// COPY/MOVE/APPEND to a mailbox that does not exist (RFC 3501 §6.3.11, §6.4.7).
    #[error("{0}")]
    TryCreate(String),
    /// LOGIN/AUTHENTICATE PLAIN over cleartext when that is disabled (RFC 3501 §6.2.3).
    #[error("authentication over cleartext is disabled, use STARTTLS first")]
    PrivacyRequired,
    /// SASL authorization identity differs from the authentication identity (RFC 4616 §2).
    #[error("authorization identity not permitted")]
    AuthorizationFailed,
    /// SEARCH with a charset we do not support (RFC 3501 §6.4.4).
    #[error("{0}")]
    BadCharset(String),
}

impl FrontendError {
    /// The IMAP status, response code and text this error is reported as.
    pub fn to_imap(&self) -> (StatusKind, Option<Code<'static>>, String) {
        use FrontendError as E;
        let no = StatusKind::No;
        match self {
            E::NonExistent(m) => (no, Some(other_code("NONEXISTENT")), m.clone()),
            E::AlreadyExists(m) => (no, Some(other_code("ALREADYEXISTS")), m.clone()),
            // The session cannot continue with stale UIDs; the connection closes with BYE.
            E::UidValidityChanged(m) => (no, Some(other_code("UNAVAILABLE")), m.clone()),
            E::Cannot(m) | E::Invalid(m) => (no, Some(other_code("CANNOT")), m.clone()),
            E::OverQuota(m) => (no, Some(Code::OverQuota), m.clone()),
            // RFC 5530 §3: "The operation ran up against an implementation limit of some kind".
            // A call too big even when split to one message is the same refusal to the client.
            E::Limit(m) | E::TooBig(m) => (no, Some(other_code("LIMIT")), m.clone()),
            E::AuthFailed(_) => {
                (no, Some(other_code("AUTHENTICATIONFAILED")), "authentication failed".to_owned())
            }
            E::Unavailable(_) | E::NotLeader { .. } | E::Timeout => (
                no,
                Some(other_code("UNAVAILABLE")),
                "storage temporarily unavailable, try again".to_owned(),
            ),
            E::Internal(_) => (no, Some(other_code("SERVERBUG")), "internal server error".to_owned()),
            E::BadArguments(m) => (StatusKind::Bad, None, m.clone()),
            E::ReadOnly => (no, Some(Code::ReadOnly), self.to_string()),
            E::TryCreate(m) => (no, Some(Code::TryCreate), m.clone()),
            E::PrivacyRequired => (no, Some(other_code("PRIVACYREQUIRED")), self.to_string()),
            E::AuthorizationFailed => {
                (no, Some(other_code("AUTHORIZATIONFAILED")), self.to_string())
            }
            E::BadCharset(m) => {
                let allowed = crate::search::SUPPORTED_CHARSETS
                    .iter()
                    .filter_map(|c| Charset::try_from(*c).ok())
                    .collect();
                (no, Some(Code::BadCharset { allowed }), m.clone())
            }
        }
    }

    /// Whether the session must end: after this error its view of the mailbox is unusable.
    pub fn is_fatal_for_selection(&self) -> bool {
        matches!(self, FrontendError::UidValidityChanged(_))
    }

    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        use FrontendError as E;
        match self {
            E::NonExistent(_) => "nonexistent",
            E::AlreadyExists(_) => "alreadyexists",
            E::UidValidityChanged(_) => "uidvalidity",
            E::Cannot(_) => "cannot",
            E::OverQuota(_) => "overquota",
            E::Limit(_) => "limit",
            E::TooBig(_) => "too_big",
            E::Invalid(_) => "invalid",
            E::AuthFailed(_) => "authfailed",
            E::Unavailable(_) => "unavailable",
            E::Internal(_) => "internal",
            E::NotLeader { .. } => "not_leader",
            E::Timeout => "timeout",
            E::BadArguments(_) => "bad_arguments",
            E::ReadOnly => "read_only",
            E::TryCreate(_) => "trycreate",
            E::PrivacyRequired => "privacy_required",
            E::AuthorizationFailed => "authorization_failed",
            E::BadCharset(_) => "badcharset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Out;

    fn render(err: FrontendError) -> String {
        let (kind, code, text) = err.to_imap();
        let mut out = Out::new();
        let tag = imap_codec::imap_types::core::Tag::try_from("t").unwrap();
        out.tagged(&tag, kind, code, &text);
        String::from_utf8(out.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn codes_are_rfc5530() {
        assert_eq!(render(FrontendError::NonExistent("no such mailbox".into())), "t NO [NONEXISTENT] no such mailbox\r\n");
        assert_eq!(render(FrontendError::AlreadyExists("exists".into())), "t NO [ALREADYEXISTS] exists\r\n");
        assert_eq!(render(FrontendError::OverQuota("full".into())), "t NO [OVERQUOTA] full\r\n");
        assert_eq!(render(FrontendError::Limit("too many".into())), "t NO [LIMIT] too many\r\n");
        assert_eq!(render(FrontendError::TooBig("too many bytes".into())), "t NO [LIMIT] too many bytes\r\n");
        assert_eq!(render(FrontendError::AuthFailed("x".into())), "t NO [AUTHENTICATIONFAILED] authentication failed\r\n");
        assert_eq!(render(FrontendError::Internal("boom".into())), "t NO [SERVERBUG] internal server error\r\n");
        assert!(render(FrontendError::Timeout).starts_with("t NO [UNAVAILABLE]"));
        assert_eq!(render(FrontendError::ReadOnly), "t NO [READ-ONLY] mailbox is read-only\r\n");
        assert_eq!(render(FrontendError::TryCreate("no dest".into())), "t NO [TRYCREATE] no dest\r\n");
        assert_eq!(render(FrontendError::BadArguments("bad".into())), "t BAD bad\r\n");
        assert_eq!(
            render(FrontendError::BadCharset("charset".into())),
            "t NO [BADCHARSET (US-ASCII UTF-8)] charset\r\n"
        );
    }
}
