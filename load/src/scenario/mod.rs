//! The scenarios: each sets up connections, measures, and returns a
//! [`Report`](crate::report::Report).
//!
//! | module | owns |
//! |---|---|
//! | [`crowd`] | setting up rooms of receivers and senders, and collecting their counts |
//! | [`sampler`] | figures over time during a run |
//! | [`fanout`] | fan-out at max or given rate; the `latency` scenario is fan-out at a fixed low rate |
//! | [`idle`] | joined connections held open: server memory per connection, connect rate |
//! | [`slow_reader`] | one member that never reads, against the same run without it |
//! | [`churn`] | connect, join, chat, leave, in a loop |

pub mod churn;
pub mod crowd;
pub mod fanout;
pub mod idle;
pub mod sampler;
pub mod slow_reader;
