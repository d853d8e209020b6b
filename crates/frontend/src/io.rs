//! The client byte stream: cleartext or TLS, switchable by STARTTLS.
//!
//! Connections are boxed behind [`Io`] so the connection loop runs the same over a TCP socket
//! and over an in-memory duplex pipe in tests.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Anything a client connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A client stream.
pub enum ImapStream {
    /// Cleartext.
    Plain(Box<dyn Io>),
    /// TLS over the underlying stream.
    Tls(Box<TlsStream<Box<dyn Io>>>),
    /// Placeholder while a STARTTLS handshake owns the stream; I/O on it fails.
    Upgrading,
}

impl ImapStream {
    /// Whether the stream is encrypted (decides LOGINDISABLED, RFC 3501 §6.2.3).
    pub fn is_tls(&self) -> bool {
        matches!(self, ImapStream::Tls(_))
    }

    /// Runs a TLS handshake on a cleartext stream (implicit TLS or STARTTLS).
    pub async fn upgrade(self, config: Arc<rustls::ServerConfig>) -> std::io::Result<ImapStream> {
        match self {
            ImapStream::Plain(io) => {
                let tls = TlsAcceptor::from(config).accept(io).await?;
                Ok(ImapStream::Tls(Box::new(tls)))
            }
            other => Ok(other),
        }
    }
}

fn upgrading() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "stream is being upgraded to TLS")
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            ImapStream::Tls(io) => Pin::new(io).poll_read(cx, buf),
            ImapStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            ImapStream::Tls(io) => Pin::new(io).poll_write(cx, buf),
            ImapStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(io) => Pin::new(io).poll_flush(cx),
            ImapStream::Tls(io) => Pin::new(io).poll_flush(cx),
            ImapStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            ImapStream::Tls(io) => Pin::new(io).poll_shutdown(cx),
            ImapStream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
