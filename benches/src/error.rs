//! The one error type of the bench client's I/O layer. Workloads turn these into error kinds
//! (counted, never fatal for the run) with [`ClientError::kind`].

use std::io;

/// Why a connection or one exchange on it failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed (refused, unreachable).
    #[error("connect: {0}")]
    Connect(io::Error),
    /// Read or write failed after connecting.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake or configuration failed.
    #[error("tls: {0}")]
    Tls(String),
    /// No complete response within the configured timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by server")]
    Closed,
    /// The server sent BYE outside LOGOUT.
    #[error("server said BYE: {0}")]
    Bye(String),
    /// The server sent bytes that are not a valid response.
    #[error("malformed response: {0}")]
    Parse(#[from] crate::client::parse::ParseError),
    /// The server answered, but not in a way the exchange can continue from.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// A short stable label for the error table ("errors by kind").
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect(_) => "connect",
            ClientError::Io(_) => "io",
            ClientError::Tls(_) => "tls",
            ClientError::Timeout => "timeout",
            ClientError::Closed => "closed",
            ClientError::Bye(_) => "bye",
            ClientError::Parse(_) => "malformed",
            ClientError::Protocol(_) => "protocol",
        }
    }
}
