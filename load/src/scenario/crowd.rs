//! A population of rooms: receivers, senders and optionally one slow reader,
//! set up at a bounded pace and held until the measured phase is over.
//!
//! On chat transports the first `senders` users of a room also send (a chat
//! user must be a member to speak, and receives its own lines like everyone
//! else). On NATS each sender is a separate publishing connection, so a
//! message reaches `users` subscribers on both.
//!
//! Lifecycle: [`assemble`] returns once every connection has entered its
//! room; [`Crowd::start`] releases the senders; [`Crowd::finish`] stops the
//! senders, waits until every receiver has what was sent (or a drain time
//! limit), stops the receivers and collects what they counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::conn::Conn;
use crate::client::encode::Encoder;
use crate::client::inbox::{Inbox, LeftWatch};
use crate::client::names;
use crate::error::LoadError;
use crate::flow::{Flow, GONE};
use crate::latency::Latencies;
use crate::net::dial::Dial;
use crate::sender::{self, Pace, Sent};
use crate::setup::{Pacer, Setup};
use crate::tally::Tally;
use crate::target::Target;

/// Longest setup pause without any connection becoming ready before the run
/// is given up.
pub const SETUP_STALL: Duration = Duration::from_secs(60);

/// Longest wait after the senders stop for receivers to get what was sent:
/// a window of backlog drains in milliseconds, so this only ends runs whose
/// messages are truly lost.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the drain checks the receivers' counts.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// The slow reader's socket receive buffer: small, so the server's queue,
/// not the kernel's buffers, holds what it does not read.
pub const SLOW_RECV_BUFFER: u32 = 4 * 1024;

/// How long the slow reader reads after the run to learn whether the server
/// closed it.
const SLOW_CHECK: Duration = Duration::from_secs(3);

/// What to set up.
#[derive(Debug, Clone)]
pub struct CrowdPlan {
    /// Where: the sender's node when `peers` is not empty.
    pub target: Target,
    /// Other nodes of `target`'s cluster: user `i` of every room connects
    /// to node `i mod (1 + peers.len())`, `target` being node 0, so a room's
    /// members alternate between the nodes and its senders (its first users)
    /// start on `target`. Chat transports only.
    pub peers: Vec<Target>,
    /// Rooms (NATS subjects).
    pub rooms: usize,
    /// Receiving users per room.
    pub users: usize,
    /// Senders per room.
    pub senders: usize,
    /// Payload bytes per message.
    pub payload: usize,
    /// Messages per second into each room; `None` for as fast as the window
    /// allows.
    pub room_rate: Option<f64>,
    /// In-flight window per room, in messages.
    pub window: u64,
    /// Add one member to room 0 that never reads.
    pub slow_reader: bool,
    /// Connection pace.
    pub setup: Setup,
}

impl CrowdPlan {
    /// Separate publishing connections (NATS only).
    fn publishers(&self) -> usize {
        if self.target.scheme.is_nats() {
            self.rooms * self.senders
        } else {
            0
        }
    }

    /// Every connection the crowd opens.
    pub fn connections(&self) -> usize {
        self.rooms * self.users + self.publishers() + usize::from(self.slow_reader)
    }

    /// The node user `user` of a room connects to.
    pub fn target_of(&self, user: usize) -> &Target {
        match user % (1 + self.peers.len()) {
            0 => &self.target,
            n => &self.peers[n - 1],
        }
    }

    /// Every node, for reports: `tcp://A + tcp://B` for a cluster.
    pub fn targets(&self) -> String {
        std::iter::once(&self.target)
            .chain(&self.peers)
            .map(Target::to_string)
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Bytes of one delivered message on the wire, about.
    fn line_bytes(&self) -> usize {
        self.payload + 24
    }
}

/// The signals of a run.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// Senders begin.
    pub start: CancellationToken,
    /// Senders end.
    pub stop_sending: CancellationToken,
    /// Receivers end and connections close.
    pub stop_receiving: CancellationToken,
}

impl Controls {
    fn cancel_all(&self) {
        self.start.cancel();
        self.stop_sending.cancel();
        self.stop_receiving.cancel();
    }
}

/// What every task of the crowd shares.
struct Ctx {
    plan: CrowdPlan,
    /// This crowd's run number, part of its room names.
    run: u32,
    pacer: Pacer,
    controls: Controls,
    flows: Vec<Arc<Flow>>,
    latencies: Arc<Latencies>,
    watch: Option<Arc<LeftWatch>>,
    /// One message per connection: entered, or why not.
    ready: mpsc::UnboundedSender<Result<(), LoadError>>,
    /// Each sender task, with its global sender id.
    senders: mpsc::UnboundedSender<(usize, JoinHandle<Sent>)>,
}

