//! Line reading and writing over any byte stream: shared by TCP and TLS.
//!
//! Reading uses a stack buffer inside the poll, so the connection holds no
//! read buffer between reads: an idle connection costs its decoder's small
//! line buffer and nothing more. Input after the first complete line of a
//! read is kept in `pending` until the session has taken each line.
//!
//! Writing sends a whole batch with vectored writes when the stream supports
//! them, else copies the batch into one buffer, so a burst of lines costs one
//! syscall (or one TLS record) rather than one per line.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{LineReader, LineWriter, ReadError};
use crate::protocol::CloseReason;
use crate::protocol::framing::LineDecoder;

/// Bytes read from the socket per read call. Lives on the stack only for the
/// duration of a poll, so it costs idle connections nothing.
const READ_CHUNK: usize = 8 * 1024;

/// Most slices per vectored write: Linux's IOV_MAX.
const MAX_IOVECS: usize = 1024;

/// Largest single write when the stream cannot write vectored: a TLS record
/// holds 16 KiB, so this is a handful of full records.
const COALESCE_LIMIT: usize = 64 * 1024;

/// `pending` buffers up to this size are kept once drained; larger ones are
/// freed so a burst does not pin memory.
const KEEP_PENDING_CAPACITY: usize = 1024;

/// Reads lines from a byte stream through the telnet layer.
#[derive(Debug)]
pub struct StreamReader<R> {
    io: R,
    decoder: LineDecoder,
    /// Input read but not yet decoded (the rest of a read that held more
    /// than one line).
    pending: Vec<u8>,
    /// How much of `pending` has been decoded.
    consumed: usize,
}

impl<R: AsyncRead + Unpin + Send + 'static> StreamReader<R> {
    /// Wraps the read half of a stream.
    pub fn new(io: R) -> Self {
        StreamReader {
            io,
            decoder: LineDecoder::new(),
            pending: Vec::new(),
            consumed: 0,
        }
    }

    /// Decodes from `pending`; true when a line is ready.
    fn decode_pending(&mut self) -> Result<bool, ReadError> {
        let mut input = &self.pending[self.consumed..];
        let before = input.len();
        let ready = self
            .decoder
            .decode(&mut input)
            .map_err(|_| ReadError::LineTooLong)?;
        self.consumed += before - input.len();
        if self.consumed == self.pending.len() {
            self.consumed = 0;
            self.pending.clear();
            if self.pending.capacity() > KEEP_PENDING_CAPACITY {
                self.pending = Vec::new();
            }
        }
        Ok(ready)
    }

    /// Reads once and decodes; `Some(true)` when a line is ready, `None` at
    /// the end of the stream.
    async fn read_more(&mut self) -> Result<Option<bool>, ReadError> {
        poll_fn(|cx| {
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Ok(None)),
                Poll::Ready(Ok(())) => {
                    let mut input = buf.filled();
                    let ready = self
                        .decoder
                        .decode(&mut input)
                        .map_err(|_| ReadError::LineTooLong)?;
                    self.pending.extend_from_slice(input);
                    Poll::Ready(Ok(Some(ready)))
                }
            }
        })
        .await
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> LineReader for StreamReader<R> {
    async fn read_line(&mut self) -> Result<Option<&[u8]>, ReadError> {
        // Cancel safety: every await point is inside `read_more`, whose poll
        // either consumes a read entirely (into the decoder and `pending`)
        // or reads nothing.
        loop {
            let ready = if self.consumed < self.pending.len() {
                self.decode_pending()?
            } else {
                match self.read_more().await? {
                    Some(ready) => ready,
                    None => return Ok(None),
                }
            };
            if ready {
                return Ok(Some(self.decoder.line()));
            }
        }
    }

    async fn discard(&mut self) {
        poll_fn(|cx| {
            loop {
                let mut chunk = [0u8; READ_CHUNK];
                let mut buf = ReadBuf::new(&mut chunk);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                    Poll::Ready(_) => return Poll::Ready(()),
                }
            }
        })
        .await
    }
}

/// Writes batches of lines to a byte stream.
#[derive(Debug)]
pub struct StreamWriter<W> {
    io: W,
    /// Whether a batch goes down as one vectored write. Right for a socket;
    /// wrong for TLS, where each slice would become its own record, so
    /// there the batch is copied into one buffer instead.
    vectored: bool,
}

impl<W: AsyncWrite + Unpin + Send + 'static> StreamWriter<W> {
    /// Wraps the write half of a socket, writing batches vectored.
    pub fn vectored(io: W) -> Self {
        StreamWriter { io, vectored: true }
    }

    /// Wraps the write half of a stream that frames each write itself (TLS),
    /// coalescing batches into few large writes.
    pub fn coalescing(io: W) -> Self {
        StreamWriter {
            io,
            vectored: false,
        }
    }

    async fn send_vectored(&mut self, lines: &[Bytes]) -> io::Result<()> {
        for group in lines.chunks(MAX_IOVECS) {
            let mut slices: Vec<IoSlice<'_>> = group.iter().map(|l| IoSlice::new(l)).collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = self.io.write_vectored(rest).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        Ok(())
    }

    async fn send_coalesced(&mut self, lines: &[Bytes]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut rest = lines;
        while !rest.is_empty() {
            buf.clear();
            let mut taken = 0;
            for line in rest {
                if !buf.is_empty() && buf.len() + line.len() > COALESCE_LIMIT {
                    break;
                }
                buf.extend_from_slice(line);
                taken += 1;
            }
            rest = &rest[taken..];
            self.io.write_all(&buf).await?;
        }
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> LineWriter for StreamWriter<W> {
    async fn send(&mut self, lines: &[Bytes]) -> io::Result<()> {
        if lines.len() == 1 {
            self.io.write_all(&lines[0]).await?;
        } else if self.vectored {
            self.send_vectored(lines).await?;
        } else {
            self.send_coalesced(lines).await?;
        }
        self.io.flush().await
    }

    async fn close(&mut self, _reason: CloseReason) -> io::Result<()> {
        self.io.shutdown().await
    }
}
