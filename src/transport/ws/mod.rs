//! WebSocket: the browser and websocat transport.
//!
//! Each client message (text or binary, fragments reassembled by
//! tungstenite) holds one or more lines; each server line is one text
//! message. tungstenite enforces the message and frame size limits while
//! reading, so an oversized message is refused before it is buffered whole.
//! The writer pings the peer every `--ws-ping-interval` and gives up on a
//! peer that has not answered by the next ping.
//!
//! The two directions are shaped differently on purpose. Reading goes
//! through tungstenite's `WebSocketStream`, which does the frame parsing,
//! unmasking, reassembly and limits. Writing does not: a server frame is
//! unmasked, so a line's frame is a header from tungstenite's
//! [`FrameHeader`] followed by the line's bytes. The writer gathers a batch
//! of frames into one buffer and writes it at once, the way the TCP
//! transport writes lines, instead of pushing each line through
//! tungstenite's message machinery for every recipient. The control
//! frames tungstenite itself writes while reading go into a small
//! [`Control`] queue that the writer sends between batches, so only one task
//! ever writes to the socket and frames are never interleaved. Only pongs
//! pass that queue: the one close frame a connection sends is the writer's,
//! with the session's code.
//!
//! Before tungstenite sees a byte, [`check::FrameCheck`] follows the
//! client's frame headers in the raw input, holds back the first frame that
//! breaks RFC 6455 and tells [`WsReader::discard`] where frames end once
//! tungstenite has given up.

mod check;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control as OpCtl, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use self::check::{FrameCheck, Violation};
use super::stream::Coalescer;
use super::{LineReader, LineWriter, ReadError, Transport};
use crate::protocol::framing::{next_ws_line, split_ws_message};
use crate::protocol::json::Format;
use crate::protocol::{CloseReason, MAX_WS_MESSAGE, reply};

/// tungstenite's read buffer, allocated up front for every connection. Its
/// default (128 KiB) would make 10,000 idle users cost over a gigabyte; chat
/// lines are short, and a long one is simply read in several calls.
const READ_BUFFER: usize = 2 * 1024;

/// Most bytes of control frames waiting for the writer. Only a peer that
/// floods pings while not reading our output gets near it; past it, the
/// older pongs are dropped (a peer is owed an answer to its latest ping
/// only), so such a peer cannot make the server buffer without bound.
const MAX_CONTROL_BYTES: usize = 4 * 1024;

/// The WebSocket settings for a chat connection. tungstenite writes only
/// control frames here, straight into the [`Control`] queue, so it needs no
/// write buffer of its own.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// The header of an unfragmented, unmasked text frame: every line we send.
const TEXT: FrameHeader = FrameHeader {
    is_final: true,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode: OpCode::Data(Data::Text),
    mask: None,
};