/// What one receiver counted.
#[derive(Debug)]
pub struct MemberOutcome {
    /// Its room.
    pub room: usize,
    /// Its counters.
    pub tally: Tally,
    /// Why it ended early, if it did.
    pub error: Option<String>,
}

/// What the slow reader saw.
#[derive(Debug, Clone, Default)]
pub struct SlowOutcome {
    /// The server closed its connection during the run.
    pub closed: bool,
    /// The first error line it was sent, if it read one.
    pub error: Option<String>,
}

/// A crowd that has entered its rooms.
pub struct Crowd {
    plan: CrowdPlan,
    /// Each room's window and receiver counts.
    pub flows: Vec<Arc<Flow>>,
    /// Latency shards.
    pub latencies: Arc<Latencies>,
    /// The slow reader's departure, seen by room 0.
    pub watch: Option<Arc<LeftWatch>>,
    controls: Controls,
    members: Vec<JoinHandle<MemberOutcome>>,
    publishers: Vec<JoinHandle<()>>,
    slow: Option<JoinHandle<SlowOutcome>>,
    sender_tasks: mpsc::UnboundedReceiver<(usize, JoinHandle<Sent>)>,
    /// Time from the first connect to the last entry.
    pub setup_time: Duration,
}

/// Everything collected at the end.
#[derive(Debug)]
pub struct Finished {
    /// Messages sent, by global sender id.
    pub sent: Vec<u64>,
    /// Errors of senders that stopped early.
    pub sender_errors: Vec<String>,
    /// Every receiver's counts.
    pub members: Vec<MemberOutcome>,
    /// The slow reader, if any.
    pub slow: Option<SlowOutcome>,
    /// Every receiver got everything before the drain time limit.
    pub drained: bool,
}

impl Finished {
    /// Payloads received.
    pub fn delivered(&self) -> u64 {
        self.members.iter().map(|m| m.tally.delivered).sum()
    }

    /// Messages sent but not received, over all receivers.
    pub fn lost(&self, senders_per_room: usize) -> u64 {
        self.members
            .iter()
            .map(|m| {
                let from = m.room * senders_per_room;
                m.tally.lost(&self.sent[from..from + senders_per_room])
            })
            .sum()
    }

    /// Messages received out of order.
    pub fn reordered(&self) -> u64 {
        self.members.iter().map(|m| m.tally.reordered()).sum()
    }

    /// Lines that were not from an expected sender.
    pub fn unexpected(&self) -> u64 {
        self.members.iter().map(|m| m.tally.unexpected).sum()
    }

    /// Error lines received, and the first problem of any kind.
    pub fn errors(&self) -> (u64, Option<String>) {
        let count = self.members.iter().map(|m| m.tally.errors).sum::<u64>()
            + self.members.iter().filter(|m| m.error.is_some()).count() as u64
            + self.sender_errors.len() as u64;
        let first = self
            .members
            .iter()
            .find_map(|m| m.error.clone().or_else(|| m.tally.first_error.clone()))
            .or_else(|| self.sender_errors.first().cloned());
        (count, first)
    }
}

/// Opens every connection of `plan` and waits until all have entered.
pub async fn assemble(plan: CrowdPlan) -> Result<Crowd, LoadError> {
    let began = Instant::now();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (senders_tx, senders_rx) = mpsc::unbounded_channel();
    let controls = Controls::default();
    let latencies = Latencies::new();
    let watch = plan
        .slow_reader
        .then(|| Arc::new(LeftWatch::new(&names::user(plan.rooms * plan.users))));
    let flows: Vec<_> = (0..plan.rooms)
        .map(|_| Arc::new(Flow::new(plan.users, plan.window)))
        .collect();
    let ctx = Arc::new(Ctx {
        pacer: Pacer::new(&plan.setup),
        run: names::next_run(),
        plan: plan.clone(),
        controls: controls.clone(),
        flows: flows.clone(),
        latencies: latencies.clone(),
        watch: watch.clone(),
        ready: ready_tx,
        senders: senders_tx,
    });
    let mut members = Vec::with_capacity(plan.rooms * plan.users);
    for room in 0..plan.rooms {
        for user in 0..plan.users {
            members.push(tokio::spawn(member(ctx.clone(), room, user)));
        }
    }
    let publishers: Vec<_> = (0..plan.publishers())
        .map(|i| tokio::spawn(publisher(ctx.clone(), i / plan.senders, i % plan.senders)))
        .collect();
    let slow = plan
        .slow_reader
        .then(|| tokio::spawn(slow_reader(ctx.clone())));
    drop(ctx);

    let expected = plan.connections();
    let mut entered = 0;
    let failure = loop {
        if entered == expected {
            break None;
        }
        match tokio::time::timeout(SETUP_STALL, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => entered += 1,
            Ok(Some(Err(e))) => break Some(e),
            Ok(None) => break Some(LoadError::Scenario("setup tasks ended early".into())),
            Err(_) => {
                break Some(LoadError::Timeout(format!(
                    "setting up: {entered} of {expected} connections ready"
                )));
            }
        }
    };
    if let Some(e) = failure {
        controls.cancel_all();
        for task in &members {
            task.abort();
        }
        for task in &publishers {
            task.abort();
        }
        if let Some(task) = &slow {
            task.abort();
        }
        return Err(e);
    }
    Ok(Crowd {
        plan,
        flows,
        latencies,
        watch,
        controls,
        members,
        publishers,
        slow,
        sender_tasks: senders_rx,
        setup_time: began.elapsed(),
    })
}

