//! The hook through which plugins see and shape what users do.
//!
//! A [`Session`](crate::session::Session) asks its hub's [`Hooks`], if any,
//! at four points: before a user joins a room, before a line or `/me` is
//! gathered for the room, when a command is not one of the protocol's, and
//! when a user leaves. The server implements the trait with WebAssembly
//! plugins (`plugins`, feature `server`); the core knows only this trait, so
//! it stays free of any runtime and still builds for wasm32.
//!
//! A hook answers with a future: running a plugin is work the sans-IO
//! session cannot do itself. Like a name claim in a cluster, the session
//! stops at the hook ([`Flow::Hook`](crate::session::Flow::Hook)), its
//! driver awaits the answer in the user's own task, with no room lock held,
//! and hands it back ([`Session::hook_answered`]); so a plugin that takes
//! its time (within its budget) stalls its caller and nobody else. What a
//! hook wants done beyond its answer (a bot's line, a notice) comes back as
//! [`Effect`]s, which the session carries out through the hub after its own
//! line: a bot answering a line is seen after that line.
//!
//! [`Session::hook_answered`]: crate::session::Session::hook_answered

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use crate::protocol::names::{RoomName, UserName};

/// A user about to join a room.
#[derive(Debug, Clone, Copy)]
pub struct JoinRequest {
    /// The room, as written.
    pub room: RoomName,
    /// The user name, as written.
    pub user: UserName,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// The peer's address; none for connections that have none (tests).
    pub addr: Option<IpAddr>,
}

/// A join rule's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Let the user in.
    Allow,
    /// Keep the user out, with the reason it sees as `ERROR <reason>`.
    Refuse(String),
}

/// A line a user says in a room.
#[derive(Debug, Clone)]
pub struct Message {
    /// The room.
    pub room: RoomName,
    /// The sender.
    pub user: UserName,
    /// The text, cleaned up.
    pub text: String,
    /// `/me`.
    pub action: bool,
}

/// A filter's answer to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The line goes on unchanged.
    Pass,
    /// The line goes nowhere; with a reason, the sender gets `ERROR
    /// <reason>`.
    Drop(Option<String>),
    /// The line goes on with this text, cleaned up again by the session
    /// (nothing left: dropped silently).
    Rewrite(String),
}

/// A command the protocol does not know.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    /// The sender's room.
    pub room: RoomName,
    /// The sender.
    pub user: UserName,
    /// The name without its slash, lower case: `roll`.
    pub name: String,
    /// What follows the name and its blank; may be empty.
    pub args: String,
}

/// What a session stopped at [`Flow::Hook`](crate::session::Flow::Hook)
/// asks.
#[derive(Debug, Clone)]
pub enum HookRequest {
    /// May the user join?
    Join(JoinRequest),
    /// What becomes of this line?
    Message(Message),
    /// Who answers this command?
    Command(CommandRequest),
}

/// The answer to a [`HookRequest`] of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAnswer {
    /// To [`HookRequest::Join`].
    Join(Outcome<Admission>),
    /// To [`HookRequest::Message`].
    Message(Outcome<Verdict>),
    /// To [`HookRequest::Command`].
    Command(Outcome<CommandAnswer>),
}

/// A hook's answer to come.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the plugins made of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandAnswer {
    /// No plugin knows it: `ERROR unknown command`.
    Unknown,
    /// Handled; each text goes to the sender as `*** <text>`.
    Handled(Vec<String>),
}

/// Something a hook wants done besides its answer, already checked by the
/// hook's implementation (the bot is the plugin's, texts are cleaned up and
/// within the line limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `<bot>: <text>` in `room`, for every member on every node.
    Say {
        /// The room.
        room: RoomName,
        /// One of the plugin's bots.
        bot: UserName,
        /// The text.
        text: String,
    },
    /// `*** <text>` to `user` in `room`, on this node.
    Notice {
        /// The room.
        room: RoomName,
        /// The member.
        user: UserName,
        /// The text.
        text: String,
    },
}

/// A hook's answer and what it wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// The decision.
    pub answer: T,
    /// Bots' lines and notices, in the order made.
    pub effects: Vec<Effect>,
}

impl<T> Outcome<T> {
    /// A decision with nothing else to do.
    pub fn just(answer: T) -> Self {
        Outcome {
            answer,
            effects: Vec::new(),
        }
    }
}

/// Plugins, as the session sees them.
pub trait Hooks: Send + Sync + fmt::Debug {
    /// Whether `user` (or a look-alike) is one of the plugins' bots: no
    /// user may join with that name.
    fn is_bot(&self, user: UserName) -> bool;

    /// Whether a user may join a room; the first refusal wins.
    fn join(&self, request: JoinRequest) -> Pending<'_, Outcome<Admission>>;

    /// What becomes of a line; the first drop wins, rewrites chain.
    fn message(&self, message: Message) -> Pending<'_, Outcome<Verdict>>;

    /// Who answers a command the protocol does not know; the first plugin
    /// that handles it wins.
    fn command(&self, request: CommandRequest) -> Pending<'_, Outcome<CommandAnswer>>;

    /// A user left a room. Nothing waits for it: the implementation runs
    /// the plugins, and carries out what they ask, on its own time.
    fn left(&self, room: RoomName, user: UserName);

    /// Answers `request`.
    fn answer(&self, request: HookRequest) -> Pending<'_, HookAnswer> {
        match request {
            HookRequest::Join(r) => {
                let pending = self.join(r);
                Box::pin(async move { HookAnswer::Join(pending.await) })
            }
            HookRequest::Message(m) => {
                let pending = self.message(m);
                Box::pin(async move { HookAnswer::Message(pending.await) })
            }
            HookRequest::Command(c) => {
                let pending = self.command(c);
                Box::pin(async move { HookAnswer::Command(pending.await) })
            }
        }
    }
}
