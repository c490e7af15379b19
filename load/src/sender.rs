//! A sender: stamped messages at a given rate, or as fast as the room's
//! window allows, in batches of one write each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::client::conn::Writer;
use crate::client::encode::Encoder;
use crate::clock::now_nanos;
use crate::flow::Flow;
use crate::stamp::Stamp;

/// Most bytes in one batch: one write of this size carries hundreds of
/// small messages, and the buffer stays small.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// How a sender paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Messages per second for this sender; `None` for as fast as the window
    /// allows.
    pub rate: Option<f64>,
    /// Messages per batch at full speed: a quarter of the window, so the
    /// sender refills it in a few large writes rather than many small ones.
    pub chunk: u64,
    /// Payload bytes per message.
    pub payload: usize,
}

impl Pace {
    /// The pace for a window of `window` messages of `line_bytes` each.
    pub fn new(rate: Option<f64>, window: u64, payload: usize, line_bytes: usize) -> Pace {
        let by_bytes = (MAX_BATCH_BYTES / line_bytes.max(1)).max(1) as u64;
        Pace {
            rate,
            chunk: (window / 4).clamp(1, by_bytes),
            payload,
        }
    }
}

/// What a sender did.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Messages written (or being written when an error struck).
    pub count: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Sends from `start` until `stop`, as sender id `sender`.
pub async fn run(
    writer: Writer,
    encoder: Encoder,
    sender: u32,
    flow: Arc<Flow>,
    pace: Pace,
    start: CancellationToken,
    stop: CancellationToken,
) -> Sent {
    tokio::select! {
        () = start.cancelled() => {}
        () = stop.cancelled() => return Sent::default(),
    }
    let began = Instant::now();
    let mut seq = 0u64;
    let mut batch = Vec::new();
    loop {
        let (least, most) = match pace.rate {
            None => (pace.chunk, pace.chunk),
            Some(rate) => {
                let due = (began.elapsed().as_secs_f64() * rate) as u64;
                if due <= seq {
                    let next = began + Duration::from_secs_f64((seq + 1) as f64 / rate);
                    tokio::select! {
                        () = tokio::time::sleep_until(next.into()) => continue,
                        () = stop.cancelled() => break,
                    }
                }
                (1, (due - seq).min(pace.chunk))
            }
        };
        let granted = flow.claim(least, most, &stop).await;
        if granted == 0 {
            break;
        }
        batch.clear();
        let nanos = now_nanos();
        for _ in 0..granted {
            encoder.message(&Stamp { sender, seq, nanos }, pace.payload, &mut batch);
            seq += 1;
        }
        if let Err(e) = writer.lock().await.send(&batch).await {
            return Sent {
                count: seq,
                error: Some(e.to_string()),
            };
        }
        if stop.is_cancelled() {
            break;
        }
    }
    Sent {
        count: seq,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_is_a_quarter_window_within_the_batch_limit() {
        assert_eq!(Pace::new(None, 1024, 64, 80).chunk, 256);
        assert_eq!(Pace::new(None, 1024, 64, 8000).chunk, 8);
        assert_eq!(Pace::new(None, 2, 64, 80).chunk, 1);
    }
}
