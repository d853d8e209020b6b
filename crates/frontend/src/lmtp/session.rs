//! The LMTP transaction state machine (RFC 2033 §4, RFC 5321 §3.3 and §4.1.4 command order):
//! which command is allowed when, what each one answers, and the per-recipient replies after the
//! message. It owns no socket: [`super::connection`] feeds it command lines and finished bodies
//! and writes what it returns. Recipients are checked and messages delivered through a
//! [`Backend`], so the rules are tested with a fake one.

use std::future::Future;

use super::LmtpConfig;
use super::protocol::{Address, Body, BodyType, ChunkReader, Command, DotReader, Reply, parse_command};

/// What the storage says about one recipient, at RCPT time or after a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// RCPT: the recipient can receive mail; after DATA: the message is committed for it.
    Ok,
    /// No such user in a domain we serve.
    UnknownUser,
    /// A domain no tenant has.
    UnknownDomain,
    /// The account exists but is disabled.
    Disabled,
    /// The account's or tenant's quota would be exceeded.
    OverQuota,
    /// A permanent refusal for another reason (the text says which).
    Refused(String),
    /// The storage could not be reached or did not answer in time: the MTA should retry.
    TryLater(String),
}

/// The envelope of one transaction, as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path (`None`: the null sender `<>`).
    pub from: Option<Address>,
    /// Accepted recipients, in RCPT order.
    pub recipients: Vec<Address>,
}

/// Where recipients are looked up and messages delivered.
pub trait Backend: Send + Sync + 'static {
    /// May `rcpt` receive a message of `size` octets (when MAIL FROM declared one)?
    fn check_recipient(&self, rcpt: &Address, size: Option<u64>) -> impl Future<Output = Verdict> + Send;

    /// Delivers `body` to every recipient of `envelope`; one verdict per recipient, in order.
    /// A verdict of [`Verdict::Ok`] promises the message is committed for that recipient.
    fn deliver(&self, envelope: &Envelope, body: Vec<u8>) -> impl Future<Output = Vec<Verdict>> + Send;
}

/// What the connection does after a command.
#[derive(Debug)]
pub enum Next {
    /// Read the next command.
    Command,
    /// Read a DATA body (the 354 reply has been queued).
    Data(DotReader),
    /// Read a BDAT chunk of the given size, then call [`Session::chunk_done`].
    Chunk(ChunkReader),
    /// Send what is queued and close the connection.
    Close,
}

/// One MAIL transaction (RFC 5321 §3.3).
#[derive(Debug)]
struct Transaction {
    from: Option<Address>,
    size: Option<u64>,
    recipients: Vec<Address>,
    /// BDAT chunks so far; `None` until the first BDAT (DATA and BDAT do not mix, RFC 3030 §3).
    chunks: Option<Body>,
}

/// The state of one LMTP connection.
#[derive(Debug)]
pub struct Session {
    config: LmtpConfig,
    /// LHLO seen.
    greeted: bool,
    transaction: Option<Transaction>,
    /// BDAT chunk in flight: whether it ends the message, and whether it belongs to a valid
    /// transaction (a refused BDAT's octets are still read, RFC 3030 §2, then answered).
    chunk: Option<(bool, Result<(), Reply>)>,
    /// Refused commands so far; past `max_errors` the connection is closed.
    errors: u32,
}

/// Replies queued for the client, and what comes next.
#[derive(Debug)]
pub struct Step {
    /// Replies in order.
    pub replies: Vec<Reply>,
    /// What to read next.
    pub next: Next,
}

impl Step {
    fn one(reply: Reply) -> Step {
        Step { replies: vec![reply], next: Next::Command }
    }
}

fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, "5.5.1", text)
}

fn too_big() -> Reply {
    Reply::new(552, "5.3.4", "message exceeds the size limit")
}

impl Session {
    /// A session that has sent nothing yet.
    pub fn new(config: LmtpConfig) -> Self {
        Session { config, greeted: false, transaction: None, chunk: None, errors: 0 }
    }

    /// The greeting (RFC 5321 §4.2: 220 with the server's name; RFC 2033 §4.1).
    pub fn greeting(&self) -> Reply {
        Reply::plain(220, vec![format!("{} LMTP Mailraft ready", self.config.hostname)])
    }

    /// The reply to an over-long command line.
    pub fn line_too_long(&mut self) -> Step {
        self.refused(Reply::new(500, "5.5.2", "line too long"))
    }

    /// Counts a refusal; past the limit the reply is followed by 421 and the close.
    fn refused(&mut self, reply: Reply) -> Step {
        self.errors += 1;
        if self.errors > self.config.max_errors {
            let bye = Reply::new(421, "4.7.0", "too many errors, closing connection");
            return Step { replies: vec![reply, bye], next: Next::Close };
        }
        Step::one(reply)
    }

