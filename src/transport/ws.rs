//! WebSocket: the browser and websocat transport.
//!
//! Each client message (text or binary, fragments reassembled by
//! tungstenite) holds one or more lines; each server line is one text
//! message. tungstenite enforces the message and frame size limits while
//! reading, so an oversized message is refused before it is buffered whole.
//! The writer pings the peer every `--ws-ping-interval` and gives up on a
//! peer that has not answered by the next ping.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::{LineReader, LineWriter, ReadError, Transport};
use crate::protocol::framing::split_ws_message;
use crate::protocol::{CloseReason, MAX_WS_MESSAGE, reply};

/// tungstenite's read buffer, allocated up front for every connection. Its
/// default (128 KiB) would make 10,000 idle users cost over a gigabyte; chat
/// lines are short, and a long one is simply read in several calls.
const READ_BUFFER: usize = 2 * 1024;

/// Bytes of outgoing frames gathered before tungstenite writes to the
/// socket; a flush at the end of each batch writes the rest. Large enough
/// that a burst of lines goes out in few writes.
const WRITE_BUFFER: usize = 16 * 1024;

/// The WebSocket settings for a chat connection.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// An upgraded WebSocket connection over any byte stream.
pub struct Ws<S> {
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    kind: &'static str,
    /// `--ws-ping-interval`, if on.
    ping_interval: Option<Duration>,
}

impl<S> Ws<S> {
    /// Wraps a WebSocket stream accepted as `kind` (`ws` or `wss`).
    pub fn new(
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        kind: &'static str,
        ping_interval: Option<Duration>,
    ) -> Self {
        Ws {
            ws,
            peer,
            kind,
            ping_interval,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Ws<S> {
    type Reader = WsReader<S>;
    type Writer = WsWriter<S>;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn split(self) -> (Self::Reader, Self::Writer) {
        let (sink, stream) = self.ws.split();
        let ponged = Arc::new(AtomicBool::new(false));
        let reader = WsReader {
            stream,
            message: Bytes::new(),
            current: Bytes::new(),
            ponged: ponged.clone(),
        };
        let writer = WsWriter {
            sink,
            ponged,
            ping_interval: self.ping_interval,
            next_ping: self.ping_interval.map(|i| Instant::now() + i),
            awaiting_pong: false,
        };
        (reader, writer)
    }
}

/// Reads messages and hands out their lines one at a time.
pub struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    /// What is left of the current message.
    message: Bytes,
    /// The line last handed out; `read_line` lends it from here.
    current: Bytes,
    /// Set when a pong arrives; the writer checks and clears it.
    ponged: Arc<AtomicBool>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsReader<S> {
    /// Takes the next line off the current message, if any is left.
    fn next_line(&mut self) -> Option<Bytes> {
        if self.message.is_empty() {
            return None;
        }
        let end = self.message.iter().position(|&b| b == b'\n');
        let line = match end {
            Some(at) => {
                let line = self.message.split_to(at);
                self.message = self.message.slice(1..);
                line
            }
            None => std::mem::take(&mut self.message),
        };
        Some(match line.strip_suffix(b"\r") {
            Some(body) => line.slice(..body.len()),
            None => line,
        })
    }
}

/// Maps a read failure; a connection that closed normally is `Ok`.
fn read_error(e: tungstenite::Error) -> Result<(), ReadError> {
    match e {
        tungstenite::Error::Capacity(_) => Err(ReadError::LineTooLong),
        tungstenite::Error::Utf8(_) => Err(ReadError::BadUtf8),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
        tungstenite::Error::Io(e) => Err(ReadError::Io(e)),
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
            let message = match self.stream.next().await {
                None => return Ok(None),
                Some(Err(e)) => return read_error(e).map(|()| None),
                Some(Ok(message)) => message,
            };
            self.message = match message {
                Message::Text(text) => Bytes::from(text),
                Message::Binary(data) => data,
                Message::Pong(_) => {
                    self.ponged.store(true, Ordering::Relaxed);
                    continue;
                }
                Message::Close(_) => return Ok(None),
                Message::Ping(_) | Message::Frame(_) => continue,
            };
            if split_ws_message(&self.message).is_err() {
                return Err(ReadError::LineTooLong);
            }
        }
    }

    async fn discard(&mut self) {
        while let Some(Ok(_)) = self.stream.next().await {}
    }
}

/// Sends lines as text messages, pings, and closes with the right code.
pub struct WsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    /// Set by the reader when a pong arrives.
    ponged: Arc<AtomicBool>,
    ping_interval: Option<Duration>,
    /// When the next ping is due; kept here so the heartbeat future can be
    /// dropped and recreated without moving the schedule.
    next_ping: Option<Instant>,
    /// A ping is out and its pong has not been seen.
    awaiting_pong: bool,
}

fn io_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> LineWriter for WsWriter<S> {
    async fn send(&mut self, lines: &[Bytes]) -> io::Result<()> {
        for line in lines {
            let body = line.slice(..reply::text(line).len());
            // Every line the server builds is UTF-8; a line that somehow is
            // not is skipped rather than sent as a broken text message.
            if let Ok(text) = Utf8Bytes::try_from(body) {
                self.sink
                    .feed(Message::Text(text))
                    .await
                    .map_err(io_error)?;
            }
        }
        self.sink.flush().await.map_err(io_error)
    }

    async fn close(&mut self, reason: CloseReason) -> io::Result<()> {
        let frame = CloseFrame {
            code: reason.ws_code().into(),
            reason: reason.as_str().into(),
        };
        self.sink
            .send(Message::Close(Some(frame)))
            .await
            .map_err(io_error)
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        let (Some(interval), Some(due)) = (self.ping_interval, self.next_ping) else {
            return std::future::pending().await;
        };
        sleep_until(due).await;
        let answered = self.ponged.swap(false, Ordering::Relaxed);
        if self.awaiting_pong && !answered {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no pong"));
        }
        self.next_ping = Some(Instant::now() + interval);
        self.awaiting_pong = true;
        self.sink
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(io_error)
    }
}
