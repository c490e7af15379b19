//! A connection's two halves, whatever the transport.
//!
//! The read half belongs to the connection's receive loop; the write half to
//! whoever sends (the join handshake, then a sender task, or the receive loop
//! answering NATS `PING`s and WebSocket pings). Byte streams hand out boxed
//! halves; WebSocket hands out a frame decoder and encoder over them
//! ([`ws`](super::ws)), one text message per line.

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::dial::{self, Dial};
use super::read::read_batch;
use super::tls;
use super::ws::{self, WsReader, WsWriter};
use crate::error::LoadError;
use crate::target::{Scheme, Target};

/// The receiving half.
pub enum ReadSide {
    /// TCP or TLS bytes.
    Bytes(Pin<Box<dyn AsyncRead + Send>>),
    /// WebSocket frames over TCP or TLS.
    Ws(WsReader),
}

/// The sending half.
pub enum WriteSide {
    /// TCP or TLS bytes.
    Bytes(Pin<Box<dyn AsyncWrite + Send>>),
    /// WebSocket frames over TCP or TLS.
    Ws(WsWriter),
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
        Scheme::Ws => {
            let (tcp, early) = ws::handshake(target, tcp).await?;
            let (r, w) = tcp.into_split();
            Ok(websocket(Box::pin(r), Box::pin(w), early))
        }
        Scheme::Wss => {
            let tls = tls::connect(&target.host, tcp).await?;
            let (tls, early) = ws::handshake(target, tls).await?;
            let (r, w) = tokio::io::split(tls);
            Ok(websocket(Box::pin(r), Box::pin(w), early))
        }
    }
}

fn websocket(
    r: Pin<Box<dyn AsyncRead + Send>>,
    w: Pin<Box<dyn AsyncWrite + Send>>,
    early: Vec<u8>,
) -> (ReadSide, WriteSide) {
    (
        ReadSide::Ws(WsReader::new(r, early)),
        WriteSide::Ws(WsWriter::new(w)),
    )
}

impl ReadSide {
    /// Waits for input and hands it to `take` in one batch, which returns
    /// how many leading bytes it consumed; the rest is offered again with the
    /// next batch. Byte streams hand over the bytes as read, after the
    /// incomplete tail of the last read kept in `carry`. WebSocket hands over
    /// each data message as one `\n`-terminated line and keeps its own carry
    /// (`carry` stays unused). Returns `false` when the peer has closed.
    pub async fn next_batch(
        &mut self,
        carry: &mut Vec<u8>,
        take: impl FnMut(&[u8]) -> Result<usize, LoadError>,
    ) -> Result<bool, LoadError> {
        match self {
            ReadSide::Bytes(io) => read_batch(io, carry, take).await,
            ReadSide::Ws(reader) => reader.next_batch(take).await,
        }
    }

    /// The payload of a WebSocket ping that wants its pong, if any.
    pub fn take_ping(&mut self) -> Option<Vec<u8>> {
        match self {
            ReadSide::Bytes(_) => None,
            ReadSide::Ws(reader) => reader.take_ping(),
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
            WriteSide::Ws(writer) => writer.send(batch).await?,
        }
        Ok(())
    }

    /// Answers a WebSocket ping; byte streams have none to answer.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), LoadError> {
        match self {
            WriteSide::Bytes(_) => Ok(()),
            WriteSide::Ws(writer) => writer.pong(payload).await,
        }
    }

    /// Closes the sending direction cleanly where the transport has a way.
    pub async fn close(&mut self) {
        let _ = match self {
            WriteSide::Bytes(io) => io.shutdown().await.map_err(LoadError::from),
            WriteSide::Ws(writer) => writer.close().await,
        };
    }
}
