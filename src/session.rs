//! One user's conversation with the server, as a state machine without I/O.
//!
//! The connection driver feeds a [`Session`] raw lines and events (timeout,
//! a line too long, shutdown) together with the current time; the session
//! answers by pushing lines into the connection's [`Outbox`] and into rooms
//! through the [`Hub`]. It never touches a socket or a clock, so the same
//! code serves every transport and builds for wasm32.
//!
//! When a session decides the connection must end, it closes its outbox
//! with the reason (the writer then flushes the last lines and closes) and
//! returns [`Flow::Close`]; dropping the session leaves its room.
//!
//! Chat lines are not broadcast one by one: a session gathers the lines its
//! user says into a *burst* while the driver has more input at hand, and
//! the driver calls [`Session::flush`] before it waits for more. A burst
//! reaches every member as one shared buffer, so a sender that pastes or
//! streams many lines costs one queue push per member per burst rather than
//! per line. Anything else the session does (a command, a reply, leaving)
//! flushes the burst first, so the order everyone sees is the order said.
//!
//! With plugins loaded, the session stops at [`Flow::Hook`] before a join,
//! before a line is gathered and at a command the protocol does not know,
//! as it does for a claim; the driver asks the hub's
//! [`Hooks`](crate::hooks::Hooks) and hands their answer back. What they
//! want done besides (a bot's line) follows the user's own line.
//!
//! In a cluster a name must also be claimed on the other nodes, which takes
//! a round trip the session cannot make: it reserves the name here, returns
//! [`Flow::Claim`], and the driver answers with [`Session::claim_answered`]
//! once the cluster has spoken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hooks::{
    Admission, CommandAnswer, CommandRequest, Effect, HookAnswer, HookRequest, JoinRequest,
    Message, Verdict as HookVerdict,
};
use crate::hub::{Hub, Membership};
use crate::moderation::{Action, Ban, BanChange, BanTarget, Done, Moderated, Order};
use crate::outbox::Outbox;
use crate::protocol::answer;
use crate::protocol::command::{self, Command, HistoryAsk, Login, Moderate};
use crate::protocol::json::{Format, NoticeCode};
use crate::protocol::names::{Name, RoomName, UserName};
use crate::protocol::rate::{TokenBucket, Verdict};
use crate::protocol::reply::{self, reason};
use crate::protocol::text::{self, clean};
use crate::protocol::{CloseReason, MAX_JOIN_ATTEMPTS};
use crate::relay::NameClaim;
use crate::standing::{Eviction, EvictionKind};

/// Bytes of gathered lines after which a burst goes to the room even if more
/// input is at hand: bounds the delay the burst adds to its first line and
/// the size of the buffer every member shares.
pub const MAX_BURST: usize = 16 * 1024;

/// Burst buffer kept between bursts: room for a few ordinary lines, so a
/// steady talker reuses it, while an idle connection holds nothing larger.
const KEEP_BURST_CAPACITY: usize = 512;

/// Whether the connection goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Keep reading; the line was dropped by the rate limit.
    RateLimited,
    /// The outbox is closing; stop reading and let the writer finish.
    Close,
    /// A name is reserved here and must be claimed across the cluster
    /// ([`Session::pending_claim`]) before the session goes on; answer with
    /// [`Session::claim_answered`] before feeding it anything else.
    Claim,
    /// `/history` in a cluster: the room's history must be read from the
    /// cluster ([`Session::pending_history`]); answer with
    /// [`Session::history_answered`] before feeding it anything else.
    History,
    /// `/oper`: the credentials ([`Session::pending_oper`]) must be
    /// checked, which is slow on purpose (a password hash); answer with
    /// [`Session::oper_answered`] before feeding it anything else.
    Oper,
    /// An operator's command for a user on another node: the order
    /// ([`Session::pending_order`]) must be carried there; answer with
    /// [`Session::order_answered`] before feeding it anything else.
    Moderate,
    /// Plugins must be asked ([`Session::pending_hook`]) before the
    /// session goes on; answer with [`Session::hook_answered`] before
    /// feeding it anything else.
    Hook,
}

/// Least time between two `/oper` tries that are checked (PROTOCOL.md,
/// Operators and moderation); a faster one is refused unchecked.
pub const OPER_INTERVAL: Duration = Duration::from_secs(2);

/// Least time between two `ERROR you are muted` to one user.
pub const MUTED_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// A `/history` request waiting for the cluster, as the session keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HistoryRequest {
    Last(usize),
    Since(String),
}

/// What the cluster answered to a `/history`.
#[derive(Debug)]
pub enum HistoryAnswer {
    /// The lines.
    Page(crate::history::Page),
    /// `--history 0`.
    Off,
    /// The cluster could not answer in time.
    Busy,
}

/// What a session needs to know of the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionSettings {
    /// Lines per second (burst twice that); 0 turns the limit off.
    pub rate: u32,
    /// The port the page is served on over HTTP, to tell a browser that
    /// reached a chat port where to go; none when HTTP is off.
    pub page_port: Option<u16>,
    /// Whether an HTTP request line before joining is a browser on the
    /// wrong port, told where to go and closed. True on byte streams; over
    /// WebSocket such a line is only a failed JOIN attempt.
    pub hint_browsers: bool,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    /// Where rooms live.
    hub: Arc<Hub>,
    /// This connection's outgoing lines.
    outbox: Arc<Outbox>,
    /// Before or after JOIN.
    state: State,
    /// The rate limit, if on.
    bucket: Option<TokenBucket>,
    /// Lines said and not yet broadcast, encoded, and how many.
    burst: Vec<u8>,
    burst_lines: usize,
    /// What the session was started with.
    settings: SessionSettings,
    /// A `/history` waiting for the cluster's answer.
    history_request: Option<HistoryRequest>,
    /// Operator status and `/oper` tries; boxed, as few connections use it.
    oper: Option<Box<Oper>>,
    /// When this user was last told it is muted.
    muted_warned: Option<Instant>,
    /// What the plugins are being asked, after [`Flow::Hook`]; boxed, as
    /// a connection spends almost all its life not asking.
    asked: Option<Box<Asked>>,
}

