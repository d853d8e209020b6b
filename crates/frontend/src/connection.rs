//! One client connection: read, frame, decode, gate, run, reply — until LOGOUT, BYE or EOF.
//!
//! The loop has the mini-redis shape: wait for bytes with a timeout that depends on the state
//! raced against the server's shutdown signal; both end in `* BYE`. Before login the deadline is
//! one fixed instant, `preauth_timeout` after accept, that client activity does not move (a
//! client trickling a byte a minute must not hold its slot forever); after login it is the
//! RFC 3501 §5.4 autologout timer, restarted by every read. Bytes go through the [`Framer`], which enforces the
//! size caps before anything is parsed; complete messages are decoded by imap-codec. Nothing a
//! client sends can panic the loop: undecodable input is answered with `BAD` and the next
//! command is read.
//!
//! The framer's caps follow the login state: before authentication literals are small
//! (`max_preauth_literal_bytes`, and LITERAL- for non-synchronizing ones, RFC 7888 §5), so a
//! client that never logs in cannot make us buffer much; the full caps apply from the first
//! message after LOGIN/AUTHENTICATE succeeded. Before login, [`MAX_PREAUTH_REFUSALS`] refused
//! commands (`BAD`, or a literal refused as too big) end the connection with `* BYE`: such a
//! client is not speaking IMAP to us, and each refusal costs a parse. Every write has a deadline
//! ([`Out::with_write_timeout`]); a client that stops reading is disconnected when it passes.
//!
//! Three commands take over the socket after their handler returns: STARTTLS (handshake),
//! AUTHENTICATE without an initial response (one SASL line) and IDLE (push updates until
//! `DONE`). They live here because they read from the client themselves.

use std::sync::Arc;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{Code, StatusKind};
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cmd::list::ListOptions;
use crate::cmd::{self, Ctx, Next, Reply, Shared, authenticate, capability};
use crate::error::FrontendError;
use crate::framer::{Frame, Framer, Limits, Rejection, tag_of};
use crate::io::ImapStream;
use crate::preauth::PreauthGuard;
use crate::response::Out;
use crate::session::{Gate, Session, lifetime, updates};

mod extended;
mod undecodable;
mod waits;

use undecodable::describe_undecodable;
use waits::{IdleRetry, changed, sleep_until};

/// Size of one socket read.
const READ_CHUNK: usize = 16 * 1024;
/// How long a closing connection may take to flush its last bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Refused commands (`BAD`, literal `NO [TOOBIG]`) before login after which the connection is
/// closed. Failed logins have their own, smaller budget (`max_auth_failures`).
pub const MAX_PREAUTH_REFUSALS: u32 = 10;
/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// A client connection and its session.
pub struct Connection {
    shared: Arc<Shared>,
    io: ImapStream,
    framer: Framer,
    out: Out,
    session: Session,
    /// TLS configuration for STARTTLS, if this listener offers it.
    starttls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    read_buf: Vec<u8>,
    /// This connection's slot among its source's unauthenticated connections; given back at
    /// login (or when the connection ends).
    preauth: Option<PreauthGuard>,
    /// When an unauthenticated session is closed, however active it is.
    preauth_deadline: Instant,
    /// Commands refused before login, up to [`MAX_PREAUTH_REFUSALS`].
    preauth_refusals: u32,
}

impl Connection {
    /// A connection over `io` (already TLS for implicit-TLS listeners).
    pub fn new(
        shared: Arc<Shared>,
        io: ImapStream,
        starttls: Option<Arc<rustls::ServerConfig>>,
        shutdown: CancellationToken,
        session_id: String,
    ) -> Self {
        let config = &shared.config;
        let session =
            Session::new(session_id, io.is_tls(), starttls.is_some(), config.allow_plaintext_auth);
        let preauth_deadline = Instant::now() + config.preauth_timeout;
        Self {
            framer: Framer::new(Limits::for_login_state(config, false)),
            out: Out::with_write_timeout(config.write_timeout),
            session,
            starttls,
            shutdown,
            io,
            shared,
            read_buf: vec![0; READ_CHUNK],
            preauth: None,
            preauth_deadline,
            preauth_refusals: 0,
        }
    }

