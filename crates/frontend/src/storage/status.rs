//! gRPC status → [`FrontendError`], in one place.
//!
//! The storage tier puts a stable code in the `mailraft-code` metadata entry (and, for
//! `NOT_LEADER`, the leader's address in `mailraft-leader`); the gRPC code is only a fallback for
//! statuses that did not come from our storage service (transport errors, proxies).

use tonic::{Code, Status};

use crate::error::FrontendError;

/// Metadata key carrying the stable error code.
pub const CODE_KEY: &str = "mailraft-code";
/// Metadata key carrying the leader's gRPC address on `NOT_LEADER`.
pub const LEADER_KEY: &str = "mailraft-leader";
/// Metadata key on a `LIMIT`: `1` when the same work in smaller parts would pass (a size bound:
/// bytes of records, messages per command), `0` when no split helps (a mailbox's keyword cap).
/// Absent when the storage cannot tell (a cluster still at feature level 1): split as if `1`,
/// which costs a few refused calls when it was final. A key beside `LIMIT` rather than a code of
/// its own, so front-ends of older releases still answer `NO [LIMIT]`.
pub const SPLIT_KEY: &str = "mailraft-split";

impl From<Status> for FrontendError {
    fn from(status: Status) -> Self {
        let meta = |key: &str| {
            status.metadata().get(key).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let message = status.message().to_owned();
        match meta(CODE_KEY).as_deref() {
            Some("NONEXISTENT") => FrontendError::NonExistent(message),
            Some("ALREADYEXISTS") => FrontendError::AlreadyExists(message),
            Some("UIDVALIDITY") => FrontendError::UidValidityChanged(message),
            Some("CANNOT") => FrontendError::Cannot(message),
            Some("OVERQUOTA") => FrontendError::OverQuota(message),
            Some("LIMIT") if meta(SPLIT_KEY).as_deref() == Some("0") => FrontendError::Limit(message),
            Some("LIMIT") => FrontendError::TooBig(message),
            Some("INVALID") => FrontendError::Invalid(message),
            Some("AUTHFAILED") => FrontendError::AuthFailed(message),
            Some("UNAVAILABLE") => FrontendError::Unavailable(message),
            Some("INTERNAL") => FrontendError::Internal(message),
            Some("NOT_LEADER") => {
                FrontendError::NotLeader { leader: meta(LEADER_KEY).filter(|l| !l.is_empty()) }
            }
            _ => from_grpc_code(status.code(), message),
        }
    }
}

/// Whether a failed attempt is the storage tier's answer (retrying cannot change it) rather than
/// a failure to get one. Our storage service marks every answer with `mailraft-code`; of those,
/// only `UNAVAILABLE` and `NOT_LEADER` say "not here, not now". A status without the code did not
/// come from our service (transport errors, a reset connection, a proxy): since every mutating
/// call carries a request id that the storage deduplicates, those are retried too, except for
/// gRPC codes that describe the request itself.
pub fn is_answer(status: &Status) -> bool {
    match status.metadata().get(CODE_KEY).and_then(|v| v.to_str().ok()) {
        Some("UNAVAILABLE" | "NOT_LEADER") => false,
        Some(_) => true,
        None => matches!(
            status.code(),
            Code::NotFound
                | Code::AlreadyExists
                | Code::InvalidArgument
                | Code::OutOfRange
                | Code::Unauthenticated
                | Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::ResourceExhausted
                | Code::Unimplemented
        ),
    }
}

fn from_grpc_code(code: Code, message: String) -> FrontendError {
    match code {
        Code::NotFound => FrontendError::NonExistent(message),
        Code::AlreadyExists => FrontendError::AlreadyExists(message),
        Code::ResourceExhausted => FrontendError::OverQuota(message),
        Code::InvalidArgument | Code::OutOfRange => FrontendError::Invalid(message),
        Code::Unauthenticated | Code::PermissionDenied => FrontendError::AuthFailed(message),
        Code::FailedPrecondition => FrontendError::Cannot(message),
        Code::Unavailable | Code::Aborted | Code::Cancelled => FrontendError::Unavailable(message),
        Code::DeadlineExceeded => FrontendError::Timeout,
        _ => FrontendError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_code(code: &str) -> Status {
        let mut status = Status::failed_precondition("msg");
        status.metadata_mut().insert(CODE_KEY, code.parse().unwrap());
        status
    }

    #[test]
    fn maps_metadata_codes() {
        assert_eq!(FrontendError::from(with_code("NONEXISTENT")), FrontendError::NonExistent("msg".into()));
        assert_eq!(FrontendError::from(with_code("OVERQUOTA")), FrontendError::OverQuota("msg".into()));
        // Without the key (a level 1 cluster cannot tell): split as before.
        assert_eq!(FrontendError::from(with_code("LIMIT")), FrontendError::TooBig("msg".into()));
        let mut last = with_code("LIMIT");
        last.metadata_mut().insert(SPLIT_KEY, "0".parse().unwrap());
        assert_eq!(FrontendError::from(last), FrontendError::Limit("msg".into()));
        let mut exhausted = Status::resource_exhausted("a command may write at most 64 MiB of records");
        exhausted.metadata_mut().insert(CODE_KEY, "LIMIT".parse().unwrap());
        exhausted.metadata_mut().insert(SPLIT_KEY, "1".parse().unwrap());
        assert_eq!(
            FrontendError::from(exhausted),
            FrontendError::TooBig("a command may write at most 64 MiB of records".into())
        );
        assert_eq!(FrontendError::from(with_code("UIDVALIDITY")), FrontendError::UidValidityChanged("msg".into()));
        assert_eq!(FrontendError::from(with_code("NOT_LEADER")), FrontendError::NotLeader { leader: None });
        let mut status = with_code("NOT_LEADER");
        status.metadata_mut().insert(LEADER_KEY, "10.0.0.2:7070".parse().unwrap());
        assert_eq!(
            FrontendError::from(status),
            FrontendError::NotLeader { leader: Some("10.0.0.2:7070".into()) }
        );
    }

    #[test]
    fn only_answers_stop_retries() {
        assert!(is_answer(&with_code("NONEXISTENT")));
        assert!(is_answer(&with_code("ALREADYEXISTS")));
        assert!(is_answer(&with_code("INTERNAL")));
        let mut split = with_code("LIMIT");
        split.metadata_mut().insert(SPLIT_KEY, "1".parse().unwrap());
        assert!(is_answer(&split), "retried smaller by the command, not as is");
        assert!(!is_answer(&with_code("NOT_LEADER")));
        assert!(!is_answer(&with_code("UNAVAILABLE")));
        // Without our code: transport failures are retried, request errors are not.
        assert!(!is_answer(&Status::unavailable("connection reset")));
        assert!(!is_answer(&Status::unknown("transport error")));
        assert!(!is_answer(&Status::internal("h2 protocol error")));
        assert!(!is_answer(&Status::cancelled("stream reset")));
        assert!(is_answer(&Status::resource_exhausted("message too large")));
        assert!(is_answer(&Status::unimplemented("no such method")));
    }

    #[test]
    fn falls_back_to_grpc_code() {
        assert_eq!(FrontendError::from(Status::unavailable("down")), FrontendError::Unavailable("down".into()));
        assert_eq!(FrontendError::from(Status::internal("x")), FrontendError::Internal("x".into()));
        assert_eq!(FrontendError::from(Status::deadline_exceeded("x")), FrontendError::Timeout);
    }
}