/// A question to the plugins, as the session keeps it until answered.
#[derive(Debug)]
enum Asked {
    /// `JOIN`, or `/join` when already in a room.
    Join { room: RoomName, user: UserName },
    /// A line or `/me`.
    Message { text: String, action: bool },
    /// A command the protocol does not know.
    Command { name: String, args: String },
}

/// A connection's dealings with `/oper`.
#[derive(Debug, Default)]
struct Oper {
    /// The operator name, once the credentials were right.
    name: Option<Box<str>>,
    /// When the last checked try was made.
    last_try: Option<Instant>,
    /// Credentials waiting to be checked, after [`Flow::Oper`].
    pending: Option<(String, String)>,
    /// An order for another node, after [`Flow::Moderate`].
    order: Option<Order>,
}

#[derive(Debug)]
enum State {
    /// Not joined yet; counts failed JOIN attempts.
    Login { failed: u32 },
    /// Waiting for the cluster to grant the name reserved in `next`.
    Claiming {
        /// The reservation in the room being joined.
        next: Membership,
        /// The room being left, for `/join`; none for a first JOIN.
        from: Option<Membership>,
        /// Failed JOIN attempts so far, for a first JOIN.
        failed: u32,
        /// What plugins asked for, once the user is in.
        effects: Vec<Effect>,
    },
    /// In a room.
    Joined(Membership),
}

impl Session {
    /// Starts a session and sends the welcome lines.
    pub fn start(
        hub: Arc<Hub>,
        outbox: Arc<Outbox>,
        settings: SessionSettings,
        now: Instant,
    ) -> Self {
        outbox.push_all(answer::welcome(outbox.format()));
        Session {
            hub,
            outbox,
            state: State::Login { failed: 0 },
            bucket: (settings.rate > 0).then(|| TokenBucket::new(settings.rate, now)),
            burst: Vec::new(),
            burst_lines: 0,
            settings,
            history_request: None,
            oper: None,
            muted_warned: None,
            asked: None,
        }
    }

    /// The most bytes one answer may take: half the outbox, so an answer
    /// can never be what makes the asker too slow. 0: no limit.
    fn answer_budget(&self) -> usize {
        self.outbox.limit() / 2
    }

    /// Whether lines said are waiting in a burst.
    pub fn has_burst(&self) -> bool {
        self.burst_lines > 0
    }

    /// Bytes of lines waiting in the burst.
    pub fn burst_len(&self) -> usize {
        self.burst.len()
    }

    /// Sends the lines gathered so far to the room. The driver calls this
    /// before it waits for input, so no line waits on the peer's next one.
    pub fn flush(&mut self) {
        if self.burst_lines == 0 {
            return;
        }
        let burst = bytes::Bytes::copy_from_slice(&self.burst);
        let lines = std::mem::take(&mut self.burst_lines);
        self.burst.clear();
        if self.burst.capacity() > KEEP_BURST_CAPACITY {
            self.burst = Vec::new();
        }
        if let State::Joined(me) = &self.state {
            me.broadcast_lines(burst, lines);
        }
    }

    /// This connection's outgoing queue.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The room and name, once joined.
    pub fn membership(&self) -> Option<&Membership> {
        match &self.state {
            State::Joined(m) => Some(m),
            State::Login { .. } | State::Claiming { .. } => None,
        }
    }

    /// The room and name waiting for a cluster-wide claim, after
    /// [`Flow::Claim`].
    pub fn pending_claim(&self) -> Option<(RoomName, UserName)> {
        match &self.state {
            State::Claiming { next, .. } => Some((next.room(), next.user())),
            _ => None,
        }
    }

    /// The cluster granted the pending name, found it taken, or could not
    /// say in time.
    pub fn claim_answered(&mut self, answer: NameClaim) -> Flow {
        self.flush();
        let state = std::mem::replace(&mut self.state, State::Login { failed: 0 });
        let State::Claiming {
            next,
            from,
            failed,
            effects,
        } = state
        else {
            self.state = state;
            return Flow::Continue;
        };
        match (answer, from) {
            (NameClaim::Granted, from) => {
                let first = from.is_none();
                drop(from);
                self.enter(next, first);
                self.hub.apply(effects);
                Flow::Continue
            }
            (NameClaim::Taken | NameClaim::Busy, Some(from)) => {
                self.state = State::Joined(from);
                let why = match answer {
                    NameClaim::Busy => reason::CLUSTER_BUSY,
                    _ => reason::NAME_TAKEN,
                };
                self.reply(self.error(why))
            }
            (NameClaim::Taken, None) => {
                self.state = State::Login { failed };
                self.failed_attempt(reason::NAME_TAKEN)
            }
            (NameClaim::Busy, None) => {
                self.state = State::Login { failed };
                self.reply(self.error(reason::CLUSTER_BUSY))
            }
        }
    }

    /// The room and request of a `/history` waiting for the cluster, after
    /// [`Flow::History`].
    pub fn pending_history(&self) -> Option<(RoomName, HistoryAsk<'_>)> {
        let room = self.membership()?.room();
        let ask = match self.history_request.as_ref()? {
            HistoryRequest::Last(n) => HistoryAsk::Last(*n),
            HistoryRequest::Since(id) => HistoryAsk::Since(id),
        };
        Some((room, ask))
    }