    /// Records the client's address: the storage tier keeps password-failure budgets per source.
    pub fn with_peer(mut self, peer: std::net::IpAddr) -> Self {
        self.session.peer = Some(peer);
        self
    }

    /// Holds `guard` until the session authenticates or the connection ends.
    pub fn with_preauth_guard(mut self, guard: PreauthGuard) -> Self {
        self.preauth = Some(guard);
        self
    }

    /// Counts `preauth_timeout` from `accepted` rather than from now, so the time spent before
    /// the session started (a TLS handshake) is part of it.
    pub fn with_preauth_deadline_from(mut self, accepted: Instant) -> Self {
        self.preauth_deadline = accepted + self.shared.config.preauth_timeout;
        self
    }

    fn authenticated(&self) -> bool {
        self.session.user().is_some()
    }

    /// Applies the caps of the current login state and gives the pre-auth slot back once
    /// logged in. Runs between messages, so one message is framed under one set of caps.
    fn follow_login_state(&mut self) {
        let authenticated = self.authenticated();
        let limits = Limits::for_login_state(&self.shared.config, authenticated);
        if self.framer.limits() != limits {
            self.framer.set_limits(limits);
        }
        if authenticated {
            self.preauth = None;
        }
    }

    /// Serves the client until the connection ends.
    pub async fn run(mut self) {
        // RFC 3501 §7.1.1 greeting, with the capabilities so clients need no CAPABILITY round trip.
        self.out.untagged(StatusKind::Ok, Some(capability::code(&self.session)), "Mailraft IMAP4rev1 ready");
        let mut flow = Ok(Flow::Continue);
        while matches!(flow, Ok(Flow::Continue)) {
            flow = self.step().await;
        }
        if self.out.is_stalled() {
            // No BYE and no TLS close_notify: the client would not read them either. Dropping
            // the socket (and, already, any storage stream the command was reading) is all.
            crate::metrics::write_timeout();
            tracing::info!(
                session_id = %self.session.id,
                write_timeout = ?self.shared.config.write_timeout,
                "client stopped reading responses, closing the connection"
            );
            return;
        }
        if let Err(error) = flow {
            tracing::debug!(%error, "connection i/o failed");
            return;
        }
        self.session.state = crate::session::State::Logout;
        let close_timeout = CLOSE_TIMEOUT.min(self.shared.config.write_timeout);
        let _ = tokio::time::timeout(close_timeout, async {
            let _ = self.out.flush_to(&mut self.io).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush_to(&mut self.io).await
    }

    /// One framer event.
    async fn step(&mut self) -> std::io::Result<Flow> {
        self.follow_login_state();
        match self.framer.poll() {
            Frame::NeedMore => {
                self.flush().await?;
                self.read_more().await
            }
            Frame::Continue => {
                // RFC 3501 §7.5: the client may now send the literal.
                self.out.continuation("Ready for literal data");
                self.flush().await?;
                Ok(Flow::Continue)
            }
            Frame::Message => {
                let message = self.framer.take_message();
                self.handle_message(&message).await
            }
            Frame::Rejected { tag, reason } => {
                self.reject(tag.as_ref(), reason);
                Ok(self.count_refusal())
            }
            Frame::Fatal { tag } => {
                // RFC 7888 §4, §5: a non-synchronizing literal over our limit (before login: over
                // LITERAL-'s 4096 bytes) is refused with a tagged BAD [TOOBIG]. Its bytes are
                // already on the way and we neither buffer nor skip them: the connection closes.
                self.out.maybe_tagged(tag.as_ref(), StatusKind::Bad, Some(Code::TooBig), "literal too big");
                self.out.bye(None, "literal too big, closing");
                crate::metrics::literal_refused(self.stage(), "nonsync");
                crate::metrics::command("unknown", "bad", Duration::ZERO);
                Ok(Flow::Close)
            }
        }
    }

    /// Answers a message the framer refused.
    fn reject(&mut self, tag: Option<&Tag<'_>>, reason: Rejection) {
        match reason {
            Rejection::LineTooLong => {
                self.out.maybe_tagged(tag, StatusKind::Bad, None, "command line too long");
                crate::metrics::command("unknown", "bad", Duration::ZERO);
            }
            // RFC 7888 §4 / RFC 4469 §4.2: refuse the literal before the client sends it.
            Rejection::LiteralTooBig => {
                self.out.maybe_tagged(tag, StatusKind::No, Some(Code::TooBig), "literal too big");
                crate::metrics::literal_refused(self.stage(), "sync");
                crate::metrics::command("unknown", "no", Duration::ZERO);
            }
        }
    }

    /// Counts a refused command before login; closes with `* BYE` at the limit.
    fn count_refusal(&mut self) -> Flow {
        if self.authenticated() {
            return Flow::Continue;
        }
        self.preauth_refusals += 1;
        if self.preauth_refusals < MAX_PREAUTH_REFUSALS {
            return Flow::Continue;
        }
        self.out.bye(None, "too many invalid commands");
        Flow::Close
    }

    /// Metrics label of the login state.
    fn stage(&self) -> &'static str {
        if self.authenticated() { "auth" } else { "preauth" }
    }

    /// Waits for client bytes (or shutdown, or the inactivity timeout).
    /// Keeping the session's token alive (`session/lifetime.rs`) runs meanwhile and is not
    /// client activity: the autologout deadline stays.
    async fn read_more(&mut self) -> std::io::Result<Flow> {
        let deadline = self.read_deadline();
        let read = loop {
            let woke = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Woke::Shutdown,
                () = lifetime::due(&self.session) => Woke::Session,
                read = tokio::time::timeout_at(deadline, self.io.read(&mut self.read_buf)) => Woke::Read(read),
            };
            match woke {
                Woke::Shutdown => break None,
                Woke::Read(read) => break Some(read),
                Woke::Session => {
                    if let Err(bye) = lifetime::maintain(&self.shared.storage, &mut self.session).await {
                        self.out.bye(None, bye);
                        return Ok(Flow::Close);
                    }
                }
            }
        };
        match read {
            None => {
                self.out.bye(None, "server shutting down");
                Ok(Flow::Close)
            }
            Some(Err(_)) if !self.authenticated() => {
                self.out.bye(None, "too long without logging in");
                Ok(Flow::Close)
            }
            Some(Err(_)) => {
                // RFC 3501 §5.4 autologout.
                self.out.bye(None, "autologout; idle for too long");
                Ok(Flow::Close)
            }
            Some(Ok(Ok(0))) => Ok(Flow::Close),
            Some(Ok(Ok(n))) => {
                self.framer.feed(&self.read_buf[..n]);
                Ok(Flow::Continue)
            }
            Some(Ok(Err(error))) => Err(error),
        }
    }