    /// Runs one command line.
    pub async fn command<B: Backend>(&mut self, backend: &B, line: &[u8]) -> Step {
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(reply) => return self.refused(reply),
        };
        match command {
            Command::Lhlo(_) => {
                self.greeted = true;
                self.transaction = None;
                let c = &self.config;
                // RFC 2033 §4.1 / RFC 1869: the extensions implemented, nothing else.
                let lines = vec![
                    c.hostname.clone(),
                    "PIPELINING".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "8BITMIME".into(),
                    format!("SIZE {}", c.max_message_bytes),
                    "CHUNKING".into(),
                ];
                Step::one(Reply::plain(250, lines))
            }
            Command::HeloEhlo => self.refused(Reply::new(500, "5.5.1", "this is LMTP: use LHLO (RFC 2033)")),
            Command::Mail { from, size, body } => self.mail(from, size, body),
            Command::Rcpt(to) => self.rcpt(backend, to).await,
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.transaction = None;
                Step::one(Reply::new(250, "2.0.0", "OK"))
            }
            Command::Noop => Step::one(Reply::new(250, "2.0.0", "OK")),
            Command::Quit => Step {
                replies: vec![Reply::new(221, "2.0.0", format!("{} closing connection", self.config.hostname))],
                next: Next::Close,
            },
            // RFC 5321 §3.5.3: 252 says "cannot verify, but will try"; no address is disclosed.
            Command::Vrfy => Step::one(Reply::new(252, "2.5.0", "cannot VRFY, send the message and RCPT will tell")),
            Command::Expn => self.refused(Reply::new(502, "5.5.1", "EXPN not available")),
            Command::Help => Step::one(Reply::new(214, "2.0.0", "see RFC 2033")),
        }
    }

    fn mail(&mut self, from: Option<Address>, size: Option<u64>, _body: BodyType) -> Step {
        if !self.greeted {
            return self.refused(bad_sequence("send LHLO first"));
        }
        if self.transaction.is_some() {
            return self.refused(bad_sequence("nested MAIL command"));
        }
        // RFC 1870 §6.2: a declared size over the limit is refused at MAIL.
        if size.is_some_and(|s| s > self.config.max_message_bytes) {
            return self.refused(too_big());
        }
        // Both body types are stored as they arrive: 8BITMIME needs no conversion here.
        self.transaction = Some(Transaction { from, size, recipients: Vec::new(), chunks: None });
        Step::one(Reply::new(250, "2.1.0", "sender OK"))
    }

    async fn rcpt<B: Backend>(&mut self, backend: &B, to: Address) -> Step {
        let Some(tx) = &self.transaction else {
            return self.refused(bad_sequence("send MAIL first"));
        };
        if tx.chunks.is_some() {
            return self.refused(bad_sequence("RCPT after BDAT"));
        }
        // RFC 5321 §4.5.3.1.8: the excess recipients get 452, the rest of the transaction stands.
        if tx.recipients.len() >= self.config.max_recipients {
            return Step::one(Reply::new(452, "4.5.3", "too many recipients"));
        }
        let verdict = backend.check_recipient(&to, tx.size).await;
        let reply = rcpt_reply(&verdict, &to);
        if verdict == Verdict::Ok
            && let Some(tx) = &mut self.transaction
        {
            tx.recipients.push(to);
        }
        // Unknown recipients are a normal answer, not a client error.
        Step::one(reply)
    }

    fn data(&mut self) -> Step {
        match &self.transaction {
            None => self.refused(bad_sequence("send MAIL first")),
            Some(tx) if tx.chunks.is_some() => self.refused(bad_sequence("DATA after BDAT")),
            // RFC 2033 §4.2: DATA without a successful RCPT is answered 503.
            Some(tx) if tx.recipients.is_empty() => self.refused(bad_sequence("no valid recipients")),
            Some(_) => Step {
                replies: vec![Reply::plain(354, vec!["start mail input; end with <CRLF>.<CRLF>".into()])],
                next: Next::Data(DotReader::new(self.config.max_message_bytes)),
            },
        }
    }

    /// The DATA body has been read: deliver it, one reply per recipient (RFC 2033 §4.2).
    pub async fn data_done<B: Backend>(&mut self, backend: &B, body: Body) -> Step {
        self.finish(backend, body).await
    }

    fn bdat(&mut self, size: u64, last: bool) -> Step {
        let valid = match &mut self.transaction {
            None => Err(bad_sequence("send MAIL first")),
            Some(tx) if tx.recipients.is_empty() => Err(bad_sequence("no valid recipients")),
            Some(tx) => {
                tx.chunks.get_or_insert_with(|| Body::new(self.config.max_message_bytes));
                Ok(())
            }
        };
        self.chunk = Some((last, valid));
        Step { replies: Vec::new(), next: Next::Chunk(ChunkReader::new(size)) }
    }

    /// Where the octets of the BDAT chunk in flight go: the transaction's body, or nowhere when
    /// the BDAT is refused.
    pub fn chunk_body(&mut self) -> Option<&mut Body> {
        match self.chunk {
            Some((_, Ok(()))) => self.transaction.as_mut().and_then(|tx| tx.chunks.as_mut()),
            _ => None,
        }
    }

    /// The BDAT chunk in flight has been read.
    pub async fn chunk_done<B: Backend>(&mut self, backend: &B) -> Step {
        let Some((last, valid)) = self.chunk.take() else {
            return Step::one(Reply::new(451, "4.3.0", "internal error: no chunk in flight"));
        };
        if let Err(reply) = valid {
            return self.refused(reply);
        }
        let Some(tx) = &mut self.transaction else {
            return Step::one(Reply::new(451, "4.3.0", "internal error: no transaction"));
        };
        let Some(body) = &tx.chunks else {
            return Step::one(Reply::new(451, "4.3.0", "internal error: no body"));
        };
        if body.overflowed() {
            // RFC 3030 §2: after an error the transaction has failed; the client sends RSET.
            self.transaction = None;
            return Step::one(too_big());
        }
        if !last {
            return Step::one(Reply::new(250, "2.0.0", format!("{} octets received", body.len())));
        }
        let body = tx.chunks.take().unwrap_or_default();
        self.finish(backend, body).await
    }

    /// Ends the transaction with the message: one reply per accepted recipient.
    async fn finish<B: Backend>(&mut self, backend: &B, body: Body) -> Step {
        let Some(tx) = self.transaction.take() else {
            return Step::one(Reply::new(451, "4.3.0", "internal error: no transaction"));
        };
        let n = tx.recipients.len();
        if body.overflowed() {
            return Step { replies: vec![too_big(); n], next: Next::Command };
        }
        let envelope = Envelope { from: tx.from, recipients: tx.recipients };
        let mut verdicts = backend.deliver(&envelope, body.into_bytes()).await;
        // A backend that answered for the wrong number of recipients cannot be trusted for any.
        if verdicts.len() != n {
            tracing::error!(got = verdicts.len(), want = n, "delivery answered for the wrong number of recipients");
            verdicts = vec![Verdict::TryLater("internal error".into()); n];
        }
        for v in &verdicts {
            let result = match v {
                Verdict::Ok => "delivered",
                Verdict::TryLater(_) => "deferred",
                _ => "refused",
            };
            metrics::counter!(super::RECIPIENTS_TOTAL, "result" => result).increment(1);
        }
        let replies = envelope.recipients.iter().zip(&verdicts).map(|(to, v)| delivery_reply(v, to)).collect();
        Step { replies, next: Next::Command }
    }
}