    /// The cluster answered the pending `/history`.
    pub fn history_answered(&mut self, answer: HistoryAnswer) -> Flow {
        self.history_request = None;
        let Some(room) = self.membership().map(Membership::room) else {
            return Flow::Continue;
        };
        match answer {
            HistoryAnswer::Page(page) => {
                self.outbox.push_all(answer::history(
                    self.format(),
                    room,
                    &page,
                    self.answer_budget(),
                ));
                Flow::Continue
            }
            HistoryAnswer::Off => self.reply(self.error(reason::HISTORY_OFF)),
            HistoryAnswer::Busy => self.reply(self.error(reason::CLUSTER_BUSY)),
        }
    }

    /// Handles one raw line (framing done, terminator removed).
    pub fn handle_line(&mut self, raw: &[u8], now: Instant) -> Flow {
        let text = clean(raw);
        if text.is_empty() {
            return Flow::Continue;
        }
        if let Some(bucket) = &mut self.bucket {
            match bucket.take(now) {
                Verdict::Allow => {}
                Verdict::DropAndWarn => {
                    self.flush();
                    self.reply(self.error(reason::RATE_LIMITED));
                    return Flow::RateLimited;
                }
                Verdict::Drop => return Flow::RateLimited,
            }
        }
        match &mut self.state {
            State::Login { .. } => self.login(&text, now),
            State::Joined(_) => self.command(&text, now),
            // The driver answers a claim before it reads on.
            State::Claiming { .. } => Flow::Continue,
        }
    }

    /// No JOIN arrived in time.
    pub fn login_timed_out(&mut self) -> Flow {
        self.flush();
        self.end_with_error(reason::LOGIN_TIMEOUT, CloseReason::LoginTimeout)
    }

    /// The peer sent a line or message over the limit.
    pub fn line_too_long(&mut self) -> Flow {
        self.flush();
        self.end_with_error(reason::LINE_TOO_LONG, CloseReason::LineTooLong)
    }

    /// The peer sent a WebSocket text message that is not UTF-8.
    pub fn bad_utf8(&mut self) -> Flow {
        self.flush();
        self.end_with_error(reason::BAD_UTF8, CloseReason::BadUtf8)
    }

    /// The peer sent a WebSocket frame that breaks RFC 6455.
    pub fn protocol_error(&mut self) -> Flow {
        self.flush();
        self.end_with_error(reason::PROTOCOL_ERROR, CloseReason::ProtocolError)
    }

    /// The server is stopping.
    pub fn shutdown(&mut self) -> Flow {
        self.flush();
        self.outbox
            .push(answer::notice(self.format(), NoticeCode::Shutdown));
        self.close(CloseReason::Shutdown)
    }

    /// The peer went away.
    pub fn peer_gone(&mut self) -> Flow {
        self.flush();
        self.close(CloseReason::PeerGone)
    }

    fn login(&mut self, text: &str, now: Instant) -> Flow {
        match command::parse_login(text) {
            Login::Join { room, user } => {
                let Some(room) = Name::parse(room) else {
                    return self.failed_attempt(reason::BAD_ROOM);
                };
                let Some(user) = Name::parse(user) else {
                    return self.failed_attempt(reason::BAD_USER);
                };
                if user.is_reserved() || self.hub.hooks().is_some_and(|h| h.is_bot(user)) {
                    return self.failed_attempt(reason::RESERVED_NAME);
                }
                if self.hub.hooks().is_some() {
                    return self.ask(Asked::Join { room, user });
                }
                self.join_now(room, user, Vec::new())
            }
            Login::Rooms => self.reply(answer::rooms(
                self.format(),
                self.hub.rooms(),
                self.answer_budget(),
            )),
            Login::Help => self.reply_all(answer::help(self.format())),
            Login::Quit => self.close(CloseReason::Quit),
            Login::Usage(syntax) => self.reply(answer::usage(self.format(), syntax)),
            Login::InRoomOnly => self.reply(self.error(reason::JOIN_FIRST)),
            Login::Oper { name, password } => self.oper(name, password, now),
            Login::Moderate(moderate) => self.moderate(moderate),
            Login::Http if !self.settings.hint_browsers => self.failed_attempt(reason::NOT_JOIN),
            Login::Http => {
                let hint = match self.settings.page_port {
                    Some(port) => format!(
                        "{}: open the page at http://HOST:{port}/ (this host, port {port})",
                        reason::NOT_HTTP
                    ),
                    None => format!("{}; connect with telnet", reason::NOT_HTTP),
                };
                self.end_with_error(&hint, CloseReason::WrongPort)
            }
            Login::NotJoin => self.failed_attempt(reason::NOT_JOIN),
        }
    }

    /// `JOIN`, its names checked and the plugins (if any) agreeing: the
    /// name is reserved and, in a cluster, claimed; then the room sees the
    /// join, and after it what the plugins asked for.
    fn join_now(&mut self, room: RoomName, user: UserName, effects: Vec<Effect>) -> Flow {
        let Ok(next) = self.hub.reserve(room, user, &self.outbox) else {
            // What plugins asked for assumed the user joins.
            drop(effects);
            return self.failed_attempt(reason::NAME_TAKEN);
        };
        if self.hub.has_relay() {
            let failed = match self.state {
                State::Login { failed } => failed,
                _ => 0,
            };
            self.state = State::Claiming {
                next,
                from: None,
                failed,
                effects,
            };
            return Flow::Claim;
        }
        self.enter(next, true);
        self.hub.apply(effects);
        Flow::Continue
    }