    /// Until when the next read may wait: the fixed pre-login deadline, or the autologout timer
    /// counted from now.
    fn read_deadline(&self) -> Instant {
        if self.authenticated() { Instant::now() + self.shared.config.idle_timeout } else { self.preauth_deadline }
    }

    /// Decodes and runs one complete message.
    async fn handle_message(&mut self, message: &[u8]) -> std::io::Result<Flow> {
        let (command, list_options) = match CommandCodec::new().decode(message) {
            Ok((&[], command)) => (command.into_static(), ListOptions::default()),
            // LIST-EXTENDED options, which imap-codec does not parse (`connection/extended.rs`).
            _ => match extended::decode(message) {
                Some(extended::Extended::List(command, options)) => (command, options),
                refused => {
                    let tag = tag_of(message);
                    let text = match refused {
                        Some(extended::Extended::Unsupported(text)) => text,
                        _ => describe_undecodable(message, tag.is_some()),
                    };
                    self.out.maybe_tagged(tag.as_ref(), StatusKind::Bad, None, &text);
                    crate::metrics::command("unknown", "bad", Duration::ZERO);
                    return Ok(self.count_refusal());
                }
            },
        };
        self.run_command(command, list_options).await
    }

    /// Gates, runs and answers one command.
    async fn run_command(&mut self, command: Command<'static>, list_options: ListOptions) -> std::io::Result<Flow> {
        let Command { tag, body } = command;
        let name = body.name();
        let started = Instant::now();
        tracing::debug!(command = name, "command");
        let mut reply = match self.session.is_allowed(&body) {
            Gate::WrongState(text) => Reply::bad(text),
            Gate::Unsupported => Reply::bad("command not supported"),
            Gate::Allowed => {
                let allow_expunge = cmd::allows_expunge(&body);
                let mut ctx = Ctx {
                    shared: &self.shared,
                    session: &mut self.session,
                    out: &mut self.out,
                    io: &mut self.io,
                    broken: false,
                    list_options,
                };
                let result = cmd::dispatch(&mut ctx, body).await;
                if ctx.broken {
                    return Ok(Flow::Close);
                }
                let mut reply = match result {
                    Ok(reply) => reply,
                    Err(error) => self.error_reply(name, &error),
                };
                // RFC 3501 §7: report mailbox changes before the tagged reply.
                if reply.next == Next::Continue
                    && let Err(bye) = self.poll_updates(allow_expunge).await
                {
                    reply.next = Next::Bye(bye);
                }
                reply
            }
        };
        match reply.next {
            Next::Idle => return self.idle(&tag, name, started).await,
            Next::Sasl => return self.sasl(&tag, name, started).await,
            _ => {}
        }
        self.complete(&tag, name, started, &reply);
        if reply.kind == StatusKind::Bad && reply.next == Next::Continue && self.count_refusal() == Flow::Close {
            return Ok(Flow::Close);
        }
        match std::mem::replace(&mut reply.next, Next::Continue) {
            Next::Close => Ok(Flow::Close),
            Next::Bye(text) => {
                self.out.bye(None, text);
                Ok(Flow::Close)
            }
            Next::StartTls => self.start_tls().await,
            Next::Continue | Next::Idle | Next::Sasl => Ok(Flow::Continue),
        }
    }

