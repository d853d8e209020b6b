//! A minimal LMTP client (RFC 2033) for the `append` workload's delivery path: LHLO once, then
//! per message MAIL FROM, RCPT TO, DATA with dot-stuffing, and one reply per recipient.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::error::ClientError;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An LMTP session.
pub struct Lmtp {
    io: BufReader<Box<dyn Io>>,
    timeout: Duration,
}

impl Lmtp {
    /// Connects to `endpoint`: `host:port`, or a unix socket path (anything containing `/`).
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Lmtp, ClientError> {
        let io: Box<dyn Io> = if endpoint.contains('/') {
            Box::new(
                with_timeout(timeout, async {
                    UnixStream::connect(endpoint)
                        .await
                        .map_err(ClientError::Connect)
                })
                .await?,
            )
        } else {
            Box::new(
                with_timeout(timeout, async {
                    TcpStream::connect(endpoint)
                        .await
                        .map_err(ClientError::Connect)
                })
                .await?,
            )
        };
        let mut s = Lmtp {
            io: BufReader::new(io),
            timeout,
        };
        s.expect(220).await?;
        s.send(b"LHLO mailraft-bench.localhost\r\n").await?;
        s.expect(250).await?;
        Ok(s)
    }

    /// Delivers one message to one recipient; returns the final reply code.
    pub async fn deliver(&mut self, rcpt: &str, message: &[u8]) -> Result<u16, ClientError> {
        self.send(b"MAIL FROM:<bench@mailraft-bench.localhost>\r\n")
            .await?;
        self.expect(250).await?;
        self.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .await?;
        let code = self.reply().await?;
        if code != 250 {
            self.send(b"RSET\r\n").await?;
            self.reply().await?;
            return Ok(code);
        }
        self.send(b"DATA\r\n").await?;
        self.expect(354).await?;
        self.send(&dot_stuff(message)).await?;
        // RFC 2033 §4.2: one reply per accepted recipient after the final dot.
        self.reply().await
    }

    /// QUIT, ignoring errors (the run is over).
    pub async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }

    async fn send(&mut self, b: &[u8]) -> Result<(), ClientError> {
        let t = self.timeout;
        with_timeout(t, async {
            self.io
                .get_mut()
                .write_all(b)
                .await
                .map_err(ClientError::Io)
        })
        .await
    }

    async fn expect(&mut self, want: u16) -> Result<(), ClientError> {
        let code = self.reply().await?;
        if code != want {
            return Err(ClientError::Protocol(format!(
                "LMTP reply {code}, expected {want}"
            )));
        }
        Ok(())
    }

    /// Reads a possibly multi-line reply (`250-...` continues, `250 ...` ends) and returns its code.
    async fn reply(&mut self) -> Result<u16, ClientError> {
        // Bounded: a reply longer than 1000 lines is a broken server.
        for _ in 0..1000 {
            let mut line = String::new();
            let t = self.timeout;
            let n = with_timeout(t, async {
                self.io.read_line(&mut line).await.map_err(ClientError::Io)
            })
            .await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| ClientError::Protocol("LMTP reply without a code".into()))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
        Err(ClientError::Protocol("LMTP reply too long".into()))
    }
}

async fn with_timeout<T>(
    t: Duration,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(t, f)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// RFC 5321 §4.5.2 transparency: a leading `.` on a line is doubled; ends with `CRLF.CRLF`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