    fn failed_attempt(&mut self, why: &str) -> Flow {
        let State::Login { failed } = &mut self.state else {
            return Flow::Continue;
        };
        *failed += 1;
        if *failed >= MAX_JOIN_ATTEMPTS {
            return self.end_with_error(why, CloseReason::TooManyAttempts);
        }
        self.reply(self.error(why))
    }

    fn command(&mut self, text: &str, now: Instant) -> Flow {
        let State::Joined(me) = &self.state else {
            return Flow::Continue;
        };
        let user = me.user();
        let command = command::parse(text);
        if matches!(
            command,
            Command::Say(_) | Command::Me(_) | Command::Msg { .. }
        ) && self.outbox.standing().is_muted(|| self.hub.now())
        {
            return self.muted(now);
        }
        match command {
            Command::Say(text) if self.hub.hooks().is_none() => {
                self.gather(|burst| reply::put_said(burst, user, text))
            }
            Command::Me(text) if self.hub.hooks().is_none() => {
                self.gather(|burst| reply::put_me(burst, user, text))
            }
            Command::Say(text) => self.ask(Asked::Message {
                text: text.to_owned(),
                action: false,
            }),
            Command::Me(text) => self.ask(Asked::Message {
                text: text.to_owned(),
                action: true,
            }),
            Command::Unknown if self.hub.hooks().is_some() => {
                self.flush();
                let rest = text.strip_prefix('/').unwrap_or(text);
                let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                if name.is_empty() {
                    return self.reply(self.error(reason::UNKNOWN_COMMAND));
                }
                self.ask(Asked::Command {
                    name: name.to_lowercase(),
                    args: args.to_owned(),
                })
            }
            Command::Oper { name, password } => {
                self.flush();
                self.oper(name, password, now)
            }
            other => {
                self.flush();
                self.act(other)
            }
        }
    }

    /// Stops at a hook: the driver gets the request from
    /// [`Session::pending_hook`] and answers with [`Session::hook_answered`].
    fn ask(&mut self, asked: Asked) -> Flow {
        self.asked = Some(Box::new(asked));
        Flow::Hook
    }

    /// What the plugins are asked, after [`Flow::Hook`].
    pub fn pending_hook(&self) -> Option<HookRequest> {
        let asked = self.asked.as_deref()?;
        let standing = self.outbox.standing();
        let me = self.membership();
        Some(match asked {
            Asked::Join { room, user } => HookRequest::Join(JoinRequest {
                room: *room,
                user: *user,
                transport: standing.transport(),
                addr: standing.addr(),
            }),
            Asked::Message { text, action } => HookRequest::Message(Message {
                room: me?.room(),
                user: me?.user(),
                text: text.clone(),
                action: *action,
            }),
            Asked::Command { name, args } => HookRequest::Command(CommandRequest {
                room: me?.room(),
                user: me?.user(),
                name: name.clone(),
                args: args.clone(),
            }),
        })
    }

    /// The plugins will not answer (the server is stopping): the question
    /// is dropped, and what it was about with it.
    pub fn hook_dropped(&mut self) -> Flow {
        self.asked = None;
        Flow::Continue
    }

    /// The plugins answered the pending hook.
    pub fn hook_answered(&mut self, answer: HookAnswer) -> Flow {
        let Some(asked) = self.asked.take() else {
            return Flow::Continue;
        };
        match (*asked, answer) {
            (Asked::Join { room, user }, HookAnswer::Join(outcome)) => {
                match (outcome.answer, &self.state) {
                    (Admission::Refuse(why), State::Joined(_)) => {
                        self.hub.apply(outcome.effects);
                        self.reply(self.error(&why))
                    }
                    (Admission::Refuse(why), _) => {
                        self.hub.apply(outcome.effects);
                        self.failed_attempt(&why)
                    }
                    (Admission::Allow, State::Joined(_)) => self.switch_now(room, outcome.effects),
                    (Admission::Allow, _) => self.join_now(room, user, outcome.effects),
                }
            }
            (Asked::Message { text, action }, HookAnswer::Message(outcome)) => {
                let Some(me) = self.membership() else {
                    return Flow::Continue;
                };
                let user = me.user();
                let put = if action {
                    reply::put_me
                } else {
                    reply::put_said
                };
                let flow = match outcome.answer {
                    HookVerdict::Pass => self.gather(|burst| put(burst, user, &text)),
                    HookVerdict::Rewrite(new) => {
                        // A rewrite is a new line on the user's behalf: it
                        // gets the clean-up every line gets.
                        let new = clean(new.as_bytes());
                        if new.is_empty() {
                            Flow::Continue
                        } else {
                            self.gather(|burst| put(burst, user, &new))
                        }
                    }
                    HookVerdict::Drop(Some(why)) => {
                        self.flush();
                        self.reply(self.error(&why))
                    }
                    HookVerdict::Drop(None) => Flow::Continue,
                };
                self.follow_with(outcome.effects);
                flow
            }
            (Asked::Command { .. }, HookAnswer::Command(outcome)) => {
                let flow = match outcome.answer {
                    CommandAnswer::Unknown => self.reply(self.error(reason::UNKNOWN_COMMAND)),
                    CommandAnswer::Handled(lines) => {
                        let format = self.format();
                        self.reply_all(lines.iter().map(|t| answer::info(format, t)).collect())
                    }
                };
                self.follow_with(outcome.effects);
                flow
            }
            // An answer to another question: the driver broke the rules.
            _ => Flow::Continue,
        }
    }

    /// Carries out what plugins asked for, after the user's own lines.
    fn follow_with(&mut self, effects: Vec<Effect>) {
        if !effects.is_empty() {
            self.flush();
            self.hub.apply(effects);
        }
    }