    /// The reply for a failed command; logs what operators need to see.
    fn error_reply(&self, name: &'static str, error: &FrontendError) -> Reply {
        match error {
            FrontendError::Internal(_) => tracing::warn!(command = name, %error, "command failed"),
            _ => tracing::debug!(command = name, %error, "command refused"),
        }
        let reply = Reply::from_error(error);
        if error.is_fatal_for_selection() {
            return reply.then(Next::Bye("mailbox was replaced, please reconnect"));
        }
        if matches!(error, FrontendError::AuthFailed(_)) && self.session.user().is_some() {
            // The storage refused the session's token (revoked or expired): nothing will work.
            return reply.then(Next::Bye(lifetime::REVOKED));
        }
        reply
    }

    /// Writes the tagged reply and records metrics.
    fn complete(&mut self, tag: &Tag<'_>, name: &'static str, started: Instant, reply: &Reply) {
        self.out.tagged(tag, reply.kind, reply.code.clone(), &reply.text);
        crate::metrics::command(name, reply.result_label(), started.elapsed());
    }

    /// Sends unsolicited updates; `Err` carries the BYE text when the selection is unusable.
    /// A transient failure is only logged: the next command polls again from the same modseq.
    async fn poll_updates(&mut self, allow_expunge: bool) -> Result<(), &'static str> {
        match self.try_poll_updates(allow_expunge).await {
            Ok(()) => Ok(()),
            Err(PollFailure::Bye(bye)) => Err(bye),
            Err(PollFailure::Transient(error)) => {
                tracing::debug!(%error, "cannot poll mailbox changes");
                Ok(())
            }
        }
    }

    /// Sends unsolicited updates, telling a transient failure (nothing was reported, the session's
    /// modseq did not move, so polling again later loses nothing) from an unusable selection.
    async fn try_poll_updates(&mut self, allow_expunge: bool) -> Result<(), PollFailure> {
        if self.session.selected().is_none() {
            return Ok(());
        }
        match updates::poll(&self.shared.storage, &mut self.session, &mut self.out, &mut self.io, allow_expunge).await {
            Ok(()) => Ok(()),
            Err(FrontendError::NonExistent(_)) => Err(PollFailure::Bye("selected mailbox was deleted")),
            Err(FrontendError::UidValidityChanged(_)) => Err(PollFailure::Bye("selected mailbox was replaced")),
            Err(FrontendError::AuthFailed(_)) => Err(PollFailure::Bye(lifetime::REVOKED)),
            Err(error) => Err(PollFailure::Transient(error)),
        }
    }

    /// One poll during IDLE: a transient failure schedules a retry instead of dropping the change
    /// the wake-up announced (the watch hub will not announce it again).
    async fn idle_poll(&mut self, retry: &mut IdleRetry) -> Result<(), &'static str> {
        match self.try_poll_updates(true).await {
            Ok(()) => retry.clear(),
            Err(PollFailure::Bye(bye)) => return Err(bye),
            Err(PollFailure::Transient(error)) => {
                let at = retry.schedule(Instant::now());
                tracing::debug!(%error, retry_in = ?at.saturating_duration_since(Instant::now()), "IDLE poll failed");
            }
        }
        Ok(())
    }

    /// STARTTLS: handshake after the tagged OK (RFC 3501 §6.2.1).
    async fn start_tls(&mut self) -> std::io::Result<Flow> {
        self.flush().await?;
        // Anything pipelined after STARTTLS was sent in cleartext and must not be executed.
        self.framer.clear();
        let Some(config) = self.starttls.clone() else {
            return Ok(Flow::Close);
        };
        let io = std::mem::replace(&mut self.io, ImapStream::Upgrading);
        // STARTTLS is only valid before login (RFC 3501 §6.2.1): the handshake counts against
        // the fixed pre-login deadline.
        match tokio::time::timeout_at(self.preauth_deadline, io.upgrade(config)).await {
            Ok(Ok(io)) => {
                self.io = io;
                self.session.tls = true;
                self.session.starttls_available = false;
                Ok(Flow::Continue)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "STARTTLS handshake failed");
                Ok(Flow::Close)
            }
            Err(_) => Ok(Flow::Close),
        }
    }

    /// AUTHENTICATE without initial response: `+ `, then one base64 line (RFC 3501 §6.2.2).
    async fn sasl(&mut self, tag: &Tag<'static>, name: &'static str, started: Instant) -> std::io::Result<Flow> {
        self.out.empty_continuation();
        loop {
            match self.framer.poll() {
                Frame::NeedMore => {
                    self.flush().await?;
                    if self.read_more().await? == Flow::Close {
                        return Ok(Flow::Close);
                    }
                }
                Frame::Message => {
                    let message = self.framer.take_message();
                    let reply = match AuthenticateDataCodec::new().decode(&message) {
                        Ok((&[], data)) => {
                            let mut ctx = Ctx {
                                shared: &self.shared,
                                session: &mut self.session,
                                out: &mut self.out,
                                io: &mut self.io,
                                broken: false,
                                list_options: ListOptions::default(),
                            };
                            match authenticate::finish(&mut ctx, data).await {
                                Ok(reply) => reply,
                                Err(error) => self.error_reply(name, &error),
                            }
                        }
                        _ => Reply::bad("invalid SASL response, expected base64"),
                    };
                    self.complete(tag, name, started, &reply);
                    return Ok(match reply.next {
                        Next::Bye(text) => {
                            self.out.bye(None, text);
                            Flow::Close
                        }
                        _ => Flow::Continue,
                    });
                }
                Frame::Rejected { .. } => {
                    self.complete(tag, name, started, &Reply::bad("SASL response too long"));
                    return Ok(Flow::Continue);
                }
                // A literal cannot be part of a SASL response; the stream is out of sync.
                Frame::Continue | Frame::Fatal { .. } => {
                    self.complete(tag, name, started, &Reply::bad("invalid SASL response"));
                    self.out.bye(None, "protocol error");
                    return Ok(Flow::Close);
                }
            }
        }
    }

    /// IDLE (RFC 2177): push updates as they happen until `DONE`. Changes are polled when the
    /// watch hub wakes the session, on every keepalive (so a lost wake-up costs at most one
    /// interval), and when a failed poll's retry is due.
    async fn idle(&mut self, tag: &Tag<'static>, name: &'static str, started: Instant) -> std::io::Result<Flow> {
        let subscription = self.session.user().zip(self.session.selected()).map(|(user, selected)| {
            self.shared.watch.subscribe(user.tenant_id, user.account_id, selected.mailbox_id)
        });
        self.out.continuation("idling");
        let mut retry = IdleRetry::new(self.shared.config.idle_keepalive);
        // Catch up on what happened before the subscription existed.
        if let Err(bye) = self.idle_poll(&mut retry).await {
            self.out.bye(None, bye);
            return Ok(Flow::Close);
        }
        self.flush().await?;
        let config = &self.shared.config;
        let deadline = Instant::now() + config.idle_timeout;
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + config.idle_keepalive, config.idle_keepalive);
        loop {
            match self.framer.poll() {
                Frame::NeedMore => {}
                Frame::Message => {
                    let message = self.framer.take_message();
                    let reply = match IdleDoneCodec::new().decode(&message) {
                        Ok((&[], _)) => Reply::ok("IDLE terminated"),
                        _ => Reply::bad("expected DONE"),
                    };
                    self.complete(tag, name, started, &reply);
                    return Ok(Flow::Continue);
                }
                Frame::Rejected { .. } => {
                    self.complete(tag, name, started, &Reply::bad("expected DONE"));
                    return Ok(Flow::Continue);
                }
                Frame::Continue | Frame::Fatal { .. } => {
                    self.complete(tag, name, started, &Reply::bad("expected DONE"));
                    self.out.bye(None, "protocol error");
                    return Ok(Flow::Close);
                }
            }
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => IdleEvent::Shutdown,
                _ = tokio::time::sleep_until(deadline) => IdleEvent::Timeout,
                _ = keepalive.tick() => IdleEvent::Keepalive,
                () = lifetime::due(&self.session) => IdleEvent::Session,
                _ = changed(subscription.as_ref()) => IdleEvent::Changed,
                _ = sleep_until(retry.due()) => IdleEvent::Changed,
                read = self.io.read(&mut self.read_buf) => IdleEvent::Read(read),
            };
            match event {
                IdleEvent::Shutdown => {
                    self.out.bye(None, "server shutting down");
                    return Ok(Flow::Close);
                }
                IdleEvent::Timeout => {
                    self.out.bye(None, "autologout; idle for too long");
                    return Ok(Flow::Close);
                }
                IdleEvent::Keepalive => {
                    // Also a poll: even a wake-up lost on the way (or never sent) costs at most
                    // one keepalive interval.
                    if let Err(bye) = self.idle_poll(&mut retry).await {
                        self.out.bye(None, bye);
                        return Ok(Flow::Close);
                    }
                    self.out.untagged(StatusKind::Ok, None, "still here");
                    self.flush().await?;
                }
                IdleEvent::Session => {
                    if let Err(bye) = lifetime::maintain(&self.shared.storage, &mut self.session).await {
                        self.out.bye(None, bye);
                        return Ok(Flow::Close);
                    }
                }
                IdleEvent::Changed => {
                    if let Err(bye) = self.idle_poll(&mut retry).await {
                        self.out.bye(None, bye);
                        return Ok(Flow::Close);
                    }
                    self.flush().await?;
                }
                IdleEvent::Read(Ok(0)) => return Ok(Flow::Close),
                IdleEvent::Read(Ok(n)) => self.framer.feed(&self.read_buf[..n]),
                IdleEvent::Read(Err(error)) => return Err(error),
            }
        }
    }
}

