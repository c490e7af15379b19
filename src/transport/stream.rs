//! Line reading and writing over any byte stream: shared by TCP and TLS.
//!
//! Reading uses a stack buffer inside the poll, so the connection holds no
//! read buffer between reads: an idle connection costs its decoder's small
//! line buffer and nothing more. Input after the first complete line of a
//! read is kept in `pending` until the session has taken each line.
//!
//! Writing copies a whole batch into one buffer, so a burst of lines costs
//! one syscall (and, over TLS, full records) rather than one per line.

use std::future::poll_fn;
use std::io;
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

/// Bytes gathered before a batch is written out: large enough that a burst
/// costs few syscalls, and a handful of full TLS records (16 KiB each).
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
                    // The peer closed its side (TCP FIN, TLS close_notify):
                    // an unterminated last line still counts.
                    None if self.decoder.end_of_input() => true,
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

/// Gathers a batch into one buffer so that it costs one write, however
/// many lines it holds.
///
/// Copying beats a vectored write here: chat lines are short, and the
/// kernel's cost per iovec slice outweighs copying a few dozen bytes, so a
/// batch of small lines is cheapest as one contiguous buffer. The buffer is
/// kept while the connection is busy and freed when it goes idle.
///
/// Writing is cancel-safe: how much of the buffer is out is recorded after
/// every write, so a write abandoned half-way (the connection was killed
/// while its socket was full) resumes where it stopped, and whatever is
/// said next never lands in the middle of a line or a frame.
#[derive(Debug, Default)]
pub(super) struct Coalescer {
    buf: Vec<u8>,
    /// How much of `buf` has been written.
    sent: usize,
}

impl Coalescer {
    /// The buffer to append to; appending never disturbs what is out.
    pub(super) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Whether bytes are waiting to be written.
    pub(super) fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// Writes the buffer out once it holds [`COALESCE_LIMIT`] bytes, so a
    /// long batch goes out in large pieces rather than one huge copy.
    pub(super) async fn spill<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        if self.buf.len() >= COALESCE_LIMIT {
            self.write_out(io).await?;
        }
        Ok(())
    }

    /// Writes whatever the buffer holds.
    pub(super) async fn write_out<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        while self.sent < self.buf.len() {
            let n = io.write(&self.buf[self.sent..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Ok(())
    }

    /// Frees the buffer once it is written: an idle connection keeps none,
    /// since thousands of idle users each holding even a small one add up.
    pub(super) fn release(&mut self) {
        if self.is_empty() {
            *self = Coalescer::default();
        }
    }
}

/// Writes batches of lines to a byte stream (a socket, or TLS over one).
#[derive(Debug)]
pub struct StreamWriter<W> {
    io: W,
    out: Coalescer,
}

impl<W: AsyncWrite + Unpin + Send + 'static> StreamWriter<W> {
    /// Wraps the write half of a stream.
    pub fn new(io: W) -> Self {
        StreamWriter {
            io,
            out: Coalescer::default(),
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> LineWriter for StreamWriter<W> {
    async fn send(&mut self, lines: &[Bytes]) -> io::Result<()> {
        // The rest of a write that was abandoned goes first.
        self.out.write_out(&mut self.io).await?;
        for line in lines {
            self.out.buf().extend_from_slice(line);
            self.out.spill(&mut self.io).await?;
        }
        self.out.write_out(&mut self.io).await?;
        self.io.flush().await
    }

    async fn close(&mut self, _reason: CloseReason) -> io::Result<()> {
        self.io.shutdown().await
    }

    fn idle(&mut self) {
        self.out.release();
    }
}
