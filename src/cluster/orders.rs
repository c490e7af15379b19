//! Operators' orders for users on other nodes: `/kick`, `/mute`,
//! `/unmute` and a `/ban` by name, when the user named is a member of the
//! operator's room connected to another node.
//!
//! The operator's node sends the [`Order`] as a NATS request on
//! [`ORDERS`]; every node listens there, and the one that holds the user
//! carries it out (see `Hub::carry_out`) and answers with what it did.
//! Nodes without the user stay silent, so the first answer is the one; no
//! answer within [`ORDER_TIMEOUT`] is taken as no node having the user
//! (a node too slow to answer in time may still have carried it out).
//! Kicks and bans are then told to the room by the kicked user's own
//! node, through the room's stream like any room line.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::hub::Hub;
use crate::moderation::{Done, Order};

/// The subject orders travel on.
pub(super) const ORDERS: &str = "chatgate.moderate";

/// Longest an operator waits for the node holding the user to answer.
pub(super) const ORDER_TIMEOUT: Duration = Duration::from_secs(2);

/// Carries out the orders meant for this node's members.
pub(super) struct Orders {
    pub client: Client,
    pub hub: Arc<Hub>,
    pub stop: CancellationToken,
}

impl Orders {
    /// Runs until stopped. The subscription is made again by the client
    /// after a reconnection.
    pub(super) async fn run(self) {
        let mut orders = match self.client.subscribe(ORDERS).await {
            Ok(orders) => orders,
            Err(e) => {
                warn!(error = %e, "cannot listen for operators' orders; kicks and mutes from other nodes will not reach this node's users");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = self.stop.cancelled() => return,
                message = orders.next() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let Some(reply) = message.reply else {
                continue;
            };
            // An order not as this module writes it did not come from a
            // chatgate node: ignored.
            let Ok(order) = serde_json::from_slice::<Order>(&message.payload) else {
                continue;
            };
            let Some(done) = self.hub.carry_out(&order) else {
                continue;
            };
            if let Ok(answer) = serde_json::to_vec(&done) {
                let _ = self.client.publish(reply, Bytes::from(answer)).await;
            }
        }
    }
}

/// Sends `order` and waits for the node holding its user; `None` if no
/// node answered in time.
pub(super) async fn send(client: &Client, order: &Order) -> Option<Done> {
    let payload = Bytes::from(serde_json::to_vec(order).ok()?);
    let answer = timeout(ORDER_TIMEOUT, client.request(ORDERS, payload))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&answer.payload).ok()
}