/// An upgraded WebSocket connection over any byte stream.
pub struct Ws<S> {
    ws: WebSocketStream<Inbound<S>>,
    write: WriteHalf<S>,
    control: Arc<Control>,
    peer: SocketAddr,
    secure: bool,
    /// `--ws-ping-interval`, if on.
    ping_interval: Option<Duration>,
    /// Lines, or JSON events if the peer asked for them.
    format: Format,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Ws<S> {
    /// Wraps a stream whose HTTP upgrade has completed; `secure` when it
    /// runs inside TLS (`wss`); `format` as the upgrade agreed.
    pub async fn accept(
        io: S,
        peer: SocketAddr,
        secure: bool,
        ping_interval: Option<Duration>,
        format: Format,
    ) -> Self {
        let (read, write) = tokio::io::split(io);
        let control = Arc::new(Control::default());
        let inbound = Inbound {
            read,
            control: control.clone(),
            frames: FrameCheck::default(),
        };
        let ws = WebSocketStream::from_raw_socket(inbound, Role::Server, Some(config())).await;
        Ws {
            ws,
            write,
            control,
            peer,
            secure,
            ping_interval,
            format,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Ws<S> {
    type Reader = WsReader<S>;
    type Writer = WsWriter<S>;

    fn kind(&self) -> &'static str {
        if self.secure { "wss" } else { "ws" }
    }

    fn format(&self) -> Format {
        self.format
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn split(self) -> (Self::Reader, Self::Writer) {
        let ponged = Arc::new(AtomicBool::new(false));
        let reader = WsReader {
            ws: self.ws,
            message: Bytes::new(),
            current: Bytes::new(),
            ponged: ponged.clone(),
        };
        let writer = WsWriter {
            io: self.write,
            control: self.control,
            out: Coalescer::default(),
            ponged,
            ping_interval: self.ping_interval,
            next_ping: self.ping_interval.map(|i| Instant::now() + i),
            awaiting_pong: false,
        };
        (reader, writer)
    }
}

/// Control frames written by tungstenite on the reading side, waiting for
/// the writer task to send them.
#[derive(Debug, Default)]
struct Control {
    frames: Mutex<Vec<u8>>,
    /// Wakes the writer when frames arrive.
    ready: Notify,
}

impl Control {
    /// Queues the pongs among `frames`, which hold whole frames. Anything
    /// else tungstenite writes is dropped: the echo of a peer's close (and,
    /// for a close code it refuses, a 1002 of its own) would be a second
    /// close frame next to the writer's.
    fn push(&self, frames: &[u8]) {
        let mut queued = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rest = frames;
        while let Some((frame, tail)) = split_frame(rest) {
            rest = tail;
            if frame.first().map(|b| b & 0x0F) != Some(u8::from(OpCode::Control(OpCtl::Pong))) {
                continue;
            }
            if queued.len() + frame.len() > MAX_CONTROL_BYTES {
                // Whole frames only, so dropping what is queued leaves a
                // well-formed stream.
                queued.clear();
            }
            if frame.len() <= MAX_CONTROL_BYTES {
                queued.extend_from_slice(frame);
            }
        }
        let any = !queued.is_empty();
        drop(queued);
        if any {
            self.ready.notify_one();
        }
    }

    /// Moves whatever is queued to the end of `out`.
    fn take_into(&self, out: &mut Vec<u8>) {
        let mut queued = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend_from_slice(&queued);
        *queued = Vec::new();
    }
}

/// The stream tungstenite reads from: the connection's read half, and a
/// write side that queues whole frames for the writer task. tungstenite
/// hands over its whole output buffer in one write, and this side takes it
/// all at once, so what lands in the queue is always whole frames.
///
/// Reading passes every byte through the [`FrameCheck`]. When it finds a
/// frame that breaks RFC 6455, tungstenite gets the bytes before that
/// frame's offending byte (so the messages ahead of it still count) and then
/// an error carrying the [`Violation`], never the frame itself.
struct Inbound<S> {
    read: ReadHalf<S>,
    control: Arc<Control>,
    frames: FrameCheck,
}

impl<S: AsyncRead + Unpin> AsyncRead for Inbound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(violation) = self.frames.fault {
            return Poll::Ready(Err(violation.into()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.read).poll_read(cx, buf))?;
        let Some(at) = self
            .frames
            .feed(buf.filled().get(before..).unwrap_or_default())
        else {
            return Poll::Ready(Ok(()));
        };
        match self.frames.fault {
            // No new byte would read as the end of the stream.
            Some(violation) if at == 0 => Poll::Ready(Err(violation.into())),
            _ => {
                buf.set_filled(before + at);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> Inbound<S> {
    /// Reads and discards raw input until the peer's close frame has
    /// passed, the stream ends or fails. After a violation, frame
    /// boundaries mean nothing any more, and only the end of the stream
    /// (or the caller's timeout) stops it.
    async fn drain(&mut self) {
        if self.frames.closed {
            return;
        }
        let mut chunk = vec![0; READ_BUFFER];
        while let Ok(n @ 1..) = self.read.read(&mut chunk).await {
            self.frames.feed(chunk.get(..n).unwrap_or_default());
            if self.frames.closed {
                return;
            }
        }
    }
}

impl<S> AsyncWrite for Inbound<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.control.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Splits the first frame off `frames`, which tungstenite wrote whole.
fn split_frame(frames: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut cursor = io::Cursor::new(frames);
    let (_, length) = FrameHeader::parse(&mut cursor).ok()??;
    let end = usize::try_from(cursor.position())
        .ok()?
        .checked_add(usize::try_from(length).ok()?)?;
    frames.split_at_checked(end)
}

/// Reads messages and hands out their lines one at a time.
pub struct WsReader<S> {
    ws: WebSocketStream<Inbound<S>>,
    /// What is left of the current message.
    message: Bytes,
    /// The line last handed out; `read_line` lends it from here.
    current: Bytes,
    /// Set when a pong arrives; the writer checks and clears it.
    ponged: Arc<AtomicBool>,
}

impl<S> WsReader<S> {
    /// Takes the next line off the current message, if any is left.
    fn next_line(&mut self) -> Option<Bytes> {
        let (len, used) = next_ws_line(&self.message)?;
        let line = self.message.slice(..len);
        self.message = self.message.slice(used..);
        Some(line)
    }
}

/// Maps a read failure; a connection that ended without a fault (closed
/// normally, or cut without a close frame) is `Ok`.
///
/// The checker in [`Inbound`] finds every violation first, so of
/// tungstenite's own protocol errors only the end of the stream without a
/// close frame is expected; the others still mean a protocol error.
fn read_error(e: tungstenite::Error) -> Result<(), ReadError> {
    use tungstenite::Error;
    match e {
        Error::Capacity(_) => Err(ReadError::LineTooLong),
        Error::Utf8(_) => Err(ReadError::BadUtf8),
        Error::ConnectionClosed
        | Error::AlreadyClosed
        | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ok(()),
        Error::Protocol(_) => Err(ReadError::Protocol),
        Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<Violation>()) => {
            Err(ReadError::Protocol)
        }
        Error::Io(e) => Err(ReadError::Io(e)),
        other => Err(ReadError::Io(io::Error::other(other))),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> LineReader for WsReader<S> {
    async fn read_line(&mut self) -> Result<Option<&[u8]>, ReadError> {
        loop {
            if let Some(line) = self.next_line() {
                self.current = line;
                return Ok(Some(&self.current));
            }
            let message = match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    let read = read_error(e);
                    if matches!(read, Err(ReadError::Protocol)) {
                        self.ws.get_mut().frames.distrust();
                    }
                    return read.map(|()| None);
                }
                Some(Ok(message)) => message,
            };
            self.message = match message {
                Message::Text(text) => Bytes::from(text),
                Message::Binary(data) => data,
                Message::Pong(_) => {
                    self.ponged.store(true, Ordering::Relaxed);
                    continue;
                }
                // The writer answers with its own close frame, carrying the
                // session's code; tungstenite's echo never passes the
                // control queue.
                Message::Close(_) => return Ok(None),
                Message::Ping(_) | Message::Frame(_) => continue,
            };
            if split_ws_message(&self.message).is_err() {
                return Err(ReadError::LineTooLong);
            }
        }
    }

    /// Drains the raw socket: after an error tungstenite reads no more,
    /// and after a clean end there is nothing left for it to say.
    async fn discard(&mut self) {
        self.ws.get_mut().drain().await;
    }
}

/// Sends lines as text frames, control frames between batches, pings, and
/// the close frame with the session's code.
///
/// Every frame, data or control, goes through one [`Coalescer`], which
/// records how much is out: a write cancelled half-way (a kill, or the
/// heartbeat losing a race with the queue) resumes where it stopped, so no
/// frame is ever cut or interleaved with another.
pub struct WsWriter<S> {
    io: WriteHalf<S>,
    control: Arc<Control>,
    /// Frames waiting to be written.
    out: Coalescer,
    /// Set by the reader when a pong arrives.
    ponged: Arc<AtomicBool>,
    ping_interval: Option<Duration>,
    /// When the next ping is due; kept here so the heartbeat future can be
    /// dropped and recreated without moving the schedule.
    next_ping: Option<Instant>,
    /// A ping is out and its pong has not been seen.
    awaiting_pong: bool,
}

fn frame_error(e: tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncWrite + Unpin> WsWriter<S> {
    /// Writes every frame queued in `out`.
    async fn write_out(&mut self) -> io::Result<()> {
        self.out.write_out(&mut self.io).await?;
        self.io.flush().await
    }

    /// Queues a ping if one is due, or gives up on the peer if the last
    /// one went unanswered.
    fn ping(&mut self, interval: Duration) -> Result<(), CloseReason> {
        let answered = self.ponged.swap(false, Ordering::Relaxed);
        if self.awaiting_pong && !answered {
            return Err(CloseReason::MissedPing);
        }
        self.next_ping = Some(Instant::now() + interval);
        self.awaiting_pong = true;
        // An empty ping is two bytes written to a vector: it cannot fail.
        Frame::ping(Bytes::new())
            .format(self.out.buf())
            .map_err(|_| CloseReason::PeerGone)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> LineWriter for WsWriter<S> {
    async fn send(&mut self, lines: &[Bytes]) -> io::Result<()> {
        // The rest of an abandoned write goes first, then pongs owed to the
        // peer, then the batch.
        self.out.write_out(&mut self.io).await?;
        self.control.take_into(self.out.buf());
        // Every line the server builds is UTF-8 by construction (from `str`
        // or checked on arrival from the cluster), so each goes out as a
        // text frame as it is. A queued buffer may hold a burst of several
        // lines; each line is its own message.
        for chunk in lines {
            for body in reply::texts_of(chunk) {
                TEXT.format(body.len() as u64, self.out.buf())
                    .map_err(frame_error)?;
                self.out.buf().extend_from_slice(body);
            }
            self.out.spill(&mut self.io).await?;
        }
        self.write_out().await
    }

    async fn close(&mut self, reason: CloseReason) -> io::Result<()> {
        let frame = CloseFrame {
            code: reason.ws_code().into(),
            reason: reason.as_str().into(),
        };
        Frame::close(Some(frame))
            .format(self.out.buf())
            .map_err(frame_error)?;
        self.write_out().await
    }

    async fn heartbeat(&mut self) -> Result<(), CloseReason> {
        let control = self.control.clone();
        loop {
            if !self.out.is_empty() {
                return self.write_out().await.map_err(|_| CloseReason::PeerGone);
            }
            let due = self.next_ping;
            tokio::select! {
                _ = control.ready.notified() => control.take_into(self.out.buf()),
                _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    if let Some(interval) = self.ping_interval {
                        self.ping(interval)?;
                    }
                }
            }
        }
    }

    fn idle(&mut self) {
        self.out.release();
    }
}

#[cfg(test)]
mod tests {
    use super::check::tests::{client_frame, close_with, masked};
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncWriteExt, duplex};
    use tokio::time::timeout;

    fn pong(n: u8) -> Vec<u8> {
        let mut frame = Vec::new();
        Frame::pong(vec![n; 100]).format(&mut frame).unwrap();
        frame
    }

    #[test]
    fn only_pongs_pass_the_control_queue() {
        let control = Control::default();
        let mut written = Vec::new();
        Frame::pong(b"a".to_vec()).format(&mut written).unwrap();
        Frame::close(Some(CloseFrame {
            code: 1002.into(),
            reason: "Protocol violation".into(),
        }))
        .format(&mut written)
        .unwrap();
        Frame::pong(b"b".to_vec()).format(&mut written).unwrap();
        control.push(&written);
        let mut queued = Vec::new();
        control.take_into(&mut queued);
        let mut pongs = Vec::new();
        Frame::pong(b"a".to_vec()).format(&mut pongs).unwrap();
        Frame::pong(b"b".to_vec()).format(&mut pongs).unwrap();
        assert_eq!(queued, pongs);
    }

    /// A server connection for lines over one end of a pipe.
    async fn accept(server_io: tokio::io::DuplexStream) -> Ws<tokio::io::DuplexStream> {
        let peer = "127.0.0.1:1".parse().unwrap();
        Ws::accept(server_io, peer, false, None, Format::Lines).await
    }

    /// A server connection over a pipe, and the client's end of it.
    async fn pipe() -> (WsReader<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (server_io, client_io) = duplex(64 * 1024);
        let (reader, _writer) = accept(server_io).await.split();
        (reader, client_io)
    }

    async fn line(
        reader: &mut WsReader<tokio::io::DuplexStream>,
    ) -> Result<Option<String>, String> {
        match timeout(Duration::from_secs(5), reader.read_line()).await {
            Ok(Ok(line)) => Ok(line.map(|l| String::from_utf8_lossy(l).into_owned())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => panic!("no line"),
        }
    }

    #[tokio::test]
    async fn lines_before_a_violation_count_and_the_violation_is_a_protocol_error() {
        let (mut reader, mut client) = pipe().await;
        let mut bytes = masked(0x81, b"first\nsecond");
        bytes.extend(client_frame(0x81, b"unmasked", false));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(line(&mut reader).await, Ok(Some("first".into())));
        assert_eq!(line(&mut reader).await, Ok(Some("second".into())));
        let err = timeout(Duration::from_secs(5), reader.read_line())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ReadError::Protocol), "{err:?}");

        // Garbage that looks like a close frame does not end the drain:
        // only the end of the stream does.
        client.write_all(&close_with(1000, b"")).await.unwrap();
        client.write_all(&[0x78; 10_000]).await.unwrap();
        let drained = tokio::spawn(async move {
            reader.discard().await;
        });
        tokio::task::yield_now().await;
        assert!(!drained.is_finished());
        drop(client);
        timeout(Duration::from_secs(5), drained)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_close_code_tungstenite_would_rewrite_is_a_protocol_error() {
        let (mut reader, mut client) = pipe().await;
        client.write_all(&close_with(1004, b"")).await.unwrap();
        let err = timeout(Duration::from_secs(5), reader.read_line())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ReadError::Protocol), "{err:?}");
        // The bad close was the peer's last word: nothing to wait for.
        timeout(Duration::from_secs(5), reader.discard())
            .await
            .unwrap();
        drop(client);
    }

    #[tokio::test]
    async fn after_an_oversized_message_the_drain_stops_at_the_peers_close() {
        let (mut reader, mut client) = pipe().await;
        let big = masked(0x82, &vec![b'x'; MAX_WS_MESSAGE + 1]);
        let mut bytes = big;
        bytes.extend(masked(0x81, b"more"));
        bytes.extend(close_with(1000, b""));
        let writing = tokio::spawn(async move {
            client.write_all(&bytes).await.unwrap();
            client
        });
        let err = timeout(Duration::from_secs(5), reader.read_line())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ReadError::LineTooLong), "{err:?}");
        timeout(Duration::from_secs(5), reader.discard())
            .await
            .unwrap();
        // The client is still connected: the drain stopped at its close.
        drop(writing.await.unwrap());
    }

    #[tokio::test]
    async fn a_clean_close_needs_no_drain() {
        let (mut reader, mut client) = pipe().await;
        let mut bytes = masked(0x81, b"bye");
        bytes.extend(close_with(1000, b""));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(line(&mut reader).await, Ok(Some("bye".into())));
        assert_eq!(line(&mut reader).await, Ok(None));
        timeout(Duration::from_secs(5), reader.discard())
            .await
            .unwrap();
        drop(client);
    }

    #[test]
    fn a_ping_flood_keeps_the_latest_pong_and_stays_bounded() {
        let control = Control::default();
        for n in 0..200 {
            control.push(&pong(n));
        }
        let mut queued = Vec::new();
        control.take_into(&mut queued);
        assert!(queued.len() <= MAX_CONTROL_BYTES);
        assert!(queued.ends_with(&pong(199)), "the latest ping is answered");
        assert_eq!(queued.len() % pong(0).len(), 0, "whole frames only");
    }

    #[tokio::test]
    async fn a_write_cut_short_resumes_so_frames_stay_whole() {
        // A pipe far smaller than the batch, so the first send blocks
        // part-way through a frame and is abandoned, as when a connection
        // is killed while its socket is full.
        let (server_io, client_io) = duplex(1037);
        let (_reader, mut writer) = accept(server_io).await.split();
        let lines: Vec<Bytes> = (0..1000)
            .map(|i| Bytes::from(format!("line {i:04} {}\r\n", "x".repeat(85))))
            .collect();
        assert!(
            timeout(Duration::from_millis(50), writer.send(&lines))
                .await
                .is_err(),
            "the pipe is full"
        );

        let client = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
            let mut texts = Vec::new();
            while let Some(message) = ws.next().await {
                match message.expect("well-formed frames") {
                    Message::Text(text) => texts.push(text.as_str().to_owned()),
                    Message::Close(frame) => {
                        texts.push(format!("close {}", u16::from(frame.unwrap().code)));
                        break;
                    }
                    _ => {}
                }
            }
            texts
        });
        writer
            .send(&[reply::error(reply::reason::TOO_SLOW)])
            .await
            .unwrap();
        writer.close(CloseReason::TooSlow).await.unwrap();
        let texts = client.await.unwrap();

        // Whatever part of the batch was gathered goes out whole and once,
        // in order, then the last word and the close frame.
        let (last, head) = texts.split_last().unwrap();
        assert_eq!(last, "close 1008");
        let (error, sent) = head.split_last().unwrap();
        assert_eq!(error, "ERROR too slow");
        assert!(!sent.is_empty());
        for (i, text) in sent.iter().enumerate() {
            assert_eq!(text, &format!("line {i:04} {}", "x".repeat(85)));
        }
    }
}
