//! One LMTP connection: reads bytes under the idle deadline, hands command lines, DATA bodies and
//! BDAT chunks to the [`Session`], and writes its replies. Generic over the stream so the same
//! loop serves TCP, Unix sockets and in-memory pipes in tests.
//!
//! Pipelining (RFC 2920 §3.1): replies are collected while whole command lines are waiting in
//! the input and sent once the server would have to wait for the client, so a pipelined group
//! gets its replies in one write and a client that waits for each reply gets it at once.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::LmtpConfig;
use super::protocol::{Body, Line, LineReader, Progress, Reply};
use super::session::{Backend, Next, Session, Step};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum EndReason {
    #[error("client closed the connection")]
    Eof,
    #[error("idle timeout")]
    Idle,
    #[error("write timeout")]
    WriteTimeout,
    #[error("server shutting down")]
    Shutdown,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs one connection to its end.
pub async fn serve<S, B>(io: S, backend: &B, config: LmtpConfig, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let mut conn = Conn {
        io,
        input: BytesMut::with_capacity(4096),
        output: Vec::new(),
        lines: LineReader::new(config.max_line_bytes),
        config: config.clone(),
        shutdown,
    };
    let mut session = Session::new(config);
    let greeting = session.greeting();
    greeting.write_to(&mut conn.output);
    match conn.run(&mut session, backend).await {
        Ok(()) => {}
        Err(EndReason::Idle) => {
            // RFC 5321 §4.5.3.2.7: the server may close after its timeout, saying 421.
            let _ = conn.say(Reply::new(421, "4.4.2", "idle timeout, closing connection")).await;
            tracing::debug!("lmtp connection idle too long");
        }
        Err(EndReason::Shutdown) => {
            let _ = conn.say(Reply::new(421, "4.3.2", "server shutting down")).await;
        }
        Err(e) => tracing::debug!(error = %e, "lmtp connection ended"),
    }
}

struct Conn<S> {
    io: S,
    input: BytesMut,
    output: Vec<u8>,
    lines: LineReader,
    config: LmtpConfig,
    shutdown: CancellationToken,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn run<B: Backend>(&mut self, session: &mut Session, backend: &B) -> Result<(), EndReason> {
        loop {
            let step = match self.lines.next(&mut self.input) {
                Some(Line::Complete(line)) => session.command(backend, &line).await,
                Some(Line::TooLong) => session.line_too_long(),
                None => {
                    self.fill().await?;
                    continue;
                }
            };
            if self.apply(step, session, backend).await? {
                return Ok(());
            }
        }
    }

    /// Queues a step's replies and reads whatever it asks for next; true when the connection
    /// is to be closed.
    async fn apply<B: Backend>(&mut self, mut step: Step, session: &mut Session, backend: &B) -> Result<bool, EndReason> {
        loop {
            for reply in &step.replies {
                reply.write_to(&mut self.output);
            }
            step = match step.next {
                Next::Command => return Ok(false),
                Next::Close => {
                    self.flush().await?;
                    return Ok(true);
                }
                Next::Data(mut reader) => {
                    while reader.feed(&mut self.input) == Progress::NeedMore {
                        self.fill().await?;
                    }
                    session.data_done(backend, reader.into_body()).await
                }
                Next::Chunk(mut reader) => {
                    let mut sink = Body::new(0);
                    loop {
                        let body = match session.chunk_body() {
                            Some(body) => body,
                            None => &mut sink,
                        };
                        if reader.feed(&mut self.input, body) == Progress::Done {
                            break;
                        }
                        self.fill().await?;
                    }
                    session.chunk_done(backend).await
                }
            };
        }
    }

    /// Sends queued replies if no whole command is waiting, then reads more input under the
    /// idle deadline.
    async fn fill(&mut self) -> Result<(), EndReason> {
        self.flush().await?;
        self.input.reserve(READ_CHUNK);
        let read = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(EndReason::Shutdown),
            read = tokio::time::timeout(self.config.idle_timeout, self.io.read_buf(&mut self.input)) => read,
        };
        match read {
            Err(_) => Err(EndReason::Idle),
            Ok(Ok(0)) => Err(EndReason::Eof),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Writes the queued replies under the write deadline.
    async fn flush(&mut self) -> Result<(), EndReason> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        let write = async {
            self.io.write_all(&out).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.config.write_timeout, write).await {
            Err(_) => Err(EndReason::WriteTimeout),
            Ok(result) => Ok(result?),
        }
    }

    async fn say(&mut self, reply: Reply) -> Result<(), EndReason> {
        reply.write_to(&mut self.output);
        self.flush().await
    }
}
