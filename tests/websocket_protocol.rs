//! WebSocket faults seen from a raw socket: frames that break RFC 6455,
//! bad UTF-8 and a missed ping each get their close code, and the close
//! frame reaches the peer whole, followed by a clean end of stream rather
//! than a reset.
//!
//! The client here is hand-made on purpose: a WebSocket library would not
//! send an unmasked frame or a reserved opcode, and it would answer pings.

mod common;

use std::io;
use std::net::SocketAddr;

use chatgate::server::ListenerKind;
use common::clients::Conn;
use common::{ServerLines, TestServer, WAIT, WELCOME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The mask key of every frame the test client sends.
const KEY: [u8; 4] = [0x5a, 0x0f, 0xc3, 0x81];

/// A client frame with the first header byte `first` (FIN, RSV, opcode),
/// masked unless `masked` is false.
fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&KEY);
        frame.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// A masked frame, as a client must send it.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(first, payload, true)
}

/// A close frame with `code` and `reason`.
fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    masked(0x88, &payload)
}

/// Several frames in one buffer.
fn frames(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A frame from the server.
#[derive(Debug, PartialEq)]
enum ServerFrame {
    Text(String),
    Ping,
    /// The close code, if any, and the reason.
    Close(Option<u16>, String),
    Other(u8),
}

/// A WebSocket connection driven byte by byte.
struct RawWs {
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
}

impl RawWs {
    /// Connects to `/ws` and completes the upgrade by hand.
    async fn connect(addr: SocketAddr) -> RawWs {
        let mut stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send upgrade");
        let mut ws = RawWs {
            stream,
            input: Vec::new(),
        };
        let end = loop {
            if let Some(at) = ws.input.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                ws.read_more().await.expect("read the answer"),
                "closed during the upgrade"
            );
        };
        let head = String::from_utf8_lossy(&ws.input[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        ws.input.drain(..end);
        ws
    }

    /// A connection whose welcome has been read.
    async fn welcomed(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::connect(addr).await;
        for line in WELCOME {
            assert_eq!(ws.frame().await, Some(ServerFrame::Text(line.into())));
        }
        ws
    }

    /// Reads what the kernel has, waiting at most [`WAIT`]; false at the end
    /// of the stream. A reset is an error.
    async fn read_more(&mut self) -> io::Result<bool> {
        let mut chunk = [0; 4096];
        let n = timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("nothing from the server within {WAIT:?}"))?;
        self.input.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Makes sure `n` bytes are buffered; false if the stream ended first.
    async fn fill(&mut self, n: usize) -> bool {
        while self.input.len() < n {
            match self.read_more().await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => panic!("read failed inside a frame: {e}"),
            }
        }
        true
    }

    /// The next whole frame, or `None` at the end of the stream between
    /// frames. A frame cut short fails the test.
    async fn frame(&mut self) -> Option<ServerFrame> {
        if !self.fill(2).await {
            assert!(self.input.is_empty(), "stream ended inside a frame header");
            return None;
        }
        let (first, second) = (self.input[0], self.input[1]);
        assert_eq!(second & 0x80, 0, "server frames are not masked");
        let (header, len) = match second & 0x7F {
            126 => {
                assert!(self.fill(4).await, "stream ended inside a frame header");
                (
                    4,
                    u16::from_be_bytes([self.input[2], self.input[3]]) as usize,
                )
            }
            127 => {
                assert!(self.fill(10).await, "stream ended inside a frame header");
                let len: [u8; 8] = self.input[2..10].try_into().unwrap();
                (10, u64::from_be_bytes(len) as usize)
            }
            len => (2, len as usize),
        };
        assert!(self.fill(header + len).await, "stream ended inside a frame");
        let payload: Vec<u8> = self.input.drain(..header + len).skip(header).collect();
        assert_ne!(first & 0x80, 0, "server frames are not fragmented");
        Some(match first & 0x0F {
            0x1 => ServerFrame::Text(String::from_utf8(payload).expect("UTF-8 text")),
            0x9 => ServerFrame::Ping,
            0x8 => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                ServerFrame::Close(code, reason.into_owned())
            }
            op => ServerFrame::Other(op),
        })
    }

    /// Reads up to the close frame; returns its code and the texts and
    /// pings before it.
    async fn until_close(&mut self) -> (Option<u16>, Vec<ServerFrame>) {
        let mut before = Vec::new();
        loop {
            match self.frame().await {
                Some(ServerFrame::Close(code, _)) => return (code, before),
                Some(frame) => before.push(frame),
                None => panic!("closed without a close frame after {before:?}"),
            }
        }
    }

    /// Asserts that nothing follows the close frame and that the stream
    /// then ends cleanly: a FIN, not a reset.
    async fn expect_clean_end(&mut self) {
        assert!(
            self.input.is_empty(),
            "bytes after the close frame: {:?}",
            self.input
        );
        match self.read_more().await {
            Ok(false) => {}
            Ok(true) => panic!("bytes after the close frame: {:?}", self.input),
            Err(e) => panic!("the connection ended with {e} instead of a clean end"),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("send timed out")
            .expect("send");
    }

    /// Ends the sending direction, as a client that has said everything.
    async fn finish(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

async fn server() -> TestServer {
    TestServer::start(&["--http", "127.0.0.1:0"]).await
}

/// Each breach of RFC 6455, as the bytes a client sends after the welcome.
fn violations() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("unmasked frame".into(), client_frame(0x81, b"hello", false)),
        ("RSV1".into(), masked(0xC1, b"hello")),
        ("RSV2".into(), masked(0xA1, b"hello")),
        ("RSV3".into(), masked(0x91, b"hello")),
        (
            "continuation with no message open".into(),
            masked(0x80, b"hello"),
        ),
        (
            "text inside a fragmented message".into(),
            frames(&[masked(0x01, b"hel"), masked(0x81, b"lo")]),
        ),
        (
            "binary inside a fragmented message".into(),
            frames(&[masked(0x02, b"hel"), masked(0x00, b"l"), masked(0x82, b"o")]),
        ),
        ("fragmented ping".into(), masked(0x09, b"ping")),
        (
            "fragmented close".into(),
            masked(0x08, &1000u16.to_be_bytes()),
        ),
        ("126-byte ping".into(), masked(0x89, &[b'p'; 126])),
        ("126-byte pong".into(), masked(0x8A, &[b'p'; 126])),
        ("126-byte close".into(), close_frame(1000, &[b'r'; 124])),
        // Longer than a message may be: a protocol error all the same,
        // not a message over the limit.
        ("70000-byte ping".into(), masked(0x89, &[b'p'; 70_000])),
        ("close with a 1-byte payload".into(), masked(0x88, &[0x03])),
    ];
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        cases.push((format!("reserved opcode {op:#x}"), masked(0x80 | op, b"x")));
    }
    // A length in a longer form than it needs (RFC 6455, 5.2).
    for (name, length) in [
        ("5 as a 16-bit length", vec![0xFE, 0, 5]),
        ("5 as a 64-bit length", vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 5]),
    ] {
        let mut frame = vec![0x81];
        frame.extend(length);
        frame.extend(KEY);
        frame.extend(b"hello".iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
        cases.push((name.into(), frame));
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        cases.push((format!("close code {code}"), close_frame(code, b"bye")));
    }
    cases
}

