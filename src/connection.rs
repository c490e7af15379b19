//! Drives one connection: its session task and its writer task.
//!
//! The session task reads lines and feeds them to the [`Session`], and also
//! watches the login timer, the shutdown signal and the outbox (a room
//! broadcast may kill it for being too slow). The writer task drains the
//! [`Outbox`] into the transport. Two tasks, so that neither direction ever
//! waits for the other: a peer that stops reading is detected by the queue
//! limit while its input is still read, and a slow write never delays what
//! the peer sends.
//!
//! While the server is busy, the writer waits for the next beat of the pace
//! (see [`crate::pacing`]) after each write, so that its next write carries
//! more.
//!
//! Once the server has decided to close a connection, it is gone within
//! [`CLOSE_BOUND`] whatever the peer does: the writer gets [`CLOSE_TIMEOUT`]
//! to flush the last lines and say goodbye (a peer that stopped reading
//! cannot hold it longer: the writer task is then aborted), and what is
//! left, at most [`LINGER_TIMEOUT`], is spent discarding input so the close
//! is not turned into a reset. `tests/bounds.rs` holds the server to it.
//! The connection's places under the connection caps are given back at the
//! moment of the decision, not at the end of that goodbye; so that this
//! cannot be used to hold descriptors past the caps, at most
//! `limits::MAX_CLOSING` connections say goodbye at once and the others
//! are closed without one.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tracing::debug;

use crate::cluster::{ECHO_WAIT, HistoryUnavailable};
use crate::context::{Connection, Live};
use crate::limits::{Permit, REFUSAL_TIMEOUT};
use crate::metrics::DropReason;
use crate::outbox::{KEEP_IDLE_CAPACITY, Next, Outbox};
use crate::protocol::CloseReason;
use crate::protocol::answer;
use crate::protocol::json::Format;
use crate::protocol::reply;
use crate::relay::NameClaim;
use crate::session::{Flow, HistoryAnswer, Session, SessionSettings};
use crate::standing::Standing;
use crate::transport::{LineReader, LineWriter, ReadError, Transport};

/// From the server's decision to close a connection to its socket being
/// closed, at most. PROTOCOL.md promises 5 seconds; the rest is margin for
/// a busy scheduler.
pub(crate) const CLOSE_BOUND: Duration = Duration::from_millis(4500);

/// Time a closing connection has to write its last lines and say goodbye;
/// a peer that does not read them is not waited for longer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Time to keep reading (and discarding) after our side closed, so unread
/// input does not turn our close into a reset that loses the last lines.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Lingering while the server stops is short: the process must exit within
/// five seconds, whatever its peers do.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(500);

/// Time for the last word to a connection being killed (too slow): its
/// socket is likely full, so this is a best effort only.
const KILL_WORD_TIMEOUT: Duration = Duration::from_millis(100);