impl Crowd {
    /// Releases the senders.
    pub fn start(&self) {
        self.controls.start.cancel();
    }

    /// Payloads received so far by present receivers.
    pub fn delivered_now(&self) -> u64 {
        delivered(&self.flows)
    }

    /// Stops the senders, drains, stops the receivers and collects.
    pub async fn finish(mut self) -> Finished {
        self.controls.start.cancel();
        self.controls.stop_sending.cancel();
        let senders = self.plan.rooms * self.plan.senders;
        let mut sent = vec![0; senders];
        let mut sender_errors = Vec::new();
        for _ in 0..senders {
            let Some((id, task)) = self.sender_tasks.recv().await else {
                break;
            };
            match task.await {
                Ok(done) => {
                    sent[id] = done.count;
                    sender_errors.extend(done.error);
                }
                Err(e) => sender_errors.push(e.to_string()),
            }
        }
        let drained = self.drain(&sent).await;
        self.controls.stop_receiving.cancel();
        let mut members = Vec::with_capacity(self.members.len());
        for task in self.members {
            if let Ok(outcome) = task.await {
                members.push(outcome);
            }
        }
        for task in self.publishers {
            let _ = task.await;
        }
        let slow = match self.slow {
            Some(task) => task.await.ok(),
            None => None,
        };
        Finished {
            sent,
            sender_errors,
            members,
            slow,
            drained,
        }
    }