#[tokio::test]
async fn every_rfc6455_violation_closes_with_1002() {
    let server = server().await;
    let addr = server.addr(ListenerKind::Http);
    for (name, bytes) in violations() {
        let mut ws = RawWs::welcomed(addr).await;
        ws.send(&bytes).await;
        let (code, before) = ws.until_close().await;
        assert_eq!(code, Some(1002), "{name}");
        assert_eq!(
            before,
            [ServerFrame::Text("ERROR protocol error".into())],
            "{name}"
        );
        ws.finish().await;
        ws.expect_clean_end().await;
    }
}

#[tokio::test]
async fn a_violation_by_a_member_ends_its_session_and_lines_before_it_count() {
    let server = server().await;
    let addr = server.addr(ListenerKind::Http);
    let mut watcher = Conn::ws(addr).await;
    watcher.join("r", "watcher").await;
    let mut ws = RawWs::welcomed(addr).await;
    // A JOIN, a line, then a broken frame, all in one write.
    ws.send(&frames(&[
        masked(0x81, b"JOIN r amy"),
        masked(0x81, b"hello"),
        masked(0xC1, b"compressed?"),
    ]))
    .await;
    watcher.expect_line("amy has joined").await;
    watcher.expect_line("amy: hello").await;
    watcher.expect_line("amy has left").await;
    let (code, before) = ws.until_close().await;
    assert_eq!(code, Some(1002));
    assert_eq!(
        before,
        [
            ServerFrame::Text("amy has joined".into()),
            ServerFrame::Text("amy: hello".into()),
            ServerFrame::Text("ERROR protocol error".into()),
        ]
    );
}