/// Runs an admitted connection to its end.
pub(crate) async fn serve<T: Transport>(transport: T, ctx: Arc<Connection>, permit: Permit) {
    let peer = transport.peer_addr();
    let kind = transport.kind();
    debug!(%peer, transport = kind, "connected");
    let _gauge = ctx.metrics.connection(kind);
    let format = transport.format();
    let (mut reader, writer) = transport.split();
    let standing = Standing::new(Some(peer.ip()), kind, ctx.hub.now());
    // What a reload may change, as it is now; the operators are looked up
    // again when needed, so an idle connection does not hold them.
    let Live {
        settings,
        max_queue_bytes,
        login_timeout,
        ..
    } = ctx.live();
    let outbox = Arc::new(Outbox::with_standing(max_queue_bytes, format, standing));
    // Bans made while the connection lives reach it through this entry.
    let _registered = ctx.hub.moderation().register(&outbox);
    let mut writer = tokio::spawn(write_loop(writer, outbox.clone(), ctx.clone()));

    let settings = SessionSettings {
        // A browser that reached /ws already found the page.
        hint_browsers: !matches!(kind, "ws" | "wss"),
        ..settings
    };
    // A ban made while the connection's handshake ran, after the listener
    // looked: refused as it would have been then.
    let now_ms = ctx.hub.now();
    match ctx.hub.moderation().bans().find(peer.ip(), now_ms) {
        Some(ban) => {
            outbox.push(answer::error(format, &ban.refusal()));
            outbox.close(CloseReason::Banned);
        }
        None => {
            let login_deadline = login_timeout.map(|t| Instant::now() + t);
            converse(&mut reader, &outbox, &ctx, settings, login_deadline, &peer).await;
        }
    }
    // The decision is made: the room has seen the user leave (the session
    // is gone), not after the goodbye is flushed, and the connection's
    // places are free at once.
    let closing = Instant::now();
    drop(permit);
    // While the server stops every connection says goodbye; otherwise only
    // as many at once as have a place (see `limits::MAX_CLOSING`), and the
    // others are dropped without one.
    let goodbye = ctx.closing.clone().try_acquire_owned().ok();
    let (flush, linger) = if ctx.shutdown.is_cancelled() {
        (CLOSE_TIMEOUT, SHUTDOWN_LINGER)
    } else if goodbye.is_some() {
        (CLOSE_TIMEOUT, LINGER_TIMEOUT)
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    if timeout(flush, &mut writer).await.is_err() {
        debug!(%peer, "goodbye not read in time, or no place to say it; closing anyway");
        writer.abort();
        let _ = writer.await;
    }
    let until = (Instant::now() + linger).min(closing + CLOSE_BOUND);
    let _ = timeout_at(until, reader.discard()).await;
    debug!(%peer, "closed");
}

/// Runs the session until the connection is to close; the session is gone
/// (its room has seen the user leave) when this returns.
async fn converse<R: LineReader>(
    reader: &mut R,
    outbox: &Arc<Outbox>,
    ctx: &Arc<Connection>,
    settings: SessionSettings,
    login_deadline: Option<Instant>,
    peer: &std::net::SocketAddr,
) {
    let now = Instant::now();
    let mut session = Session::start(ctx.hub.clone(), outbox.clone(), settings, now.into_std());
    loop {
        // Lines said are gathered while more input is already at hand, and
        // go to the room in one burst before the task waits for the peer.
        if session.has_burst() {
            let before = session.burst_len();
            match reader.read_line().now_or_never() {
                Some(read) => {
                    if on_read(read, &mut session, ctx).await == Flow::Close {
                        break;
                    }
                    // A line that added nothing (blank, or over the rate)
                    // ends the burst: a stream of them must not hold back
                    // the lines already gathered.
                    if session.burst_len() == before {
                        session.flush();
                    }
                    continue;
                }
                None => session.flush(),
            }
        }
        let joined = session.membership().is_some();
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                session.shutdown();
                break;
            }
            reason = poll_fn(|cx| outbox.poll_killed(cx)) => {
                debug!(%peer, reason = reason.as_str(), "dropped");
                if reason == CloseReason::TooSlow {
                    ctx.metrics.dropped(DropReason::TooSlow);
                }
                break;
            }
            eviction = poll_fn(|cx| outbox.poll_evicted(cx)) => {
                debug!(%peer, "removed by an operator");
                session.evicted(&eviction);
                break;
            }
            _ = sleep_until(login_deadline.unwrap_or(now)), if !joined && login_deadline.is_some() => {
                session.login_timed_out();
                break;
            }
            // Back-pressure: while the way to NATS is congested, the peer is
            // not read (its socket buffers fill, then its sends block).
            read = async {
                room_for_lines(ctx).await;
                reader.read_line().await
            } => {
                if on_read(read, &mut session, ctx).await == Flow::Close {
                    break;
                }
            }
        }
    }
}

/// Feeds what the reader produced to the session.
async fn on_read(
    read: Result<Option<&[u8]>, ReadError>,
    session: &mut Session,
    ctx: &Connection,
) -> Flow {
    let mut flow = match read {
        Ok(Some(line)) => {
            ctx.metrics.line_in();
            if ctx.cluster.is_some() && is_command(line) {
                // In a cluster the user's own lines come back through NATS:
                // a command is answered after them, as on one node.
                session.flush();
                echoes(session, ctx).await;
            }
            session.handle_line(line, std::time::Instant::now())
        }
        Ok(None) | Err(ReadError::Io(_)) => session.peer_gone(),
        Err(ReadError::LineTooLong) => {
            ctx.metrics.dropped(DropReason::TooLong);
            session.line_too_long()
        }
        Err(ReadError::BadUtf8) => session.bad_utf8(),
        Err(ReadError::Protocol) => session.protocol_error(),
    };
    if flow == Flow::Hook {
        // Boxed: a plugin call's future is large, and only connections
        // on a server with plugins ever make one.
        flow = Box::pin(hook(session, ctx)).await;
    }
    if flow == Flow::Claim {
        flow = claim(session, ctx).await;
    }
    if flow == Flow::History {
        flow = history(session, ctx).await;
    }
    if flow == Flow::Oper {
        // Boxed, whole: rare, and an idle connection's task must not carry
        // room for them.
        flow = Box::pin(oper(session, ctx)).await;
    }
    if flow == Flow::Moderate {
        flow = Box::pin(order(session, ctx)).await;
    }
    if flow == Flow::RateLimited {
        ctx.metrics.dropped(DropReason::RateLimited);
    }
    flow
}

