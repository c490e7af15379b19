//! Making room consumers, on a task of their own.
//!
//! Reading a room takes an ordered consumer of the rooms stream, and making
//! one is a JetStream round trip. Made on the rooms task, a flood of joins
//! into fresh rooms would hold up every line of every room behind those
//! round trips; here they are made beside it, up to [`AT_ONCE`] at a time,
//! while the rooms task goes on carrying the lines of rooms already read.

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::stream::Stream as JsStream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::subject;
use crate::protocol::names::RoomName;

/// Consumers being made at once, at most.
const AT_ONCE: usize = 32;

/// Longest wait for one consumer; past it the room counts as not readable.
const CONSUMER_TIMEOUT: Duration = Duration::from_secs(2);

/// A room to read, on the stream of one link generation.
pub(super) struct Request {
    /// The rooms task's count of link comings-up, to drop late answers.
    pub generation: u64,
    /// The room to read.
    pub room: RoomName,
    /// The rooms stream, as set up for that generation.
    pub stream: JsStream,
}

/// What came of a [`Request`].
pub(super) struct Made {
    /// As in the request.
    pub generation: u64,
    /// As in the request.
    pub room: RoomName,
    /// The room's lines from now on; `None` if the consumer could not be
    /// made.
    pub messages: Option<Ordered>,
}

/// Makes consumers as asked until stopped or the rooms task is gone.
pub(super) async fn run(
    client: Client,
    mut requests: mpsc::UnboundedReceiver<Request>,
    made: mpsc::UnboundedSender<Made>,
    stop: CancellationToken,
) {
    let mut making = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(request) = requests.recv(), if making.len() < AT_ONCE => {
                making.push(make(client.clone(), request));
            }
            Some(done) = making.next(), if !making.is_empty() => {
                if made.send(done).is_err() {
                    return;
                }
            }
        }
    }
}

/// An ordered consumer of the room's subject, from the next line on.
async fn make(client: Client, request: Request) -> Made {
    let room = request.room;
    let config = OrderedConfig {
        deliver_subject: client.new_inbox(),
        filter_subject: subject::room(room),
        deliver_policy: DeliverPolicy::New,
        ..Default::default()
    };
    let consumer = async {
        let consumer = request.stream.create_consumer(config).await?;
        Ok::<_, async_nats::Error>(consumer.messages().await?)
    };
    let messages = match timeout(CONSUMER_TIMEOUT, consumer).await {
        Ok(Ok(messages)) => Some(messages),
        Ok(Err(e)) => {
            warn!(%room, error = %e, "cannot subscribe to a room");
            None
        }
        Err(_) => {
            warn!(%room, "subscribing to a room timed out");
            None
        }
    };
    Made {
        generation: request.generation,
        room,
        messages,
    }
}