    /// A muted user said something: dropped, and told so at most once a
    /// second.
    fn muted(&mut self, now: Instant) -> Flow {
        let warn = self
            .muted_warned
            .is_none_or(|at| now.saturating_duration_since(at) >= MUTED_WARNING_INTERVAL);
        if !warn {
            return Flow::Continue;
        }
        self.muted_warned = Some(now);
        self.flush();
        self.reply(self.error(reason::MUTED))
    }

    /// `/oper`: checked by the driver ([`Flow::Oper`]) unless it comes
    /// within [`OPER_INTERVAL`] of the last checked try, which gets the
    /// same answer as wrong credentials. Refused tries do not move the
    /// interval.
    fn oper(&mut self, name: &str, password: &str, now: Instant) -> Flow {
        let oper = self.oper.get_or_insert_default();
        if oper
            .last_try
            .is_some_and(|at| now.saturating_duration_since(at) < OPER_INTERVAL)
        {
            self.hub.moderation().tally.count(Moderated::OperRefused);
            return self.reply(self.error(reason::BAD_CREDENTIALS));
        }
        oper.last_try = Some(now);
        oper.pending = Some((name.to_owned(), password.to_owned()));
        Flow::Oper
    }

    /// The name and password of a `/oper` waiting to be checked, after
    /// [`Flow::Oper`].
    pub fn pending_oper(&self) -> Option<(&str, &str)> {
        let (name, password) = self.oper.as_ref()?.pending.as_ref()?;
        Some((name, password))
    }

    /// The credentials of the pending `/oper` were right, or not.
    pub fn oper_answered(&mut self, right: bool) -> Flow {
        let Some(oper) = self.oper.as_mut() else {
            return Flow::Continue;
        };
        let Some((name, _)) = oper.pending.take() else {
            return Flow::Continue;
        };
        if !right {
            self.hub.moderation().tally.count(Moderated::OperRefused);
            return self.reply(self.error(reason::BAD_CREDENTIALS));
        }
        self.hub.moderation().tally.count(Moderated::OperGranted);
        tracing::info!(operator = %name, peer = ?self.outbox.standing().addr(), "operator");
        oper.name = Some(name.into_boxed_str());
        self.outbox.standing().make_operator();
        self.reply(answer::info(self.format(), "you are now an operator"))
    }

    /// `<op>` as PROTOCOL.md writes it: the operator's user name in its
    /// room, or its `/oper` name when it is in none; `None` for someone
    /// who is not an operator.
    fn operator_name(&self) -> Option<String> {
        let name = self.oper.as_ref()?.name.as_ref()?;
        Some(match self.membership() {
            Some(me) => me.user().as_str().to_owned(),
            None => name.to_string(),
        })
    }

    /// An operator's command.
    fn moderate(&mut self, moderate: Moderate<'_>) -> Flow {
        let Some(op) = self.operator_name() else {
            return self.reply(self.error(reason::NOT_OPERATOR));
        };
        let me = match &self.state {
            State::Joined(me) => Some(me),
            _ => None,
        };
        if moderate.needs_room() && me.is_none() {
            return self.reply(self.error(reason::JOIN_FIRST));
        }
        let now = self.hub.now();
        let member = |name: &str| me.and_then(|me| me.member(name));
        // A user of the room who is on another node: the order goes there.
        let elsewhere = |name: &str, action, reason: &str, until| {
            let me = me?;
            me.remote_member(name)?;
            Some(Order {
                action,
                room: me.room().as_str().to_owned(),
                user: name.to_owned(),
                by: op.clone(),
                reason: text::reason(reason),
                until,
            })
        };
        let minutes_from_now =
            |m: Option<u64>| m.map(|m| now.saturating_add(m.saturating_mul(60_000)));
        let order = match moderate {
            Moderate::Kick { user, reason } if member(user).is_none() => {
                elsewhere(user, Action::Kick, reason, None)
            }
            Moderate::Ban {
                target,
                minutes,
                reason,
            } if BanTarget::parse(target).is_none() && member(target).is_none() => {
                elsewhere(target, Action::Ban, reason, minutes_from_now(minutes))
            }
            Moderate::Mute { user, minutes } if member(user).is_none() => {
                elsewhere(user, Action::Mute, "", minutes_from_now(minutes))
            }
            Moderate::Unmute(user) if member(user).is_none() => {
                elsewhere(user, Action::Unmute, "", None)
            }
            _ => None,
        };
        if let Some(order) = order {
            self.oper.get_or_insert_default().order = Some(order);
            return Flow::Moderate;
        }
        match moderate {
            Moderate::Usage(syntax) => self.reply(answer::usage(self.format(), syntax)),
            Moderate::Kick { user, reason } => {
                let Some((_, outbox)) = member(user) else {
                    return self.reply(self.error(reason::NO_SUCH_USER));
                };
                let reason = text::reason(reason);
                tracing::info!(by = %op, user, reason, "kick");
                let kicked = outbox.evict(Eviction {
                    kind: EvictionKind::Kick,
                    by: op,
                    reason,
                });
                if kicked {
                    self.hub.moderation().tally.count(Moderated::Kick);
                }
                Flow::Continue
            }
            Moderate::Ban {
                target,
                minutes,
                reason,
            } => {
                let ban = Ban::new(now, minutes, &op, &text::reason(reason));
                let (banned, named) = match BanTarget::parse(target) {
                    Some(banned) => (banned, None),
                    None => {
                        let Some((_, outbox)) = member(target) else {
                            return self.reply(self.error(reason::NO_SUCH_USER));
                        };
                        let Some(addr) = outbox.standing().addr() else {
                            return self.reply(self.error(reason::NO_SUCH_USER));
                        };
                        (BanTarget::of_peer(addr), Some(outbox))
                    }
                };
                let until = reply::ban_end(ban.until);
                if !self
                    .hub
                    .moderation()
                    .change(BanChange::Added(banned, ban.clone()))
                {
                    return self.reply(self.error(reason::TOO_MANY_BANS));
                }
                // The user named is removed even if an operator: naming
                // one is a decision, unlike sharing an address with one.
                if let Some(outbox) = named {
                    outbox.evict(Eviction {
                        kind: EvictionKind::Ban,
                        by: ban.by.clone(),
                        reason: ban.reason.clone(),
                    });
                }
                self.reply(answer::info(
                    self.format(),
                    &format!("banned {banned} {until}"),
                ))
            }
            Moderate::Unban(target) => {
                let moderation = self.hub.moderation();
                match BanTarget::parse(target) {
                    Some(target) if moderation.bans().holds(&target, now) => {
                        let _ = moderation.change(BanChange::Lifted(target));
                        self.reply(answer::info(self.format(), &format!("unbanned {target}")))
                    }
                    _ => self.reply(self.error(reason::NO_SUCH_BAN)),
                }
            }
            Moderate::Bans => {
                let bans: Vec<(String, String)> = self
                    .hub
                    .moderation()
                    .bans()
                    .list(now)
                    .into_iter()
                    .map(|(target, ban)| (target.to_string(), reply::ban_end(ban.until)))
                    .collect();
                self.reply(answer::info(
                    self.format(),
                    &reply::bans_listed(&bans, self.answer_budget()),
                ))
            }
            Moderate::Mute { user, minutes } => {
                let Some((name, outbox)) = member(user) else {
                    return self.reply(self.error(reason::NO_SUCH_USER));
                };
                let until = minutes.map(|m| now.saturating_add(m.saturating_mul(60_000)));
                outbox.standing().mute(until);
                self.hub.moderation().tally.count(Moderated::Mute);
                tracing::info!(by = %op, user = %name, until = ?until, "mute");
                self.reply(answer::info(self.format(), &format!("muted {name}")))
            }
            Moderate::Unmute(user) => {
                let Some((name, outbox)) = member(user) else {
                    return self.reply(self.error(reason::NO_SUCH_USER));
                };
                outbox.standing().unmute();
                tracing::info!(by = %op, user = %name, "unmute");
                self.reply(answer::info(self.format(), &format!("unmuted {name}")))
            }
        }
    }

