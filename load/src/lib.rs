//! chatgate-load: a load generator for chatgate, with nats-server as the
//! reference.
//!
//! # The picture
//!
//! ```text
//! scenario -> crowd (rooms of connections, set up at a bounded pace)
//!          -> conn (tcp | tls | ws | wss | nats) -> inbox -> tally (loss, order, latency)
//!          -> sender (stamped messages, paced by the room's in-flight window)
//! probe (/proc of server and generator) -> report (text, JSON) -> suite (BENCHMARKS.md, SVG)
//! ```
//!
//! Every message carries `<sender>:<seq>:<send-nanos>:<padding>`, so each
//! receiver measures end-to-end latency and detects loss and reordering per
//! sender, on any transport. The receive path reads in large batches into a
//! per-thread scratch buffer and parses lines and frames in place: nothing is
//! allocated per received message on byte streams, and an idle connection
//! holds no buffer at all.
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | chat lines and NATS frames: parsing and encoding, no IO |
//! | [`stamp`] | the payload format |
//! | [`seq`], [`tally`] | loss and reordering per sender; one receiver's counters |
//! | [`latency`] | latency histograms: cheap recording, merged at the end |
//! | [`net`] | dialing, TLS, WebSocket, batched reads |
//! | [`client`] | one connection: join or subscribe, receive, names, encoding |
//! | [`flow`] | the in-flight window that defines "max rate" |
//! | [`sender`] | paced, batched sending |
//! | [`setup`] | bounded connection pace |
//! | [`scenario`] | fan-out, latency, idle, slow reader, churn |
//! | [`probe`], [`procstat`] | server and generator CPU and memory |
//! | [`report`] | the figures of one run |
//! | [`launch`] | starting and stopping chatgate and nats-server |
//! | [`suite`] | every scenario, three times, into BENCHMARKS.md |
//! | [`cli`], [`app`] | the command line and running one subcommand |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod client;
pub mod clock;
pub mod error;
pub mod flow;
pub mod latency;
pub mod launch;
pub mod net;
pub mod probe;
pub mod procstat;
pub mod protocol;
pub mod report;
pub mod scenario;
pub mod sender;
pub mod seq;
pub mod setup;
pub mod stamp;
pub mod suite;
pub mod tally;
pub mod target;

pub use error::LoadError;
pub use report::Report;
pub use target::{Scheme, Target};
