//! Sockets: dialing with spread source addresses, TLS without verification,
//! WebSocket, and batched reads into a shared scratch buffer.
//!
//! | module | owns |
//! |---|---|
//! | [`dial`] | TCP connect, source address choice, socket options |
//! | [`tls`] | the rustls client that accepts any certificate |
//! | [`side`] | a connection's read and write halves for every transport |
//! | [`read`] | batched reads that keep only a partial unit per connection |
//! | [`ws`] | the WebSocket upgrade, then frames decoded in batches like reads |

pub mod dial;
pub mod read;
pub mod side;
pub mod tls;
pub mod ws;
