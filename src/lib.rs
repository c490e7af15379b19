//! chatgate: a small chat gateway where telnet, TLS and WebSocket users meet
//! in the same rooms.
//!
//! # The data path
//!
//! ```text
//! listener -> Transport (tcp | tls | ws) -> Session (sans-IO) -> Hub -> room -> peers' Outboxes -> writers
//! ```
//!
//! A listener accepts a connection and wraps it in a [`Transport`], which
//! turns bytes into lines and lines into bytes. A [`Session`] reads those
//! lines and decides what they mean; it owns no socket. Rooms live in the
//! [`Hub`]: a room broadcast encodes its line (or a burst of lines one
//! sender said back to back) once and pushes the same buffer into every
//! member's [`Outbox`], a byte-bounded queue that the connection's writer
//! drains a whole batch at a time, in writes of up to 64 KiB. A member that
//! asked for JSON events gets the same line as one JSON object, encoded
//! once per broadcast for all such members, and the room keeps its message
//! lines in its [`RoomLog`] for `/history`.
//!
//! With WebAssembly plugins loaded, the session stops before a join, a
//! line or an unknown command and its driver asks the hub's [`Hooks`]
//! (`plugins` implements them) in the user's own task; what they decide
//! (refuse, drop, rewrite, answer) is done before anything reaches a room,
//! once per line.
//!
//! [`RoomLog`]: crate::history::RoomLog
//! [`Hooks`]: crate::hooks::Hooks
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | framing, clean-up, names, commands, reply lines and JSON events, rate limit; pure |
//! | [`session`] | one user's state machine: welcome, JOIN attempts, commands |
//! | [`hub`] | rooms and membership; the only shared state |
//! | [`history`] | what each room remembers for `/history`, bounded in lines, time and bytes |
//! | [`outbox`] | a connection's bounded outgoing queue |
//! | [`moderation`] | bans and the live connections they reach |
//! | [`standing`] | one connection's address, operator status, mute, eviction |
//! | [`relay`] | the hook through which a cluster carries the hub's room lines |
//! | [`hooks`] | the hook through which plugins admit joins, filter lines and answer commands |
//! | `cluster` | nodes joined through NATS: room subjects, presence, the link (feature `server`) |
//! | `config` | every setting, its default and reason, once: flags, environment, the `--config` file, and the TOML written back (feature `server`) |
//! | `server` | listeners, accept loops, shutdown (feature `server`) |
//! | `context` | what the server's tasks share: one connection's context, and the listeners' around it (feature `server`) |
//! | `connection` | drives one transport through a session (feature `server`) |
//! | `pacing` | how long a busy server lets writes gather (feature `server`) |
//! | `transport` | the `Transport` trait and one module per transport (feature `server`) |
//! | `limits` | connection caps per server and per address (feature `server`) |
//! | `state` | what one node keeps across restarts: the bans file (feature `server`) |
//! | `tls` | the certificate: loading, first-run generation, reload (feature `server`) |
//! | `admin` | the admin API: rooms, kicks, bans, notices, drain, behind a bearer token (feature `server`) |
//! | `http`, `web` | the HTTP side: `/ws` upgrade, health, metrics, the page (feature `server`) |
//! | `operators` | who may become an operator: argon2 hashes and the `/oper` check (feature `server`) |
//! | `origin` | which page origins may open a WebSocket (feature `server`) |
//! | `metrics` | what `/metrics` reports (feature `server`) |
//! | `plugins` | WebAssembly plugins behind the hooks: loading, sandbox, limits, ticks (feature `server`) |
//!
//! # Guarantees
//!
//! - All members of a room see its lines in one order: a broadcast runs
//!   under that room's lock, and only that room's. In a cluster, each line
//!   (or burst of lines) is published once to NATS and every node delivers
//!   what comes back, so nodes on one nats-server share one order; a node's
//!   lines go through one queue in the order said, kept local in their turn
//!   while the link is down, and its senders are not read while NATS cannot
//!   keep up.
//! - Memory is bounded whatever a client does: lines are capped at
//!   [`protocol::MAX_LINE`] bytes and each outbox at `--max-queue-bytes`; a
//!   reader that falls behind is disconnected, not buffered for.
//! - No lock is held across an await or a write.
//!
//! # Embedding
//!
//! With the default `server` feature, a server runs in a few lines:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use clap::Parser;
//! let config = chatgate::Config::parse_from(["chatgate", "--tcp", "127.0.0.1:0"]);
//! let server = chatgate::Server::bind(config).await?;
//! println!("tcp on {:?}", server.local_addrs());
//! server.run(tokio::signal::ctrl_c()).await;
//! # Ok(()) }
//! ```
//!
//! Without it (`--no-default-features`) the crate is the protocol core and
//! the hub, which build for `wasm32-unknown-unknown`.
//!
//! [`Transport`]: crate::transport::Transport
//! [`Session`]: crate::session::Session
//! [`Hub`]: crate::hub::Hub
//! [`Outbox`]: crate::outbox::Outbox

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod history;
pub mod hooks;
pub mod hub;
pub mod moderation;
pub mod outbox;
pub mod protocol;
pub mod relay;
pub mod session;
pub mod standing;

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod connection;
#[cfg(feature = "server")]
mod context;
#[cfg(feature = "server")]
mod http;
#[cfg(feature = "server")]
pub mod limits;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod operators;
#[cfg(feature = "server")]
pub mod origin;
#[cfg(feature = "server")]
pub mod pacing;
#[cfg(feature = "server")]
pub mod plugins;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub mod transport;
#[cfg(feature = "server")]
mod web;

#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
pub use server::Server;