/// What ended a wait for client bytes.
enum Woke<T> {
    Shutdown,
    /// The session's token needs renewing, or its account's credentials changed.
    Session,
    Read(T),
}

/// What woke an idling connection.
enum IdleEvent {
    Shutdown,
    Timeout,
    Keepalive,
    /// As [`Woke::Session`].
    Session,
    Changed,
    Read(std::io::Result<usize>),
}

/// Why polling for mailbox changes did not report them.
#[derive(Debug)]
enum PollFailure {
    /// The selection is unusable; the connection ends with this BYE text.
    Bye(&'static str),
    /// The storage could not answer in time; polling again later reports the same changes.
    Transient(FrontendError),
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    use super::*;
    use crate::config::FrontendConfig;
    use crate::storage::Storage;
    use crate::storage::mock::{Mock, Server, serve};
    use crate::storage::route::RetryPolicy;
    use crate::watch::WatchHub;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// A connection over an in-memory pipe to the mock storage, with a watch hub that is never
    /// connected: the test decides which wake-ups happen.
    struct Harness {
        client: BufReader<DuplexStream>,
        shared: Arc<Shared>,
        server: Server,
        _shutdown: tokio_util::sync::DropGuard,
    }

    impl Harness {
        async fn idling(idle_keepalive: Duration) -> Self {
            let server = serve(Mock::default()).await;
            let config = FrontendConfig {
                storage_endpoints: vec![server.addr.clone()],
                allow_plaintext_auth: true,
                idle_keepalive,
                ..FrontendConfig::default()
            };
            let policy = RetryPolicy::new(Duration::from_secs(5), Duration::from_secs(1));
            let storage = Storage::new(&config.storage_endpoints, 1, policy);
            let shared = Arc::new(Shared { config, storage, watch: WatchHub::new() });
            let (client, socket) = tokio::io::duplex(64 * 1024);
            let shutdown = CancellationToken::new();
            let io = ImapStream::Plain(Box::new(socket));
            let connection = Connection::new(shared.clone(), io, None, shutdown.clone(), "s1".into());
            tokio::spawn(connection.run());
            let mut harness =
                Harness { client: BufReader::new(client), shared, server, _shutdown: shutdown.drop_guard() };
            harness.expect("* OK").await;
            harness.send("a LOGIN alice@example.org pw").await;
            harness.expect("a OK").await;
            harness.send("b SELECT INBOX").await;
            harness.expect("b OK").await;
            harness.send("c IDLE").await;
            harness.expect("+ idling").await;
            harness
        }

        async fn send(&mut self, line: &str) {
            self.client.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        }

        /// Reads lines until one starts with `prefix`; returns the lines before it.
        async fn expect(&mut self, prefix: &str) -> Vec<String> {
            let deadline = Instant::now() + DEADLINE;
            let mut seen = Vec::new();
            loop {
                let mut line = String::new();
                let read = tokio::time::timeout_at(deadline, self.client.read_line(&mut line)).await;
                let n = read.unwrap_or_else(|_| panic!("no {prefix:?} in time; got {seen:?}")).unwrap();
                assert!(n > 0, "connection closed waiting for {prefix:?}; got {seen:?}");
                if line.starts_with(prefix) {
                    return seen;
                }
                seen.push(line);
            }
        }

        /// A new message in the mock's mailbox, announced to nobody.
        fn deliver(&self, uid: u32) {
            self.server.mock.uids.lock().unwrap().push(uid);
        }
    }

    #[tokio::test]
    async fn idle_keepalive_polls_for_changes() {
        let mut harness = Harness::idling(Duration::from_millis(200)).await;
        // No watch event is ever dispatched: only the keepalive's poll can find the message.
        harness.deliver(1);
        harness.expect("* 1 EXISTS").await;
        let before = harness.expect("* OK still here").await;
        assert!(before.is_empty(), "{before:?}");
        harness.send("DONE").await;
        harness.expect("c OK").await;
    }

    #[tokio::test]
    async fn a_failed_poll_after_a_wake_up_is_retried() {
        // Keepalives are far away: only the retry of the failed poll can report the message.
        let mut harness = Harness::idling(Duration::from_secs(3600)).await;
        let polls_before = harness.server.mock.calls("changes").len();
        harness.server.mock.changes_failures.store(1, Ordering::SeqCst);
        harness.deliver(1);
        let event =
            mailraft_proto::WatchEvent { tenant_id: 1, account_id: 2, mailbox_id: 10, modseq: 1, ..Default::default() };
        harness.shared.watch.dispatch(&event);
        harness.expect("* 1 EXISTS").await;
        assert_eq!(harness.server.mock.calls("changes").len(), polls_before + 2, "one failed poll, one retry");
    }

    #[tokio::test]
    async fn a_resync_whose_flag_fetch_failed_is_reported_by_the_retry() {
        let mut harness = Harness::idling(Duration::from_secs(3600)).await;
        let mock = &harness.server.mock;
        mock.resync.store(true, Ordering::SeqCst);
        mock.broken_fetches.store(1, Ordering::SeqCst);
        harness.deliver(1);
        let event =
            mailraft_proto::WatchEvent { tenant_id: 1, account_id: 2, mailbox_id: 10, modseq: 1, ..Default::default() };
        harness.shared.watch.dispatch(&event);
        // The first poll fails half-way, at the flag FETCH after the fresh SELECT: what it
        // wrote (EXISTS, the first chunk's flags) stands, but the failed poll is retried and
        // reports the flags again (`session/updates.rs` tests that the modseq stayed).
        harness.expect("* 1 EXISTS").await;
        harness.expect("* 1 FETCH").await;
        harness.expect("* 1 FETCH").await;
        assert_eq!(harness.server.mock.calls("fetch").len(), 2);
    }

    #[test]
    fn idle_retry_backs_off_up_to_the_keepalive_and_resets() {
        let mut retry = IdleRetry::new(Duration::from_secs(3));
        let now = Instant::now();
        assert_eq!(retry.due(), None);
        assert_eq!(retry.schedule(now), now + Duration::from_secs(1));
        assert_eq!(retry.schedule(now), now + Duration::from_secs(2));
        assert_eq!(retry.schedule(now), now + Duration::from_secs(3));
        assert_eq!(retry.schedule(now), now + Duration::from_secs(3));
        retry.clear();
        assert_eq!(retry.due(), None);
        assert_eq!(retry.schedule(now), now + Duration::from_secs(1));
    }

    #[test]
    fn describes_bad_input_without_echoing_it() {
        assert_eq!(describe_undecodable(b"a1 FROB x\r\n", true), "unknown command");
        assert_eq!(describe_undecodable(b"a1 login\r\n", true), "syntax error in LOGIN arguments");
        assert_eq!(describe_undecodable(b"a1\r\n", true), "invalid command: missing command name");
        assert_eq!(describe_undecodable(b"\x00\x01\r\n", false), "invalid command: missing or invalid tag");
    }
}
