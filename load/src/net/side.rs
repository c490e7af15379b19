//! A connection's two halves, whatever the transport.
//!
//! The read half belongs to the connection's receive loop; the write half to
//! whoever sends (the join handshake, then a sender task, or the receive loop
//! answering NATS `PING`s). Byte streams hand out boxed halves; WebSocket
//! hands out the split stream and sink, one text message per line.

use std::pin::Pin;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::dial::{self, Dial};
use super::read::read_batch;
use super::tls;
use crate::error::LoadError;
use crate::protocol::chat::next_line;
use crate::target::{Scheme, Target};

/// A byte stream of any kind, so TLS and plain TCP share one WebSocket type.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket over plain TCP or TLS.
pub type WsStream = WebSocketStream<Pin<Box<dyn Io>>>;

/// WebSocket read buffer: tungstenite's default of 128 KiB per connection
/// would dominate the generator's memory with thousands of connections.
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// The receiving half.
pub enum ReadSide {
    /// TCP or TLS bytes.
    Bytes(Pin<Box<dyn AsyncRead + Send>>),
    /// WebSocket messages.
    Ws(SplitStream<WsStream>),
}

/// The sending half.
pub enum WriteSide {
    /// TCP or TLS bytes.
    Bytes(Pin<Box<dyn AsyncWrite + Send>>),
    /// WebSocket messages.
    Ws(SplitSink<WsStream, Message>),
}

/// Connects connection number `index` to `target` and splits it.
pub async fn open(
    target: &Target,
    index: usize,
    dial: &Dial,
) -> Result<(ReadSide, WriteSide), LoadError> {
    let tcp = dial::connect(target.addr, index, dial).await?;
    match target.scheme {
        Scheme::Tcp | Scheme::Nats => {
            let (r, w) = tcp.into_split();
            Ok((ReadSide::Bytes(Box::pin(r)), WriteSide::Bytes(Box::pin(w))))
        }
        Scheme::Tls => {
            let (r, w) = tokio::io::split(tls::connect(&target.host, tcp).await?);
            Ok((ReadSide::Bytes(Box::pin(r)), WriteSide::Bytes(Box::pin(w))))
        }
        Scheme::Ws => websocket(target, Box::pin(tcp)).await,
        Scheme::Wss => websocket(target, Box::pin(tls::connect(&target.host, tcp).await?)).await,
    }
}

async fn websocket(
    target: &Target,
    io: Pin<Box<dyn Io>>,
) -> Result<(ReadSide, WriteSide), LoadError> {
    // The request names the server as the user typed it; TLS, if any, is
    // already below `io`, so the scheme here only shapes the request.
    let url = format!("ws://{}{}", target.addr, target.path);
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, io, Some(config)).await?;
    let (sink, stream) = ws.split();
    Ok((ReadSide::Ws(stream), WriteSide::Ws(sink)))
}

impl ReadSide {
    /// Waits for input and hands each complete unit to `take`: for byte
    /// streams `take` gets the buffered bytes and returns how many it
    /// consumed; for WebSocket it gets one message followed by `\n`-less
    /// text, consumed whole. Returns `false` when the peer has closed.
    pub async fn next_batch(
        &mut self,
        carry: &mut Vec<u8>,
        mut take: impl FnMut(&[u8]) -> Result<usize, LoadError>,
    ) -> Result<bool, LoadError> {
        match self {
            ReadSide::Bytes(io) => read_batch(io, carry, take).await,
            ReadSide::Ws(stream) => loop {
                let message = match stream.next().await {
                    None => return Ok(false),
                    Some(message) => message?,
                };
                let text = match &message {
                    Message::Text(text) => text.as_bytes(),
                    Message::Binary(bytes) => bytes,
                    Message::Close(_) => return Ok(false),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                // A message is one line; feed it as one so the same line
                // parser serves every transport.
                let mut line = Vec::with_capacity(text.len() + 1);
                line.extend_from_slice(text);
                line.push(b'\n');
                take(&line)?;
                return Ok(true);
            },
        }
    }
}

impl WriteSide {
    /// Sends `batch`: as is on byte streams; on WebSocket as one text
    /// message per `\n`-terminated line.
    pub async fn send(&mut self, batch: &[u8]) -> Result<(), LoadError> {
        match self {
            WriteSide::Bytes(io) => {
                io.write_all(batch).await?;
                io.flush().await?;
            }
            WriteSide::Ws(sink) => {
                let mut rest = batch;
                while let Some((line, used)) = next_line(rest) {
                    let text = String::from_utf8_lossy(line).into_owned();
                    sink.feed(Message::text(text)).await?;
                    rest = &rest[used..];
                }
                sink.flush().await?;
            }
        }
        Ok(())
    }

    /// Closes the sending direction cleanly where the transport has a way.
    pub async fn close(&mut self) {
        let _ = match self {
            WriteSide::Bytes(io) => io.shutdown().await.map_err(LoadError::from),
            WriteSide::Ws(sink) => sink.close().await.map_err(LoadError::from),
        };
    }
}