    /// An operator's order for a user on another node, waiting to be
    /// carried there, after [`Flow::Moderate`].
    pub fn pending_order(&self) -> Option<&Order> {
        self.oper.as_ref()?.order.as_ref()
    }

    /// The node holding the user carried out the pending order (`None`: no
    /// node had the user by then).
    pub fn order_answered(&mut self, done: Option<Done>) -> Flow {
        let Some(order) = self.oper.as_mut().and_then(|o| o.order.take()) else {
            return Flow::Continue;
        };
        let Some(done) = done else {
            return self.reply(self.error(reason::NO_SUCH_USER));
        };
        let text = match (order.action, done.banned) {
            // The room's notice is the answer.
            (Action::Kick, _) => return Flow::Continue,
            (Action::Mute, _) => format!("muted {}", done.user),
            (Action::Unmute, _) => format!("unmuted {}", done.user),
            (Action::Ban, Some(target)) => {
                format!("banned {target} {}", reply::ban_end(order.until))
            }
            (Action::Ban, None) => return self.reply(self.error(reason::NO_SUCH_USER)),
        };
        self.reply(answer::info(self.format(), &text))
    }

    /// An operator removed this connection (see [`Outbox::evict`]): the
    /// room is told, then the user, then the connection closes and the
    /// room sees the user leave.
    pub fn evicted(&mut self, eviction: &Eviction) -> Flow {
        self.flush();
        if eviction.kind == EvictionKind::Restart {
            self.outbox
                .push(answer::notice(self.format(), NoticeCode::Restarting));
            return self.close(CloseReason::Shutdown);
        }
        if let State::Joined(me) = &self.state {
            me.announce_removal(eviction);
        }
        self.end_with_error(&eviction.error_text(), CloseReason::Removed)
    }

    /// Adds a line said to the burst.
    fn gather(&mut self, put: impl FnOnce(&mut Vec<u8>)) -> Flow {
        put(&mut self.burst);
        self.burst_lines += 1;
        if self.burst.len() >= MAX_BURST {
            self.flush();
        }
        Flow::Continue
    }

    /// Carries out a command other than saying something.
    fn act(&mut self, command: Command<'_>) -> Flow {
        let State::Joined(me) = &self.state else {
            return Flow::Continue;
        };
        match command {
            Command::Say(_) | Command::Me(_) => Flow::Continue,
            Command::Msg { to, text } => {
                if me.send_private(to, text).is_err() {
                    return self.reply(self.error(reason::NO_SUCH_USER));
                }
                Flow::Continue
            }
            Command::Join(room) => self.switch_room(room),
            Command::Who => self.reply(answer::who(
                self.format(),
                me.room(),
                me.who(),
                self.answer_budget(),
            )),
            Command::Rooms => self.reply(answer::rooms(
                self.format(),
                self.hub.rooms(),
                self.answer_budget(),
            )),
            Command::Help => self.reply_all(answer::help(self.format())),
            Command::History(ask) => self.history(ask),
            Command::Moderate(moderate) => self.moderate(moderate),
            // Handled before this, with the time it needs.
            Command::Oper { .. } => Flow::Continue,
            Command::Quit => self.close(CloseReason::Quit),
            Command::Usage(syntax) => self.reply(answer::usage(self.format(), syntax)),
            Command::Unknown => self.reply(self.error(reason::UNKNOWN_COMMAND)),
        }
    }

