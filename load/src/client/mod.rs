//! One simulated user: a connection that joins (or subscribes), receives,
//! and may send.
//!
//! | module | owns |
//! |---|---|
//! | [`conn`] | connect, join or subscribe, the receive loop |
//! | [`inbox`] | what a connection does with each line or frame it gets |
//! | [`encode`] | how a stamped message is written for each protocol |
//! | [`names`] | room, user and subject names used on the wire |

pub mod conn;
pub mod encode;
pub mod inbox;
pub mod names;