/// RCPT reply for a verdict (RFC 3463 codes: X.1.1 bad mailbox, X.1.2 bad system, X.2.1
/// mailbox disabled, X.2.2 mailbox full).
pub fn rcpt_reply(verdict: &Verdict, to: &Address) -> Reply {
    match verdict {
        Verdict::Ok => Reply::new(250, "2.1.5", format!("<{to}> OK")),
        other => failure_reply(other, to),
    }
}

/// Post-DATA reply for one recipient's delivery.
pub fn delivery_reply(verdict: &Verdict, to: &Address) -> Reply {
    match verdict {
        Verdict::Ok => Reply::new(250, "2.0.0", format!("<{to}> delivered")),
        other => failure_reply(other, to),
    }
}

fn failure_reply(verdict: &Verdict, to: &Address) -> Reply {
    match verdict {
        Verdict::Ok => Reply::new(250, "2.0.0", "OK"),
        Verdict::UnknownUser => Reply::new(550, "5.1.1", format!("<{to}> no such user")),
        Verdict::UnknownDomain => Reply::new(550, "5.1.2", format!("<{to}> domain not served here")),
        Verdict::Disabled => Reply::new(550, "5.2.1", format!("<{to}> mailbox disabled")),
        Verdict::OverQuota => Reply::new(552, "5.2.2", format!("<{to}> mailbox full (over quota)")),
        Verdict::Refused(why) => Reply::new(550, "5.7.1", format!("<{to}> refused: {why}")),
        Verdict::TryLater(why) => Reply::new(451, "4.3.0", format!("<{to}> temporary failure: {why}")),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
