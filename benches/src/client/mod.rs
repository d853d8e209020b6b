//! An async IMAP client made for load generation: one task per session, no background reader.
//!
//! Flow: [`Client::connect`] opens TCP (and TLS), reads the greeting and learns the
//! capabilities; [`Client::run`] sends `tag command`, collects every untagged response until the
//! tagged one and returns them as a [`Reply`]; literals are sent with LITERAL+ when offered
//! (RFC 7888) and otherwise after the server's continuation (RFC 3501 §7.5). Responses are
//! framed by [`framer`] and typed by [`parse`]; the consistency checker inspects the `Reply`.

pub mod framer;
/// Entry point of the fuzz target and its corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod lmtp;
pub mod parse;
pub mod tls;
pub mod value;

#[cfg(test)]
mod parse_tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ClientError;
use framer::Framer;
use parse::{Code, Response, Status, Untagged, parse_response};

/// Largest response we accept (a whole message fetch of the corpus' biggest plus headroom).
const MAX_FRAME: usize = 64 << 20;

/// Anything we can speak IMAP over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum AuthMech {
    /// `LOGIN user pass` (RFC 3501 §6.2.3).
    Login,
    /// `AUTHENTICATE PLAIN` (RFC 4616), with SASL-IR when offered (RFC 4959).
    Plain,
}

/// Where and how to connect; shared by every session of a run.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or address (loopback in our harness).
    pub host: String,
    /// IMAP port.
    pub port: u16,
    /// TLS config when using implicit TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Per-response timeout.
    pub timeout: Duration,
    /// Authentication mechanism.
    pub auth: AuthMech,
    /// Trusted certificate file, kept for display.
    pub ca_file: Option<PathBuf>,
}

/// All responses to one command.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses received while the command ran, in order.
    pub untagged: Vec<Untagged>,
    /// The tagged status.
    pub status: Status,
    /// The tagged response code.
    pub code: Option<Code>,
    /// The tagged response text.
    pub text: String,
}

