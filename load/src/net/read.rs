//! Batched reads that cost an idle connection nothing.
//!
//! Every read goes into one scratch buffer per worker thread, borrowed only
//! inside a poll (never across an await). The caller's parser consumes the
//! complete units (lines, frames) in place; only an incomplete tail is copied
//! into the connection's own `carry`, usually a few dozen bytes or nothing.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

use crate::error::LoadError;

/// Bytes asked for per read: enough for hundreds of small messages per
/// syscall, small enough to stay in cache.
pub const READ_CHUNK: usize = 128 * 1024;

/// Longest incomplete unit a connection may hold: past a chat line's limit
/// (20,000 bytes) and any payload the generator sends, so only a broken peer
/// meets it.
pub const MAX_CARRY: usize = 1024 * 1024;

thread_local! {
    /// The scratch buffer of this worker thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this worker thread's scratch buffer, shared by every batched
/// reader on the thread: call it inside a poll, so the buffer is never held
/// across an await.
pub(super) fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    SCRATCH.with_borrow_mut(f)
}

/// Reads once from `io` and hands `carry` followed by the new bytes to
/// `take`, which returns how many leading bytes it consumed; the rest becomes
/// the new `carry`. Returns `false` at the end of the stream.
///
/// Cancel safe: a poll either completes a read and its parsing, or changes
/// nothing.
pub async fn read_batch<R>(
    io: &mut R,
    carry: &mut Vec<u8>,
    mut take: impl FnMut(&[u8]) -> Result<usize, LoadError>,
) -> Result<bool, LoadError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    poll_fn(|cx| {
        with_scratch(|scratch| {
            let kept = carry.len();
            if scratch.len() < kept + READ_CHUNK {
                scratch.resize(kept + READ_CHUNK, 0);
            }
            scratch[..kept].copy_from_slice(carry);
            let mut buf = ReadBuf::new(&mut scratch[kept..]);
            let n = match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => buf.filled().len(),
            };
            if n == 0 {
                return Poll::Ready(Ok(false));
            }
            let filled = &scratch[..kept + n];
            let used = match take(filled) {
                Ok(used) => used,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if filled.len() - used > MAX_CARRY {
                let e = io::Error::new(io::ErrorKind::InvalidData, "unit longer than MAX_CARRY");
                return Poll::Ready(Err(e.into()));
            }
            carry.clear();
            carry.extend_from_slice(&filled[used..]);
            Poll::Ready(Ok(true))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn partial_units_are_carried_to_the_next_read() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut carry = Vec::new();
        let mut seen = Vec::new();
        let mut take = |buf: &[u8]| {
            let whole = buf.len() - buf.iter().rev().take_while(|&&b| b != b'\n').count();
            seen.push(String::from_utf8_lossy(&buf[..whole]).into_owned());
            Ok(whole)
        };
        server.write_all(b"one\ntw").await.unwrap();
        assert!(
            read_batch(&mut client, &mut carry, &mut take)
                .await
                .unwrap()
        );
        assert_eq!(carry, b"tw");
        server.write_all(b"o\n").await.unwrap();
        assert!(
            read_batch(&mut client, &mut carry, &mut take)
                .await
                .unwrap()
        );
        drop(server);
        assert!(
            !read_batch(&mut client, &mut carry, &mut take)
                .await
                .unwrap()
        );
        assert_eq!(seen, vec!["one\n", "two\n"]);
        assert!(carry.is_empty());
    }
}