#[tokio::test]
async fn a_close_frame_with_a_code_that_may_be_sent_gets_a_normal_close() {
    let server = server().await;
    let addr = server.addr(ListenerKind::Http);
    for code in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let mut ws = RawWs::welcomed(addr).await;
        ws.send(&close_frame(code, b"bye")).await;
        let (answer, before) = ws.until_close().await;
        assert_eq!(answer, Some(1000), "after {code}");
        assert_eq!(before, [], "after {code}");
        // The server closes first, as RFC 6455 wants, without waiting for
        // this side to.
        ws.expect_clean_end().await;
    }
    let mut ws = RawWs::welcomed(addr).await;
    ws.send(&masked(0x88, b"")).await;
    assert_eq!(ws.until_close().await, (Some(1000), vec![]));
    ws.expect_clean_end().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let server = server().await;
    let mut ws = RawWs::welcomed(server.addr(ListenerKind::Http)).await;
    ws.send(&masked(0x81, b"caf\xe9")).await;
    let (code, before) = ws.until_close().await;
    assert_eq!(code, Some(1007));
    assert_eq!(before, [ServerFrame::Text("ERROR invalid UTF-8".into())]);
    ws.finish().await;
    ws.expect_clean_end().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_fragmented_text_message_closes_with_1007() {
    let server = server().await;
    let mut ws = RawWs::welcomed(server.addr(ListenerKind::Http)).await;
    ws.send(&frames(&[masked(0x01, b"caf\xc3"), masked(0x80, b"\x28")]))
        .await;
    let (code, _) = ws.until_close().await;
    assert_eq!(code, Some(1007));
    ws.finish().await;
    ws.expect_clean_end().await;
}

#[tokio::test]
async fn a_close_reason_that_is_not_utf8_closes_with_1007() {
    let server = server().await;
    let mut ws = RawWs::welcomed(server.addr(ListenerKind::Http)).await;
    ws.send(&close_frame(1000, b"bye \xff\xfe")).await;
    let (code, _) = ws.until_close().await;
    assert_eq!(code, Some(1007));
    // The bad close was the peer's last frame: the server does not wait
    // for more.
    ws.expect_clean_end().await;
}

#[tokio::test]
async fn a_message_over_the_limit_still_closes_with_1009() {
    let server = server().await;
    let mut ws = RawWs::welcomed(server.addr(ListenerKind::Http)).await;
    ws.send(&masked(0x82, &vec![b'x'; 20_003])).await;
    let (code, before) = ws.until_close().await;
    assert_eq!(code, Some(1009));
    assert_eq!(before, [ServerFrame::Text("ERROR line too long".into())]);
    // A client answering the close, as browsers do, is let go at once.
    ws.send(&close_frame(1009, b"")).await;
    ws.expect_clean_end().await;
}

#[tokio::test]
async fn a_peer_that_misses_a_ping_is_closed_with_1008() {
    let server = TestServer::start(&["--http", "127.0.0.1:0", "--ws-ping-interval", "1"]).await;
    let mut ws = RawWs::welcomed(server.addr(ListenerKind::Http)).await;
    // This client never answers: a ping, then by the next one the close.
    let (code, before) = ws.until_close().await;
    assert_eq!(code, Some(1008));
    assert!(!before.is_empty(), "pinged before being dropped");
    assert!(before.iter().all(|f| *f == ServerFrame::Ping), "{before:?}");
    ws.finish().await;
    ws.expect_clean_end().await;
}

#[tokio::test]
async fn after_a_protocol_error_garbage_is_drained_and_the_close_arrives_whole() {
    let server = server().await;
    let addr = server.addr(ListenerKind::Http);
    // Garbage of several kinds after the bad frame: more frames, bytes
    // that parse as a close frame, and plain noise.
    let garbage: [Vec<u8>; 3] = [
        masked(0x81, &[b'g'; 64 * 1024]),
        [close_frame(1000, b""), vec![0x78; 64 * 1024]].concat(),
        (0..64 * 1024).map(|i| (i * 7 + 3) as u8).collect(),
    ];
    let mut clients = Vec::new();
    for garbage in garbage {
        clients.push(tokio::spawn(async move {
            let mut ws = RawWs::welcomed(addr).await;
            let mut bytes = client_frame(0x81, b"unmasked", false);
            bytes.extend(garbage);
            ws.send(&bytes).await;
            // Everything is sent and this side stays open: the server
            // stops reading only after its linger, and all it was sent has
            // been read by then, so it ends with a FIN.
            let (code, _) = ws.until_close().await;
            assert_eq!(code, Some(1002));
            ws.expect_clean_end().await;
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
}