    /// Waits until every present receiver has all its room sent.
    async fn drain(&self, sent: &[u64]) -> bool {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let per_room = self.plan.senders;
        loop {
            let done = self.flows.iter().enumerate().all(|(room, flow)| {
                let target: u64 = sent[room * per_room..(room + 1) * per_room].iter().sum();
                (0..flow.receivers()).all(|i| flow.received(i) >= target)
            });
            if done {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

/// Payloads received so far by the present receivers of `flows`.
pub fn delivered(flows: &[Arc<Flow>]) -> u64 {
    flows
        .iter()
        .flat_map(|f| (0..f.receivers()).map(|i| f.received(i)))
        .filter(|&n| n != GONE)
        .sum()
}

/// One receiving user (and, on chat, maybe a sender).
async fn member(ctx: Arc<Ctx>, room: usize, user: usize) -> MemberOutcome {
    let plan = &ctx.plan;
    let index = room * plan.users + user;
    let first_sender = (room * plan.senders) as u32;
    let flow = &ctx.flows[room];
    let name = names::user(index);
    let mut inbox = Inbox::new(
        &name,
        Tally::new(
            first_sender,
            plan.senders as u32,
            Some(ctx.latencies.recorder(index)),
        ),
    );
    if room == 0 {
        inbox.watch = ctx.watch.clone();
    }
    let target = plan.target_of(user);
    let entered = enter(
        &ctx,
        target,
        index,
        &name,
        room,
        &plan.setup.dial,
        inbox,
        true,
    )
    .await;
    let mut conn = match entered {
        Ok(conn) => conn,
        Err(e) => {
            flow.record(user, GONE);
            let error = Some(e.to_string());
            let _ = ctx.ready.send(Err(e));
            return MemberOutcome {
                room,
                tally: Tally::new(first_sender, plan.senders as u32, None),
                error,
            };
        }
    };
    if !plan.target.scheme.is_nats() && user < plan.senders {
        spawn_sender(&ctx, &conn, room, user, Encoder::Chat);
    }
    let _ = ctx.ready.send(Ok(()));
    let error = match conn
        .receive_until(&ctx.controls.stop_receiving, Some((flow, user)))
        .await
    {
        Ok(()) => None,
        Err(e) => {
            flow.record(user, GONE);
            Some(format!("{name}: {e}"))
        }
    };
    conn.inbox.tally.flush();
    MemberOutcome {
        room,
        tally: conn.inbox.tally,
        error,
    }
}

/// A NATS publishing connection.
async fn publisher(ctx: Arc<Ctx>, room: usize, sender: usize) {
    let plan = &ctx.plan;
    let index = plan.rooms * plan.users + room * plan.senders + sender;
    let inbox = Inbox::new("", Tally::new(0, 0, None));
    let entered = enter(
        &ctx,
        &plan.target,
        index,
        "publisher",
        room,
        &plan.setup.dial,
        inbox,
        false,
    )
    .await;
    let mut conn = match entered {
        Ok(conn) => conn,
        Err(e) => {
            let _ = ctx.ready.send(Err(e));
            return;
        }
    };
    let subject = names::subject(ctx.run, room);
    spawn_sender(&ctx, &conn, room, sender, Encoder::Nats { subject });
    let _ = ctx.ready.send(Ok(()));
    // Keeps answering the server's PINGs until the end.
    let _ = conn.receive_until(&ctx.controls.stop_receiving, None).await;
}

/// Connects connection `index` to `target` at the crowd's pace and enters
/// `room` as `name`; on NATS it subscribes to the room's subject when
/// `subscribe`.
#[allow(clippy::too_many_arguments)]
async fn enter(
    ctx: &Ctx,
    target: &Target,
    index: usize,
    name: &str,
    room: usize,
    dial: &Dial,
    inbox: Inbox,
    subscribe: bool,
) -> Result<Conn, LoadError> {
    let _permit = ctx.pacer.admit().await;
    let mut conn = Conn::open(target, index, dial, inbox).await?;
    let subject = names::subject(ctx.run, room);
    let subject = subscribe.then_some(subject.as_str());
    conn.enter(&names::room(ctx.run, room), name, subject)
        .await?;
    Ok(conn)
}

fn spawn_sender(ctx: &Ctx, conn: &Conn, room: usize, sender: usize, encoder: Encoder) {
    let plan = &ctx.plan;
    let id = room * plan.senders + sender;
    let rate = plan.room_rate.map(|r| r / plan.senders as f64);
    let pace = Pace::new(rate, plan.window, plan.payload, plan.line_bytes());
    let task = tokio::spawn(sender::run(
        conn.writer(),
        encoder,
        id as u32,
        ctx.flows[room].clone(),
        pace,
        ctx.controls.start.clone(),
        ctx.controls.stop_sending.clone(),
    ));
    let _ = ctx.senders.send((id, task));
}

/// A member of room 0 that reads only until it has joined.
async fn slow_reader(ctx: Arc<Ctx>) -> SlowOutcome {
    let plan = &ctx.plan;
    let index = plan.rooms * plan.users;
    let name = names::user(index);
    let dial = Dial {
        recv_buffer: Some(SLOW_RECV_BUFFER),
        ..plan.setup.dial
    };
    let inbox = Inbox::new(&name, Tally::new(0, plan.senders as u32, None));
    let entered = enter(&ctx, &plan.target, index, &name, 0, &dial, inbox, true).await;
    let mut conn = match entered {
        Ok(conn) => conn,
        Err(e) => {
            let _ = ctx.ready.send(Err(e));
            return SlowOutcome::default();
        }
    };
    let _ = ctx.ready.send(Ok(()));
    ctx.controls.stop_receiving.cancelled().await;
    // Reading now drains what the kernel holds; a closed connection ends in
    // end-of-stream or an error, a live one in the time limit.
    let closed = tokio::time::timeout(SLOW_CHECK, async {
        while let Ok(true) = conn.receive().await {}
    })
    .await
    .is_ok();
    SlowOutcome {
        closed,
        error: conn.inbox.tally.first_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Scheme;

    fn plan(peers: usize) -> CrowdPlan {
        let node = |port| Target::at(Scheme::Tcp, ([127, 0, 0, 1], port).into());
        CrowdPlan {
            target: node(1000),
            peers: (1..=peers as u16).map(|i| node(1000 + i)).collect(),
            rooms: 1,
            users: 4,
            senders: 1,
            payload: 64,
            room_rate: None,
            window: 1,
            slow_reader: false,
            setup: Setup::default(),
        }
    }

    #[test]
    fn users_alternate_between_nodes_starting_on_the_first() {
        let two = plan(1);
        let ports: Vec<u16> = (0..4).map(|u| two.target_of(u).addr.port()).collect();
        assert_eq!(ports, [1000, 1001, 1000, 1001]);
        assert_eq!(two.targets(), "tcp://127.0.0.1:1000 + tcp://127.0.0.1:1001");
        let one = plan(0);
        assert!((0..4).all(|u| one.target_of(u).addr.port() == 1000));
        assert_eq!(one.targets(), "tcp://127.0.0.1:1000");
    }
}