    /// `/history`: the room's kept lines the request covers, newest kept
    /// when they do not all fit the answer budget (the header then says
    /// some are missing).
    fn history(&mut self, ask: HistoryAsk<'_>) -> Flow {
        let State::Joined(me) = &self.state else {
            return Flow::Continue;
        };
        if self.hub.has_relay() {
            self.history_request = Some(match ask {
                HistoryAsk::Last(n) => HistoryRequest::Last(n),
                HistoryAsk::Since(id) => HistoryRequest::Since(id.to_owned()),
            });
            return Flow::History;
        }
        let (history, log) = me.history();
        if !history.is_on() {
            return self.reply(self.error(reason::HISTORY_OFF));
        }
        let page = history.read(log, ask);
        self.outbox.push_all(answer::history(
            self.format(),
            me.room(),
            &page,
            self.answer_budget(),
        ));
        Flow::Continue
    }

    /// `/join`: the new place is reserved first, so a failure changes
    /// nothing; then the old room sees the user leave and the new one sees
    /// the user join, and no line of the old room can arrive after the new
    /// room's `has joined`.
    fn switch_room(&mut self, room: &str) -> Flow {
        let State::Joined(me) = &self.state else {
            return Flow::Continue;
        };
        let Some(room) = Name::parse(room) else {
            return self.reply(self.error(reason::BAD_ROOM));
        };
        if room == me.room() {
            return self.reply(self.error(reason::SAME_ROOM));
        }
        if self.hub.hooks().is_some() {
            let user = me.user();
            return self.ask(Asked::Join { room, user });
        }
        self.switch_now(room, Vec::new())
    }

    /// `/join` to a room the plugins (if any) let the user into; then what
    /// they asked for, once the room has seen the user join (or at once in
    /// a cluster, where the join waits for its claim).
    fn switch_now(&mut self, room: RoomName, effects: Vec<Effect>) -> Flow {
        let State::Joined(me) = &self.state else {
            return Flow::Continue;
        };
        let Ok(next) = self.hub.reserve(room, me.user(), &self.outbox) else {
            return self.reply(self.error(reason::NAME_TAKEN));
        };
        let old = std::mem::replace(&mut self.state, State::Login { failed: 0 });
        if self.hub.has_relay() {
            if let State::Joined(from) = old {
                self.state = State::Claiming {
                    next,
                    from: Some(from),
                    failed: 0,
                    effects,
                };
                return Flow::Claim;
            }
        }
        drop(old);
        self.enter(next, false);
        self.hub.apply(effects);
        Flow::Continue
    }

    /// Joins the reserved room: the room, the user included, sees the user
    /// join.
    fn enter(&mut self, mut next: Membership, first: bool) {
        next.join(first);
        self.state = State::Joined(next);
    }

    /// Lines or JSON events: what this connection gets.
    fn format(&self) -> Format {
        self.outbox.format()
    }

    /// `ERROR <why>`, in this connection's form.
    fn error(&self, why: &str) -> bytes::Bytes {
        answer::error(self.format(), why)
    }

    fn reply(&self, line: bytes::Bytes) -> Flow {
        self.outbox.push(line);
        Flow::Continue
    }

    /// Sends a multi-line answer, as many of its lines as fit in the
    /// answer budget: an answer never overflows the asker's queue.
    fn reply_all(&self, lines: Vec<bytes::Bytes>) -> Flow {
        let budget = match self.answer_budget() {
            0 => usize::MAX,
            n => n,
        };
        let mut used = 0;
        let fitting = lines.into_iter().take_while(|line| {
            used += line.len();
            used <= budget
        });
        self.outbox.push_all(fitting);
        Flow::Continue
    }

    fn end_with_error(&mut self, why: &str, reason: CloseReason) -> Flow {
        self.outbox.push(self.error(why));
        self.close(reason)
    }

    /// Closes the outbox and leaves the room at once, so the room sees
    /// `has left` before anything else this connection would have said.
    fn close(&mut self, reason: CloseReason) -> Flow {
        self.outbox.close(reason);
        self.state = State::Login { failed: 0 };
        Flow::Close
    }
}

