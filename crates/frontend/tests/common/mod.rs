//! Test harness: a real single-node storage cluster in a temp dir, an IMAP front-end on port 0,
//! and a minimal line-oriented IMAP client that understands literals in responses.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use mailraft_frontend::{FrontendConfig, ImapServer, TlsMode};
use mailraft_server::{NodeConfig, StorageNode};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest a test waits for any single response.
pub const WAIT: Duration = Duration::from_secs(20);

pub const USER: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse";

/// A storage node plus a front-end.
pub struct Env {
    pub node: Option<StorageNode>,
    pub imap: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Starts storage and a plaintext front-end (plaintext auth allowed).
    pub async fn start() -> Env {
        Self::start_with(|_| {}, TlsMode::Plain { starttls: None }).await
    }

    /// Starts storage and a front-end with a tweaked config and TLS mode.
    pub async fn start_with(tweak: impl FnOnce(&mut FrontendConfig), tls: TlsMode) -> Env {
        Self::start_full(|_| {}, tweak, tls).await
    }

    /// Starts storage with a tweaked node config, and a front-end with a tweaked config.
    pub async fn start_full(
        node_tweak: impl FnOnce(&mut NodeConfig),
        tweak: impl FnOnce(&mut FrontendConfig),
        tls: TlsMode,
    ) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind storage");
        let addr = listener.local_addr().expect("addr");
        let mut node_config = NodeConfig::new(1, dir.path().join("node1"), addr);
        node_config.bootstrap = true;
        node_tweak(&mut node_config);
        let node = StorageNode::start(node_config, listener).await.expect("storage node starts");
        node.ensure_tenant_user("example.org", USER, PASSWORD).await.expect("demo user");
        node.ensure_tenant_user("example.org", "bob@example.org", "bob password").await.expect("bob");

        let mut config = FrontendConfig {
            storage_endpoints: vec![addr.to_string()],
            allow_plaintext_auth: true,
            ..FrontendConfig::default()
        };
        tweak(&mut config);
        let server = ImapServer::new(config).expect("valid config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind imap");
        let imap = listener.local_addr().expect("imap addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, tls, async move {
                    let _ = rx.await;
                })
                .await
        });
        Env { node: Some(node), imap, shutdown: Some(tx), server: Some(task), _dir: dir }
    }

    /// A new client connection, greeting consumed.
    pub async fn client(&self) -> Client<TcpStream> {
        let stream = TcpStream::connect(self.imap).await.expect("connect");
        let mut client = Client::new(stream);
        let greeting = client.line().await;
        assert!(greeting.starts_with("* OK [CAPABILITY IMAP4REV1"), "{greeting}");
        client
    }

    /// A client logged in as the demo user.
    pub async fn login(&self) -> Client<TcpStream> {
        let mut client = self.client().await;
        client.ok(&format!("LOGIN {USER} \"{PASSWORD}\"")).await;
        client
    }

    /// Signals shutdown and waits for the server to drain.
    pub async fn shutdown_frontend(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.server.take() {
            tokio::time::timeout(WAIT, task).await.expect("server drains").expect("server task");
        }
    }

    pub async fn stop(mut self) {
        self.shutdown_frontend().await;
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }
}

/// A minimal IMAP client for tests.
pub struct Client<S> {
    io: BufReader<S>,
    next_tag: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(io: S) -> Self {
        Self { io: BufReader::new(io), next_tag: 1 }
    }

    pub fn into_inner(self) -> S {
        self.io.into_inner()
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.expect("write");
        self.io.get_mut().flush().await.expect("flush");
    }

    /// Reads one response line; literals (`{n}`) are read and inlined.
    pub async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.read_logical_line()).await.expect("response within deadline")
    }

    /// Reads one line if it arrives within `wait`.
    pub async fn line_within(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.read_logical_line()).await.ok()
    }

    async fn read_logical_line(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.io.read_until(b'\n', &mut line).await.expect("read");
            if n == 0 {
                return String::from_utf8_lossy(&out).into_owned() + "<EOF>";
            }
            out.extend_from_slice(&line);
            if let Some(len) = literal_len(&line) {
                let mut literal = vec![0; len];
                self.io.read_exact(&mut literal).await.expect("literal");
                out.extend_from_slice(&literal);
                continue;
            }
            let text = String::from_utf8_lossy(&out).into_owned();
            return text.trim_end_matches(['\r', '\n']).to_owned();
        }
    }

    /// Sends `command` with a fresh tag; returns untagged lines and the tagged line.
    pub async fn run(&mut self, command: &str) -> (Vec<String>, String) {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.until_tagged(&tag).await
    }

    /// Reads until the tagged response for `tag`.
    pub async fn until_tagged(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await;
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            assert!(!line.ends_with("<EOF>"), "connection closed while waiting for {tag}: {untagged:?} {line}");
            untagged.push(line);
        }
    }

    /// Runs a command that must succeed; returns its untagged responses.
    pub async fn ok(&mut self, command: &str) -> Vec<String> {
        let (untagged, tagged) = self.run(command).await;
        assert!(tagged.split(' ').nth(1) == Some("OK"), "{command} failed: {untagged:?} {tagged}");
        untagged
    }

    /// Runs a command; returns the tagged line.
    pub async fn tagged(&mut self, command: &str) -> String {
        self.run(command).await.1
    }

    /// Appends `message` to `mailbox` with a synchronizing literal; returns the tagged line.
    pub async fn append(&mut self, mailbox: &str, flags: &str, message: &str) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.send(format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes()).await;
        let cont = self.line().await;
        assert!(cont.starts_with("+ "), "expected continuation, got {cont}");
        self.send(message.as_bytes()).await;
        self.send(b"\r\n").await;
        self.until_tagged(&tag).await.1
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

/// A small RFC 5322 message.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Bob <bob@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    )
}
