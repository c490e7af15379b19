//! A connection's outgoing queue: bounded in bytes, drained in batches.
//!
//! Producers (the connection's own session, and any room broadcast that
//! reaches it) push encoded lines, one line or a room's burst of lines per
//! shared buffer; one writer takes everything queued at
//! once and writes it with as few syscalls as it can. The queue counts the
//! bytes not yet written, including the batch the writer holds, so
//! `--max-queue-bytes` bounds what one connection can pin in memory (plus
//! the writer's copy of at most 64 KiB of that batch). Past the
//! bound the connection is *killed*: its queue is dropped and its owner is
//! woken to leave the room.
//!
//! The lock is a plain mutex held for a push or a swap, never across an
//! await; wakers are stored inside it, so there is nothing else to
//! synchronise and no runtime is needed (the core builds for wasm32).

use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::protocol::CloseReason;
use crate::protocol::json::Format;
use crate::standing::{Eviction, Standing};

/// Line slots (32 bytes each) an idle queue keeps. While a connection is
/// busy its two vectors (the queue and the writer's batch) keep whatever
/// they grew to, so a steady stream costs no allocation per batch.
pub const KEEP_IDLE_CAPACITY: usize = 8;

/// A paced writer writes early once its queue holds this fraction (one
/// part in so many) of `--max-queue-bytes`: far from the limit, so a reader
/// that keeps up is never dropped because the server chose to wait.
const PRESSURE_SHARE: usize = 4;

/// A bounded queue of encoded lines for one connection.
#[derive(Debug)]
pub struct Outbox {
    /// Most bytes queued or being written; 0 means no limit.
    limit: usize,
    /// Whether this connection gets lines or JSON events: whoever queues
    /// here encodes for it.
    format: Format,
    /// The connection's address, mute and operator status: kept here
    /// because the outbox is what a room holds of each member.
    standing: Standing,
    /// Everything else; locked for a push or a swap only.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Lines not yet handed to the writer; an entry holds one or more
    /// whole lines.
    queue: Vec<Bytes>,
    /// How many lines `queue` holds.
    lines: usize,
    /// Bytes in `queue` plus bytes handed to the writer and not yet written.
    bytes: usize,
    /// Open, or how it ends.
    state: State,
    /// The writer, parked on an empty queue.
    writer: Option<Waker>,
    /// The session task, parked until the outbox is killed.
    owner: Option<Waker>,
    /// The writer, waiting out a pace beat until the queue fills up.
    pressure: Option<Waker>,
    /// Bursts this connection said that a relay carries, and how many of
    /// them came back to it (see [`Outbox::poll_echoes`]).
    relayed: u64,
    echoed: u64,
    /// The session task, waiting for its bursts to come back.
    echo: Option<Waker>,
    /// An operator removed this connection; its session has not yet
    /// acted on it (see [`Outbox::poll_evicted`]).
    eviction: Option<Box<Eviction>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Open,
    /// No more lines are taken; what is queued is written, then the
    /// connection closes for this reason.
    Closing(CloseReason),
    /// Dropped at once: nothing more is written but a last best-effort word.
    Killed(CloseReason),
}