impl Drop for Session {
    /// However the connection ends, the writer learns that nothing more is
    /// coming; the membership, dropped with the state, leaves the room.
    fn drop(&mut self) {
        self.flush();
        self.outbox.close(CloseReason::PeerGone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Next;
    use std::task::{Context, Poll, Waker};

    fn lines(outbox: &Outbox) -> Vec<String> {
        let mut batch = Vec::new();
        let cx = &mut Context::from_waker(Waker::noop());
        if let Poll::Ready(Next::Write(_)) = outbox.poll_next(cx, &mut batch) {
            outbox.written(batch.iter().map(bytes::Bytes::len).sum());
        }
        batch
            .iter()
            .flat_map(|chunk| reply::texts_of(chunk))
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    fn session(hub: &Arc<Hub>, rate: u32) -> (Session, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(0));
        let s = Session::start(
            hub.clone(),
            outbox.clone(),
            SessionSettings {
                rate,
                ..SessionSettings::default()
            },
            Instant::now(),
        );
        (s, outbox)
    }

    #[test]
    fn welcome_then_join() {
        let hub = Hub::new();
        let (mut s, out) = session(&hub, 0);
        let now = Instant::now();
        assert_eq!(s.handle_line(b"JOIN lobby bob", now), Flow::Continue);
        assert_eq!(
            lines(&out),
            [
                "Welcome! Use the command:",
                "JOIN <ROOMNAME> <USERNAME>",
                "bob has joined"
            ]
        );
    }

    #[test]
    fn fifth_failed_attempt_closes() {
        let hub = Hub::new();
        let (mut s, out) = session(&hub, 0);
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(s.handle_line(b"hello", now), Flow::Continue);
        }
        assert_eq!(s.handle_line(b"/rooms", now), Flow::Continue);
        assert_eq!(s.handle_line(b"  \t", now), Flow::Continue);
        assert_eq!(s.handle_line(b"JOIN bad/room bob", now), Flow::Close);
        let got = lines(&out);
        assert_eq!(got.iter().filter(|l| l.starts_with("ERROR ")).count(), 5);
    }

    #[test]
    fn rate_limit_drops_and_warns_once() {
        let hub = Hub::new();
        let (mut s, out) = session(&hub, 1);
        let now = Instant::now();
        s.handle_line(b"JOIN r a", now);
        s.handle_line(b"one", now);
        s.handle_line(b"two", now);
        s.handle_line(b"three", now);
        let got = lines(&out);
        assert_eq!(&got[2..], ["a has joined", "a: one", "ERROR rate limited"]);
    }

    #[test]
    fn switching_rooms() {
        let hub = Hub::new();
        let (mut a, a_out) = session(&hub, 0);
        let (mut b, b_out) = session(&hub, 0);
        let now = Instant::now();
        a.handle_line(b"JOIN one alice", now);
        b.handle_line(b"JOIN one bob", now);
        a.handle_line(b"/join one", now);
        a.handle_line(b"/join two", now);
        assert_eq!(lines(&b_out)[2..], ["bob has joined", "alice has left"]);
        assert_eq!(
            lines(&a_out)[2..],
            [
                "alice has joined",
                "bob has joined",
                "ERROR already in that room",
                "alice has joined"
            ]
        );
        assert_eq!(a.membership().unwrap().room().as_str(), "two");
    }

    #[test]
    fn lines_said_wait_for_flush_and_go_out_as_one_burst_before_anything_else() {
        let hub = Hub::new();
        let (mut a, a_out) = session(&hub, 0);
        let (mut b, b_out) = session(&hub, 0);
        let now = Instant::now();
        a.handle_line(b"JOIN den alice", now);
        b.handle_line(b"JOIN den bob", now);
        lines(&a_out);
        lines(&b_out);

        a.handle_line(b"one", now);
        a.handle_line(b"/me two", now);
        assert!(a.has_burst());
        assert!(lines(&b_out).is_empty(), "nothing before the flush");
        a.flush();
        assert!(!a.has_burst());
        let mut batch = Vec::new();
        let cx = &mut Context::from_waker(Waker::noop());
        assert_eq!(
            b_out.poll_next(cx, &mut batch),
            Poll::Ready(Next::Write(2)),
            "two lines in one shared buffer"
        );
        assert_eq!(batch.len(), 1);
        b_out.written(batch[0].len());

        // A command flushes what was said before it.
        a.handle_line(b"three", now);
        a.handle_line(b"/msg bob psst", now);
        a.handle_line(b"/who", now);
        assert_eq!(lines(&b_out), ["alice: three", "alice (private): psst"]);
        assert_eq!(
            lines(&a_out),
            [
                "alice: one",
                "* alice two",
                "alice: three",
                "alice (private): psst",
                "*** users in den: alice, bob"
            ]
        );

        // Leaving flushes too: nothing said is lost.
        a.handle_line(b"last words", now);
        drop(a);
        assert_eq!(lines(&b_out), ["alice: last words", "alice has left"]);
    }

    #[test]
    fn a_cluster_decides_who_gets_a_name() {
        let relay = Arc::new(crate::relay::testing::Recorder::default());
        let hub = Hub::with_relay(relay.clone());
        let (mut s, out) = session(&hub, 0);
        let now = Instant::now();
        assert_eq!(s.handle_line(b"JOIN r sam", now), Flow::Claim);
        let (room, user) = s.pending_claim().unwrap();
        assert_eq!((room.as_str(), user.as_str()), ("r", "sam"));
        assert_eq!(s.claim_answered(NameClaim::Taken), Flow::Continue);
        assert!(s.membership().is_none());
        // A busy cluster is no failed attempt: five of them do not close.
        for _ in 0..MAX_JOIN_ATTEMPTS {
            assert_eq!(s.handle_line(b"JOIN r sam", now), Flow::Claim);
            assert_eq!(s.claim_answered(NameClaim::Busy), Flow::Continue);
        }
        assert_eq!(s.handle_line(b"JOIN r sam", now), Flow::Claim);
        assert_eq!(s.claim_answered(NameClaim::Granted), Flow::Continue);
        relay.echo(&hub);
        let busy = vec!["ERROR cluster busy, try again"; MAX_JOIN_ATTEMPTS as usize];
        let mut expected = vec!["ERROR name taken"];
        expected.extend(busy);
        expected.push("sam has joined");
        assert_eq!(lines(&out)[2..], expected);

        for answer in [NameClaim::Taken, NameClaim::Busy] {
            assert_eq!(s.handle_line(b"/join other", now), Flow::Claim);
            s.claim_answered(answer);
            assert_eq!(s.membership().unwrap().room().as_str(), "r");
        }
        assert_eq!(s.handle_line(b"/join other", now), Flow::Claim);
        s.claim_answered(NameClaim::Granted);
        relay.echo(&hub);
        assert_eq!(
            lines(&out),
            [
                "ERROR name taken",
                "ERROR cluster busy, try again",
                "sam has joined"
            ]
        );
        assert_eq!(s.membership().unwrap().room().as_str(), "other");
    }
}
