//! What the generator reads and writes on the wire, without any IO.
//!
//! | module | owns |
//! |---|---|
//! | [`chat`] | splitting chatgate's byte stream into lines and telling lines apart |
//! | [`nats`] | NATS server frames (`MSG`, `PING`, ...) and client commands |
//!
//! Parsers borrow from the caller's buffer and never allocate, so a receiver
//! handles a batch of thousands of lines without touching the allocator.

pub mod chat;
pub mod nats;