/// What the writer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Write the batch, which holds this many lines, then call
    /// [`Outbox::written`].
    Write(usize),
    /// Everything is written; close gracefully for this reason.
    Close(CloseReason),
    /// Stop writing at once and close for this reason.
    Kill(CloseReason),
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes (0: unbounded), for a
    /// connection that gets lines.
    pub fn new(limit: usize) -> Self {
        Outbox::with_format(limit, Format::Lines)
    }

    /// The same, for a connection that gets `format`.
    pub fn with_format(limit: usize, format: Format) -> Self {
        Outbox::with_standing(limit, format, Standing::default())
    }

    /// The same, for a connection whose standing (its address) is known.
    pub fn with_standing(limit: usize, format: Format, standing: Standing) -> Self {
        Outbox {
            limit,
            format,
            standing,
            inner: Mutex::default(),
        }
    }

    /// The connection's address, mute and operator status.
    pub fn standing(&self) -> &Standing {
        &self.standing
    }

    /// An operator removes this connection: its session is woken (see
    /// [`Outbox::poll_evicted`]) to tell the room and the user and close.
    /// Returns false, and does nothing, if the connection is already
    /// closing or being removed.
    pub fn evict(&self, eviction: Eviction) -> bool {
        let mut inner = self.lock();
        if inner.state != State::Open || inner.eviction.is_some() {
            return false;
        }
        inner.eviction = Some(Box::new(eviction));
        if let Some(owner) = inner.owner.take() {
            owner.wake();
        }
        true
    }

    /// Ready with the eviction once an operator removed this connection;
    /// for the session task, which parks in the same slot as for
    /// [`Outbox::poll_killed`] (both are polled by that one task).
    pub fn poll_evicted(&self, cx: &mut Context<'_>) -> Poll<Box<Eviction>> {
        let mut inner = self.lock();
        match inner.eviction.take() {
            Some(eviction) => Poll::Ready(eviction),
            None => {
                inner.owner = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// What this connection gets: lines or JSON events.
    pub fn format(&self) -> Format {
        self.format
    }

    /// A burst this connection said went to a relay (a cluster), which
    /// brings it back to its members, this one included.
    pub fn relayed(&self) {
        self.lock().relayed += 1;
    }

    /// A burst this connection said came back from the relay.
    pub fn echoed(&self) {
        let mut inner = self.lock();
        inner.echoed = (inner.echoed + 1).min(inner.relayed);
        if inner.echoed == inner.relayed {
            if let Some(session) = inner.echo.take() {
                session.wake();
            }
        }
    }

    /// Ready once every burst this connection said has come back: a reply
    /// to what it sends next then follows its own lines, as on one node.
    pub fn poll_echoes(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.echoed >= inner.relayed {
            return Poll::Ready(());
        }
        inner.echo = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Stops waiting for bursts that did not come back (lost with the
    /// cluster link).
    pub fn forget_echoes(&self) {
        let mut inner = self.lock();
        inner.echoed = inner.relayed;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take every connection down with it: the
        // queue's invariants hold between statements, so the data is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most bytes this queue holds before the connection is dropped as
    /// too slow; 0 means no limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues a line. Returns false if the line was not queued: the outbox
    /// is closing, or it is over its limit and has just been killed.
    pub fn push(&self, line: Bytes) -> bool {
        self.push_lines(line, 1)
    }

    /// Queues `lines` whole lines held in one buffer, as [`Self::push`].
    pub fn push_lines(&self, chunk: Bytes, lines: usize) -> bool {
        let mut inner = self.lock();
        if inner.state != State::Open {
            return false;
        }
        if self.limit != 0 && inner.bytes + chunk.len() > self.limit {
            inner.kill(CloseReason::TooSlow);
            return false;
        }
        inner.bytes += chunk.len();
        inner.lines += lines;
        inner.queue.push(chunk);
        if let Some(writer) = inner.writer.take() {
            writer.wake();
        }
        if self.under_pressure(&inner) {
            if let Some(writer) = inner.pressure.take() {
                writer.wake();
            }
        }
        true
    }

    /// Queues several lines in order, stopping at the first refusal.
    pub fn push_all(&self, lines: impl IntoIterator<Item = Bytes>) -> bool {
        lines.into_iter().all(|line| self.push(line))
    }

    /// Takes no more lines; the writer drains the queue and then closes.
    pub fn close(&self, reason: CloseReason) {
        let mut inner = self.lock();
        if inner.state == State::Open {
            inner.state = State::Closing(reason);
            for waker in [inner.writer.take(), inner.pressure.take()]
                .into_iter()
                .flatten()
            {
                waker.wake();
            }
        }
    }

    /// Whether the queue is full enough that a writer waiting out a pace
    /// beat should write now rather than risk the limit.
    fn under_pressure(&self, inner: &Inner) -> bool {
        self.limit != 0 && inner.bytes >= self.limit / PRESSURE_SHARE
    }

    /// For a writer waiting out a pace beat: ready once the queue passes a
    /// share of its limit, or the outbox is closing or killed, so pacing
    /// never turns a reader that keeps up into one dropped as too slow and
    /// never holds up a goodbye. Pushes below that share do not wake it:
    /// that is the point of waiting.
    pub fn poll_pressure(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.state != State::Open || self.under_pressure(&inner) {
            return Poll::Ready(());
        }
        inner.pressure = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Drops the queue and closes at once.
    pub fn kill(&self, reason: CloseReason) {
        self.lock().kill(reason);
    }

    /// Why the outbox was killed, if it was.
    pub fn killed(&self) -> Option<CloseReason> {
        match self.lock().state {
            State::Killed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Bytes queued or being written.
    pub fn pending_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Ready when the outbox is killed; for the session task, which must
    /// then leave its room.
    pub fn poll_killed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let inner = &mut *self.lock();
        wait_for_kill(inner.state, &mut inner.owner, cx)
    }

    /// The same for the writer while it writes a batch, so that a write
    /// stuck on a full socket is abandoned. It waits in the writer's own
    /// slot, free while a batch is out: the session task waits in
    /// [`Self::poll_killed`] at the same time, and one slot wakes one task.
    pub fn poll_killed_while_writing(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let inner = &mut *self.lock();
        wait_for_kill(inner.state, &mut inner.writer, cx)
    }

    /// For the writer: moves every queued line into `batch` (which must be
    /// empty), or says how to close.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: &mut Vec<Bytes>) -> Poll<Next> {
        let mut inner = self.lock();
        match inner.state {
            State::Killed(reason) => Poll::Ready(Next::Kill(reason)),
            _ if !inner.queue.is_empty() => {
                std::mem::swap(&mut inner.queue, batch);
                Poll::Ready(Next::Write(std::mem::take(&mut inner.lines)))
            }
            State::Closing(reason) => Poll::Ready(Next::Close(reason)),
            State::Open => {
                inner.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// For the writer: `bytes` of a batch reached the transport.
    ///
    /// Returns whether more lines are already queued. When none are, the
    /// connection has gone idle and the queue's spare storage is freed, so
    /// a burst does not leave an idle connection holding a large vector.
    pub fn written(&self, bytes: usize) -> bool {
        let mut inner = self.lock();
        inner.bytes = inner.bytes.saturating_sub(bytes);
        let busy = !inner.queue.is_empty();
        if !busy && inner.queue.capacity() > KEEP_IDLE_CAPACITY {
            inner.queue = Vec::new();
        }
        busy
    }
}

/// Ready if killed; otherwise parks `cx` in `slot`, which `kill` wakes.
fn wait_for_kill(
    state: State,
    slot: &mut Option<Waker>,
    cx: &mut Context<'_>,
) -> Poll<CloseReason> {
    match state {
        State::Killed(reason) => Poll::Ready(reason),
        _ => {
            *slot = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Inner {
    fn kill(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Killed(_)) {
            return;
        }
        self.state = State::Killed(reason);
        self.queue = Vec::new();
        self.bytes = 0;
        for waker in [self.writer.take(), self.owner.take(), self.pressure.take()]
            .into_iter()
            .flatten()
        {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Wake, Waker};

    fn poll(outbox: &Outbox, batch: &mut Vec<Bytes>) -> Poll<Next> {
        outbox.poll_next(&mut Context::from_waker(Waker::noop()), batch)
    }

    #[test]
    fn drains_everything_queued_in_one_batch() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(Bytes::from_static(b"a\r\n")));
        assert!(outbox.push(Bytes::from_static(b"b\r\n")));
        assert!(outbox.push_lines(Bytes::from_static(b"c\r\nd\r\n"), 2));
        let mut batch = Vec::new();
        assert_eq!(poll(&outbox, &mut batch), Poll::Ready(Next::Write(4)));
        assert_eq!(batch.len(), 3);
        assert_eq!(outbox.pending_bytes(), 12);
        outbox.written(12);
        batch.clear();
        assert_eq!(poll(&outbox, &mut batch), Poll::Pending);
    }

    #[test]
    fn over_the_limit_kills_and_drops_the_queue() {
        let outbox = Outbox::new(10);
        assert!(outbox.push(Bytes::from_static(b"12345")));
        assert!(outbox.push(Bytes::from_static(b"12345")));
        assert!(!outbox.push(Bytes::from_static(b"1")));
        assert_eq!(outbox.killed(), Some(CloseReason::TooSlow));
        assert_eq!(outbox.pending_bytes(), 0);
        assert_eq!(
            poll(&outbox, &mut Vec::new()),
            Poll::Ready(Next::Kill(CloseReason::TooSlow))
        );
    }

    #[test]
    fn kill_wakes_the_session_and_a_writer_that_is_writing() {
        #[derive(Default)]
        struct Woken(AtomicBool);
        impl Wake for Woken {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let session = Arc::new(Woken::default());
        let writer = Arc::new(Woken::default());
        let outbox = Outbox::new(4);
        let session_waker = Waker::from(session.clone());
        let writer_waker = Waker::from(writer.clone());
        assert!(
            outbox
                .poll_killed(&mut Context::from_waker(&session_waker))
                .is_pending()
        );
        assert!(
            outbox
                .poll_killed_while_writing(&mut Context::from_waker(&writer_waker))
                .is_pending()
        );
        assert!(!outbox.push(Bytes::from_static(b"12345")));
        assert!(session.0.load(Ordering::SeqCst));
        assert!(writer.0.load(Ordering::SeqCst));
    }

    #[test]
    fn a_pacing_writer_is_woken_only_by_pressure_or_closing() {
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let outbox = Outbox::new(400);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let cx = &mut Context::from_waker(&waker);
        assert_eq!(outbox.poll_pressure(cx), Poll::Pending);
        outbox.push(Bytes::from(vec![b'a'; 50]));
        assert!(!flag.0.load(Ordering::SeqCst), "a small push waits");
        outbox.push(Bytes::from(vec![b'b'; 50]));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "a quarter of the limit wakes"
        );
        assert_eq!(outbox.poll_pressure(cx), Poll::Ready(()));

        let quiet = Outbox::new(400);
        flag.0.store(false, Ordering::SeqCst);
        assert_eq!(quiet.poll_pressure(cx), Poll::Pending);
        quiet.close(CloseReason::Quit);
        assert!(flag.0.load(Ordering::SeqCst), "closing wakes");
        assert_eq!(quiet.poll_pressure(cx), Poll::Ready(()));
    }

    #[test]
    fn closing_drains_first() {
        let outbox = Outbox::new(0);
        outbox.push(Bytes::from_static(b"bye\r\n"));
        outbox.close(CloseReason::Quit);
        assert!(!outbox.push(Bytes::from_static(b"late\r\n")));
        let mut batch = Vec::new();
        assert_eq!(poll(&outbox, &mut batch), Poll::Ready(Next::Write(1)));
        batch.clear();
        assert_eq!(
            poll(&outbox, &mut batch),
            Poll::Ready(Next::Close(CloseReason::Quit))
        );
    }
}
