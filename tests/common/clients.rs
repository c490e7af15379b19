//! Clients of every transport behind one type, so a test can put a telnet
//! user, a TLS user and a WebSocket user in one room and read them alike.
//!
//! TLS clients trust only the test's own certificate ([`TestCert`]): the
//! handshake is verified for real, against `localhost`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::{ServerLines, WAIT};

/// A self-signed certificate for localhost, written to a temporary
/// directory for the server's `--cert` and `--key`.
pub struct TestCert {
    /// Holds the files for as long as the test runs.
    pub dir: tempfile::TempDir,
    /// The certificate, DER, for clients to trust.
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// Generates a new pair.
    pub fn new() -> TestCert {
        let dir = tempfile::tempdir().expect("temp dir");
        let der =
            TestCert::write_new_pair(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
        TestCert { dir, der }
    }

    /// Writes a fresh pair to the given paths and returns the certificate.
    pub fn write_new_pair(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> CertificateDer<'static> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let pair = rcgen::generate_simple_self_signed(names).expect("generate certificate");
        std::fs::write(cert, pair.cert.pem()).expect("write cert");
        std::fs::write(key, pair.signing_key.serialize_pem()).expect("write key");
        pair.cert.der().clone()
    }

    /// The certificate's path.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The key's path.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// `--cert PATH --key PATH` for the server's command line.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.cert_path().display().to_string(),
            "--key".into(),
            self.key_path().display().to_string(),
        ]
    }

    /// A TLS connector that trusts exactly these certificates.
    pub fn connector(trusted: &[&CertificateDer<'static>]) -> TlsConnector {
        TestCert::connector_for(trusted, rustls::DEFAULT_VERSIONS)
    }

    /// The same, speaking only the given TLS versions.
    pub fn connector_for(
        trusted: &[&CertificateDer<'static>],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in trusted {
            roots.add((*cert).clone()).expect("trust certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// Connects TLS to `addr` as `localhost`, trusting `cert`.
pub async fn tls_stream(
    addr: SocketAddr,
    trusted: &[&CertificateDer<'static>],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    timeout(WAIT, TestCert::connector(trusted).connect(name, tcp))
        .await
        .expect("tls handshake timed out")
}

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;
type BoxWs = WebSocketStream<Box<dyn AsyncReadWrite>>;

/// A byte stream for a WebSocket client, plain or TLS.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

/// A chat client over any transport.
pub enum Conn {
    /// TCP or TLS: lines end in `\r\n`.
    Stream {
        reader: BufReader<BoxRead>,
        writer: BoxWrite,
    },
    /// WebSocket: a text message per line.
    Ws {
        ws: Box<BoxWs>,
        /// The close frame the server sent, once it did.
        closed_with: Option<Option<CloseFrame>>,
    },
}

impl Conn {
    /// Plain TCP.
    pub async fn tcp(addr: SocketAddr) -> Conn {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let (read, write) = stream.into_split();
        Conn::Stream {
            reader: BufReader::new(Box::new(read)),
            writer: Box::new(write),
        }
    }

    /// TLS, trusting `cert`.
    pub async fn tls(addr: SocketAddr, cert: &TestCert) -> Conn {
        let stream = tls_stream(addr, &[&cert.der]).await.expect("tls connect");
        let (read, write) = tokio::io::split(stream);
        Conn::Stream {
            reader: BufReader::new(Box::new(read)),
            writer: Box::new(write),
        }
    }

    /// WebSocket at `ws://addr/ws`.
    pub async fn ws(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Conn::ws_over(Box::new(tcp), &format!("ws://{addr}/ws")).await
    }

    /// WebSocket at `wss://localhost:port/ws`, trusting `cert`.
    pub async fn wss(addr: SocketAddr, cert: &TestCert) -> Conn {
        let tls = tls_stream(addr, &[&cert.der]).await.expect("tls connect");
        Conn::ws_over(
            Box::new(tls),
            &format!("wss://localhost:{}/ws", addr.port()),
        )
        .await
    }

    /// WebSocket asking for JSON events (the `chatgate.v2.json`
    /// subprotocol); asserts that the server agreed.
    pub async fn ws_json(addr: SocketAddr) -> Conn {
        Conn::ws_offering(addr, "chatgate.v2.json", true).await
    }

    /// WebSocket offering `protocols` (a `Sec-WebSocket-Protocol` value);
    /// asserts whether the server picked `chatgate.v2.json`.
    pub async fn ws_offering(addr: SocketAddr, protocols: &str, agreed: bool) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Conn::ws_offering_over(Box::new(tcp), addr, protocols, agreed).await
    }

    async fn ws_offering_over(
        tcp: Box<dyn AsyncReadWrite>,
        addr: SocketAddr,
        protocols: &str,
        agreed: bool,
    ) -> Conn {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.parse().expect("header value"),
        );
        let (ws, response) = timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
            .await
            .expect("websocket handshake timed out")
            .expect("websocket handshake");
        let picked = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        assert_eq!(
            picked.as_deref(),
            agreed.then_some("chatgate.v2.json"),
            "the subprotocol the server picked"
        );
        Conn::Ws {
            ws: Box::new(ws),
            closed_with: None,
        }
    }

    /// WebSocket at `ws://addr/ws` over a TCP connection the test made
    /// (from another loopback address, say), asking for JSON events if
    /// `json`.
    pub async fn ws_over_stream(tcp: TcpStream, addr: SocketAddr, json: bool) -> Conn {
        if json {
            Conn::ws_offering_over(Box::new(tcp), addr, "chatgate.v2.json", true).await
        } else {
            Conn::ws_over(Box::new(tcp), &format!("ws://{addr}/ws")).await
        }
    }

    /// The next message, which must be a JSON event of type `kind`.
    pub async fn expect_event(&mut self, kind: &str) -> serde_json::Value {
        let event = self.next_event().await;
        assert_eq!(event["type"], kind, "event {event}");
        event
    }

    /// The next message, as a JSON event.
    pub async fn next_event(&mut self) -> serde_json::Value {
        let text = self.read_line().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
    }

    async fn ws_over(stream: Box<dyn AsyncReadWrite>, url: &str) -> Conn {
        let (ws, _) = timeout(WAIT, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("websocket handshake timed out")
            .expect("websocket handshake");
        Conn::Ws {
            ws: Box::new(ws),
            closed_with: None,
        }
    }

    /// Sends one line (`\n`-terminated on streams, one message on WebSocket).
    pub async fn send_line(&mut self, text: &str) {
        match self {
            Conn::Stream { writer, .. } => {
                let line = format!("{text}\n");
                timeout(WAIT, writer.write_all(line.as_bytes()))
                    .await
                    .expect("send timed out")
                    .expect("send");
            }
            Conn::Ws { ws, .. } => {
                timeout(WAIT, ws.send(Message::text(text)))
                    .await
                    .expect("send timed out")
                    .expect("send");
            }
        }
    }

    /// Sends bytes as they are, in one write, and flushes them (TCP and
    /// TLS only: over TLS they go out as one record).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let Conn::Stream { writer, .. } = self else {
            panic!("not a byte stream client")
        };
        timeout(WAIT, async {
            writer.write_all(bytes).await?;
            writer.flush().await
        })
        .await
        .expect("send timed out")
        .expect("send");
    }

    /// Closes the sending direction, reading stays open (TCP and TLS
    /// only): a TCP FIN, or over TLS a close_notify and then the FIN.
    pub async fn finish(&mut self) {
        let Conn::Stream { writer, .. } = self else {
            panic!("not a byte stream client")
        };
        timeout(WAIT, writer.shutdown())
            .await
            .expect("shutdown timed out")
            .expect("shutdown");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_message(&mut self, message: Message) {
        let Conn::Ws { ws, .. } = self else {
            panic!("not a WebSocket client")
        };
        timeout(WAIT, ws.send(message))
            .await
            .expect("send timed out")
            .expect("send");
    }

    /// The next line, waiting at most `limit` for it.
    pub async fn next_line_within(&mut self, limit: Duration) -> Option<String> {
        match self {
            Conn::Stream { reader, .. } => {
                let mut buf = Vec::new();
                let read = timeout(limit, reader.read_until(b'\n', &mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("no line within {limit:?}"));
                match read {
                    Ok(0) => None,
                    Ok(_) => {
                        let text = buf.strip_suffix(b"\r\n").expect("line ends with \\r\\n");
                        Some(String::from_utf8(text.to_vec()).expect("UTF-8"))
                    }
                    Err(e) => panic!("read failed: {e}"),
                }
            }
            Conn::Ws { ws, closed_with } => loop {
                let message = timeout(limit, ws.next())
                    .await
                    .unwrap_or_else(|_| panic!("no message within {limit:?}"));
                match message {
                    Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                    Some(Ok(Message::Close(frame))) => {
                        *closed_with = Some(frame);
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => return None,
                }
            },
        }
    }

    /// The next `n` lines, each within `limit`, sorted: for lines whose
    /// order between them is not promised.
    pub async fn next_lines_sorted(&mut self, n: usize, limit: Duration) -> Vec<String> {
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            let line = self.next_line_within(limit).await;
            lines.push(line.expect("connection closed while lines were expected"));
        }
        lines.sort();
        lines
    }

    /// Asserts that the next line is `expected` and comes within `limit`.
    pub async fn expect_line_within(&mut self, expected: &str, limit: Duration) {
        let line = self
            .next_line_within(limit)
            .await
            .expect("connection closed while a line was expected");
        assert_eq!(line, expected);
    }

    /// The WebSocket close code the server sent.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Conn::Ws {
                closed_with: Some(Some(frame)),
                ..
            } => Some(frame.code.into()),
            _ => None,
        }
    }

    /// Reads the welcome, joins, and reads its own `has joined`.
    pub async fn join(&mut self, room: &str, user: &str) {
        self.expect_line("Welcome! Use the command:").await;
        self.expect_line("JOIN <ROOMNAME> <USERNAME>").await;
        self.send_line(&format!("JOIN {room} {user}")).await;
        self.expect_line(&format!("{user} has joined")).await;
    }
}

impl ServerLines for Conn {
    async fn next_line(&mut self) -> Option<String> {
        self.next_line_within(WAIT).await
    }
}