/// Asks the plugins what the session stopped at. Bounded: each plugin's
/// wait for an instance, the start of one and its call each have a time
/// limit (`plugins::CALL_SLACK` past the budget), plugins are a fixed
/// list, and shutdown cuts the wait short.
async fn hook(session: &mut Session, ctx: &Connection) -> Flow {
    let (Some(hooks), Some(request)) = (ctx.hub.hooks(), session.pending_hook()) else {
        return session.hook_dropped();
    };
    tokio::select! {
        answer = hooks.answer(request) => session.hook_answered(answer),
        () = ctx.shutdown.cancelled() => session.hook_dropped(),
    }
}

/// Whether a raw line is a command answered on this node (`/word`, not
/// `//text`, nor `/me` and `/msg`, which travel behind the sender's lines
/// anyway).
fn is_command(line: &[u8]) -> bool {
    let Some(body) = line.strip_prefix(b"/") else {
        return false;
    };
    let word_end = body
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(body.len());
    let word = &body[..word_end];
    !body.starts_with(b"/")
        && !word.eq_ignore_ascii_case(b"me")
        && !word.eq_ignore_ascii_case(b"msg")
}

/// Waits until the session's own bursts have come back from the cluster.
/// Bounded: bursts lost with the link are given up after
/// [`ECHO_WAIT`], and shutdown cuts the wait short.
async fn echoes(session: &Session, ctx: &Connection) {
    let outbox = session.outbox();
    let back = std::future::poll_fn(|cx| outbox.poll_echoes(cx));
    tokio::select! {
        back = timeout(ECHO_WAIT, back) => {
            if back.is_err() {
                outbox.forget_echoes();
            }
        }
        () = ctx.shutdown.cancelled() => {}
    }
}

/// Reads the room's history from the cluster for the session's pending
/// `/history`. Bounded: the cluster answers within its read timeout, and
/// shutdown cuts the wait short.
async fn history(session: &mut Session, ctx: &Connection) -> Flow {
    let answer = match (session.pending_history(), &ctx.cluster) {
        (Some((room, ask)), Some(cluster)) => {
            // Boxed: reading a room's history takes a large future, which
            // every connection's task would otherwise carry while idle.
            let read = Box::pin(cluster.history(room, ask));
            tokio::select! {
                read = read => match read {
                    Ok(page) => HistoryAnswer::Page(page),
                    Err(HistoryUnavailable::Off) => HistoryAnswer::Off,
                    Err(HistoryUnavailable::Busy) => HistoryAnswer::Busy,
                },
                () = ctx.shutdown.cancelled() => HistoryAnswer::Busy,
            }
        }
        _ => HistoryAnswer::Busy,
    };
    session.history_answered(answer)
}

/// Checks the credentials of the session's pending `/oper`. Bounded: a
/// try waits at most `operators::CHECK_WAIT` for its turn, then one
/// argon2 hash; shutdown cuts the wait short.
async fn oper(session: &mut Session, ctx: &Connection) -> Flow {
    let right = match session.pending_oper() {
        Some((name, password)) => {
            let operators = ctx.live().operators;
            tokio::select! {
                right = operators.check(name, password) => right,
                () = ctx.shutdown.cancelled() => false,
            }
        }
        None => false,
    };
    session.oper_answered(right)
}

/// Carries the session's pending order to the node holding its user.
/// Bounded: the cluster answers within its order timeout, and shutdown
/// cuts the wait short.
async fn order(session: &mut Session, ctx: &Connection) -> Flow {
    let done = match (session.pending_order(), &ctx.cluster) {
        (Some(order), Some(cluster)) => {
            tokio::select! {
                done = cluster.moderate(order) => done,
                () = ctx.shutdown.cancelled() => None,
            }
        }
        _ => None,
    };
    session.order_answered(done)
}