impl Reply {
    /// True for tagged OK.
    pub fn ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// One IMAP connection.
pub struct Client {
    io: Box<dyn Io>,
    framer: Framer,
    next_tag: u32,
    caps: Vec<String>,
    timeout: Duration,
    rbuf: Vec<u8>,
}

impl Client {
    /// Connects, reads the greeting, fetches CAPABILITY if the greeting did not carry it.
    pub async fn connect(t: &Target) -> Result<Client, ClientError> {
        let tcp = tokio::time::timeout(t.timeout, TcpStream::connect((t.host.as_str(), t.port)))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::Connect)?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &t.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                let conn = tokio_rustls::TlsConnector::from(cfg.clone());
                let s = tokio::time::timeout(t.timeout, conn.connect(name, tcp))
                    .await
                    .map_err(|_| ClientError::Timeout)?
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                Box::new(s)
            }
        };
        let mut c = Client {
            io,
            framer: Framer::new(MAX_FRAME),
            next_tag: 1,
            caps: Vec::new(),
            timeout: t.timeout,
            rbuf: vec![0; 16 * 1024],
        };
        match c.read_response().await? {
            Response::Untagged(Untagged::Cond {
                status: Status::Ok | Status::Preauth,
                code,
                ..
            }) => {
                if let Some(Code::Capability(caps)) = code {
                    c.caps = caps;
                }
            }
            Response::Untagged(Untagged::Cond {
                status: Status::Bye,
                text,
                ..
            }) => return Err(ClientError::Bye(text)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected greeting {other:?}"
                )));
            }
        }
        if c.caps.is_empty() {
            c.refresh_capabilities().await?;
        }
        Ok(c)
    }

    /// Runs CAPABILITY and remembers the result.
    pub async fn refresh_capabilities(&mut self) -> Result<Reply, ClientError> {
        let r = self.run("CAPABILITY").await?;
        for u in &r.untagged {
            if let Untagged::Capability(c) = u {
                self.caps = c.clone();
            }
        }
        Ok(r)
    }

    /// Whether the server announced `cap` (case-insensitive).
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// Authenticates with `mech`; afterwards re-reads capabilities (they may change, RFC 3501 §6.2.3).
    pub async fn authenticate(
        &mut self,
        mech: AuthMech,
        user: &str,
        pass: &str,
    ) -> Result<Reply, ClientError> {
        let reply = match mech {
            AuthMech::Login => {
                let cmd = format!("LOGIN {} {}", quote(user), quote(pass));
                self.run(&cmd).await?
            }
            AuthMech::Plain => {
                // RFC 4616: authzid NUL authcid NUL passwd.
                let blob =
                    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
                if self.has_cap("SASL-IR") {
                    self.run(&format!("AUTHENTICATE PLAIN {blob}")).await?
                } else {
                    let tag = self.send_tagged(b"AUTHENTICATE PLAIN").await?;
                    self.await_continuation(&tag).await?;
                    self.write(format!("{blob}\r\n").as_bytes()).await?;
                    self.collect(&tag, Vec::new()).await?
                }
            }
        };
        if let Some(Code::Capability(c)) = &reply.code {
            self.caps = c.clone();
        } else if reply.ok() {
            self.refresh_capabilities().await?;
        }
        Ok(reply)
    }

    /// Sends `tag command CRLF` and returns the reply.
    pub async fn run(&mut self, command: &str) -> Result<Reply, ClientError> {
        let tag = self.send_tagged(command.as_bytes()).await?;
        self.collect(&tag, Vec::new()).await
    }

    /// Sends `tag prefix {n}CRLF literal suffix CRLF`, e.g. APPEND. Uses LITERAL+ when offered,
    /// otherwise waits for the continuation (RFC 3501 §7.5).
    pub async fn run_literal(
        &mut self,
        prefix: &str,
        literal: &[u8],
        suffix: &str,
    ) -> Result<Reply, ClientError> {
        let tag = self.tag();
        let plus = self.has_cap("LITERAL+");
        let head = format!(
            "{tag} {prefix} {{{}{}}}\r\n",
            literal.len(),
            if plus { "+" } else { "" }
        );
        let mut early = Vec::new();
        if plus {
            let mut all = Vec::with_capacity(head.len() + literal.len() + suffix.len() + 2);
            all.extend_from_slice(head.as_bytes());
            all.extend_from_slice(literal);
            all.extend_from_slice(suffix.as_bytes());
            all.extend_from_slice(b"\r\n");
            self.write(&all).await?;
        } else {
            self.write(head.as_bytes()).await?;
            if let Some(r) = self.await_continuation_or_reply(&tag, &mut early).await? {
                return Ok(r);
            }
            let mut all = Vec::with_capacity(literal.len() + suffix.len() + 2);
            all.extend_from_slice(literal);
            all.extend_from_slice(suffix.as_bytes());
            all.extend_from_slice(b"\r\n");
            self.write(&all).await?;
        }
        self.collect(&tag, early).await
    }

    /// Starts IDLE (RFC 2177) and waits for the continuation; returns the tag for [`Client::idle_done`].
    pub async fn idle_start(&mut self) -> Result<String, ClientError> {
        let tag = self.send_tagged(b"IDLE").await?;
        self.await_continuation(&tag).await?;
        Ok(tag)
    }

    /// Ends IDLE with DONE and collects the tagged reply.
    pub async fn idle_done(&mut self, tag: &str) -> Result<Reply, ClientError> {
        self.write(b"DONE\r\n").await?;
        self.collect(tag, Vec::new()).await
    }

    /// Reads one response, honouring the timeout.
    pub async fn read_response(&mut self) -> Result<Response, ClientError> {
        self.read_response_within(self.timeout).await
    }

    /// Reads one response with an explicit timeout.
    pub async fn read_response_within(&mut self, limit: Duration) -> Result<Response, ClientError> {
        loop {
            if let Some(frame) = self.framer.next_frame()? {
                return Ok(parse_response(&frame)?);
            }
            let n = tokio::time::timeout(limit, self.io.read(&mut self.rbuf))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.framer.push(&self.rbuf[..n]);
        }
    }

    /// Next tag: `b<n>`.
    fn tag(&mut self) -> String {
        let t = format!("b{}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        t
    }

    async fn send_tagged(&mut self, command: &[u8]) -> Result<String, ClientError> {
        let tag = self.tag();
        let mut line = Vec::with_capacity(tag.len() + command.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        self.write(&line).await?;
        Ok(tag)
    }

    /// Writes raw bytes (DONE, literal data, LMTP-free IMAP only).
    pub async fn write(&mut self, b: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, self.io.write_all(b))
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    async fn await_continuation(&mut self, tag: &str) -> Result<(), ClientError> {
        let mut early = Vec::new();
        match self.await_continuation_or_reply(tag, &mut early).await? {
            None => Ok(()),
            Some(r) => Err(ClientError::Protocol(format!(
                "expected continuation, got {:?} {}",
                r.status, r.text
            ))),
        }
    }

    /// Waits for `+`; a tagged reply instead (e.g. NO to a too-large APPEND) ends the command.
    async fn await_continuation_or_reply(
        &mut self,
        tag: &str,
        early: &mut Vec<Untagged>,
    ) -> Result<Option<Reply>, ClientError> {
        loop {
            match self.read_response().await? {
                Response::Continuation(_) => return Ok(None),
                Response::Untagged(u) => early.push(u),
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } if t == tag => {
                    return Ok(Some(Reply {
                        untagged: std::mem::take(early),
                        status,
                        code,
                        text,
                    }));
                }
                Response::Tagged { tag: t, .. } => {
                    return Err(ClientError::Protocol(format!(
                        "tagged reply for unknown tag {t}"
                    )));
                }
            }
        }
    }

    /// Reads until the tagged reply for `tag`.
    async fn collect(
        &mut self,
        tag: &str,
        mut untagged: Vec<Untagged>,
    ) -> Result<Reply, ClientError> {
        loop {
            match self.read_response().await? {
                Response::Untagged(Untagged::Cond {
                    status: Status::Bye,
                    text,
                    ..
                }) => {
                    // BYE during LOGOUT is expected (RFC 3501 §6.1.3); keep reading for the tagged OK.
                    untagged.push(Untagged::Cond {
                        status: Status::Bye,
                        code: None,
                        text,
                    });
                }
                Response::Untagged(u) => untagged.push(u),
                Response::Continuation(t) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected continuation: {t}"
                    )));
                }
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } => {
                    if t != tag {
                        return Err(ClientError::Protocol(format!(
                            "tagged reply for unknown tag {t}"
                        )));
                    }
                    return Ok(Reply {
                        untagged,
                        status,
                        code,
                        text,
                    });
                }
            }
        }
    }
}

/// An IMAP quoted string (RFC 3501 §4.3); callers pass only 7-bit text without CR/LF.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}
