//! One connection through its life: open, join or subscribe, receive.
//!
//! The read half stays here; the write half sits behind an async mutex so a
//! sender task and the answers to NATS `PING`s and WebSocket pings can share
//! it (one short, uncontended lock per batch).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::inbox::Inbox;
use crate::clock::now_nanos;
use crate::error::LoadError;
use crate::flow::Flow;
use crate::net::dial::Dial;
use crate::net::side::{self, ReadSide, WriteSide};
use crate::protocol::chat::next_line;
use crate::protocol::nats::{self, next_frame};
use crate::target::{Scheme, Target};

/// Longest wait for a JOIN to be confirmed or a subscription to be
/// acknowledged: the server's default login timeout, so a server that is
/// merely busy joining thousands of users is given its own patience.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A shared write half.
pub type Writer = Arc<Mutex<WriteSide>>;

/// An open connection.
pub struct Conn {
    scheme: Scheme,
    reader: ReadSide,
    /// The incomplete tail of the last read.
    carry: Vec<u8>,
    writer: Writer,
    /// Receiving state and counters.
    pub inbox: Inbox,
}

impl Conn {
    /// Connects connection number `index`.
    pub async fn open(
        target: &Target,
        index: usize,
        dial: &Dial,
        inbox: Inbox,
    ) -> Result<Conn, LoadError> {
        let (reader, writer) = side::open(target, index, dial).await?;
        Ok(Conn {
            scheme: target.scheme,
            reader,
            carry: Vec::new(),
            writer: Arc::new(Mutex::new(writer)),
            inbox,
        })
    }

    /// The write half, for a sender.
    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    /// Enters a room: chat `JOIN room user` until our own `has joined`, or
    /// NATS `CONNECT` (+ `SUB subject` when given) until the `PONG` of a
    /// `PING`, which proves the server has processed the subscription.
    pub async fn enter(
        &mut self,
        room: &str,
        user: &str,
        subject: Option<&str>,
    ) -> Result<(), LoadError> {
        let mut hello = Vec::new();
        if self.scheme.is_nats() {
            nats::encode_connect(&mut hello);
            if let Some(subject) = subject {
                nats::encode_sub(&mut hello, subject, 1);
            }
            nats::encode_ping(&mut hello);
        } else {
            hello.extend_from_slice(format!("JOIN {room} {user}\n").as_bytes());
        }
        self.writer.lock().await.send(&hello).await?;
        let handshake = async {
            while !self.entered() {
                if self.inbox.tally.errors > 0 {
                    let why = self.inbox.tally.first_error.clone().unwrap_or_default();
                    return Err(LoadError::Refused(why));
                }
                if !self.receive().await? {
                    return Err(LoadError::Closed);
                }
            }
            Ok(())
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| LoadError::Timeout(format!("joining as {user}")))?
    }

    fn entered(&self) -> bool {
        if self.scheme.is_nats() {
            self.inbox.pongs_seen > 0
        } else {
            self.inbox.joined
        }
    }

    /// Reads one batch and handles it; `false` when the server has closed.
    pub async fn receive(&mut self) -> Result<bool, LoadError> {
        let inbox = &mut self.inbox;
        let open = if self.scheme.is_nats() {
            self.reader
                .next_batch(&mut self.carry, |buf| {
                    let now = now_nanos();
                    let mut at = 0;
                    while let Some((frame, used)) = next_frame(&buf[at..])? {
                        inbox.frame(frame, now);
                        at += used;
                    }
                    Ok(at)
                })
                .await?
        } else {
            self.reader
                .next_batch(&mut self.carry, |buf| {
                    let now = now_nanos();
                    let mut at = 0;
                    while let Some((line, used)) = next_line(&buf[at..]) {
                        inbox.line(line, now);
                        at += used;
                    }
                    Ok(at)
                })
                .await?
        };
        if let Some(payload) = self.reader.take_ping() {
            self.writer.lock().await.pong(&payload).await?;
        }
        if self.inbox.pongs_due > 0 {
            let mut pongs = Vec::new();
            for _ in 0..self.inbox.pongs_due {
                nats::encode_pong(&mut pongs);
            }
            self.inbox.pongs_due = 0;
            self.writer.lock().await.send(&pongs).await?;
        }
        Ok(open)
    }

    /// Receives until `stop`, publishing the delivered count to `slot`
    /// after each batch. A connection the server closes is an error.
    pub async fn receive_until(
        &mut self,
        stop: &CancellationToken,
        slot: Option<(&Flow, usize)>,
    ) -> Result<(), LoadError> {
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                biased;
                () = &mut stopped => return Ok(()),
                open = self.receive() => {
                    let open = open?;
                    if let Some((flow, i)) = slot {
                        flow.record(i, self.inbox.tally.delivered);
                    }
                    if !open {
                        return Err(LoadError::Closed);
                    }
                }
            }
        }
    }

    /// Says goodbye: `/quit` on chat, then closes the sending side.
    pub async fn leave(&mut self) {
        let mut writer = self.writer.lock().await;
        if !self.scheme.is_nats() {
            let _ = writer.send(b"/quit\n").await;
        }
        writer.close().await;
    }
}