/// Asks the cluster for the name the session reserved, and tells the
/// session the answer; once granted, waits for the join line to come back,
/// so the user's next line is answered after it, as on one node. Bounded:
/// the cluster answers within its claim timeout (busy, past it, while the
/// link is up), the join line comes back within its admission timeout, and
/// shutdown cuts the wait short.
async fn claim(session: &mut Session, ctx: &Connection) -> Flow {
    let (Some((room, user)), Some(cluster)) = (session.pending_claim(), &ctx.cluster) else {
        return session.claim_answered(NameClaim::Granted);
    };
    let answer = cluster.claim(room, user).await;
    let flow = session.claim_answered(answer);
    if answer == NameClaim::Granted {
        tokio::select! {
            () = cluster.admitted(room, user) => {}
            () = ctx.shutdown.cancelled() => {}
        }
    }
    flow
}

/// Waits until the cluster can take more room lines (see
/// [`crate::cluster::Cluster::room_for_lines`]); at once on a node alone.
async fn room_for_lines(ctx: &Connection) {
    if let Some(cluster) = &ctx.cluster {
        cluster.room_for_lines().await;
    }
}

/// Drains the outbox into the transport until the connection closes.
async fn write_loop<W: LineWriter>(mut writer: W, outbox: Arc<Outbox>, ctx: Arc<Connection>) {
    let mut batch: Vec<Bytes> = Vec::new();
    // When the next write may start, while the server paces its writes.
    let mut earliest: Option<Instant> = None;
    loop {
        if let Some(at) = earliest.take() {
            // Lines arriving meanwhile join the next batch. Only a queue
            // filling up, a close or a kill cuts the wait short: waking on
            // every push would be the very cost pacing saves.
            tokio::select! {
                _ = sleep_until(at) => {}
                () = poll_fn(|cx| outbox.poll_pressure(cx)) => {}
            }
        }
        let next = tokio::select! {
            next = poll_fn(|cx| outbox.poll_next(cx, &mut batch)) => next,
            alive = writer.heartbeat() => {
                if let Err(reason) = alive {
                    outbox.kill(reason);
                }
                continue;
            }
        };
        match next {
            Next::Write(lines) => {
                let bytes = batch.iter().map(Bytes::len).sum();
                tokio::select! {
                    sent = writer.send(&batch) => {
                        if sent.is_err() {
                            outbox.kill(CloseReason::PeerGone);
                            return;
                        }
                    }
                    reason = poll_fn(|cx| outbox.poll_killed_while_writing(cx)) => {
                        return last_word(&mut writer, reason, outbox.format()).await;
                    }
                }
                let busy = outbox.written(bytes);
                ctx.metrics.lines_out(lines);
                ctx.pacer.wrote(lines);
                earliest = ctx.pacer.next_beat(Instant::now());
                batch.clear();
                if !busy {
                    writer.idle();
                    if batch.capacity() > KEEP_IDLE_CAPACITY {
                        batch = Vec::new();
                    }
                }
            }
            Next::Close(reason) => {
                let _ = timeout(CLOSE_TIMEOUT, writer.close(reason)).await;
                return;
            }
            Next::Kill(reason) => return last_word(&mut writer, reason, outbox.format()).await,
        }
    }
}

/// Tells a killed connection why, if its socket still takes it.
async fn last_word<W: LineWriter>(writer: &mut W, reason: CloseReason, format: Format) {
    let word = async {
        if reason == CloseReason::TooSlow {
            writer
                .send(&[answer::error(format, reply::reason::TOO_SLOW)])
                .await?;
        }
        writer.close(reason).await
    };
    let _ = timeout(KILL_WORD_TIMEOUT, word).await;
}

/// Refuses a connection over a limit: one `ERROR` line, no welcome, close.
/// `transport` is what it takes to speak to the peer at all (a TLS
/// handshake, say); all of it, and the goodbye, get [`REFUSAL_TIMEOUT`].
/// `slot` is the connection's place among those being refused (see
/// [`crate::limits::MAX_REFUSALS`]), held until it is gone.
pub(crate) async fn refuse<T: Transport>(
    transport: impl Future<Output = Option<T>>,
    why: String,
    close: CloseReason,
    slot: OwnedSemaphorePermit,
) {
    let told = timeout(REFUSAL_TIMEOUT, async {
        let transport = transport.await?;
        debug!(peer = %transport.peer_addr(), why, "refused");
        let format = transport.format();
        let (mut reader, mut writer) = transport.split();
        let goodbye = async {
            writer.send(&[answer::error(format, &why)]).await?;
            writer.close(close).await
        };
        if goodbye.await.is_ok() {
            reader.discard().await;
        }
        Some(())
    })
    .await;
    if told.is_err() {
        debug!(why = %why, "refused connection did not listen in time");
    }
    drop(slot);
}
