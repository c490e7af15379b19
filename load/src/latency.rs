//! End-to-end latency: cheap recording on the receive path, merged at the end.
//!
//! A full-precision histogram is a few hundred KiB, too much for each of
//! 10,000 receivers. So each receiver keeps a small [`Recorder`] buffer and
//! flushes it into one of a few shared shards (a short uncontended lock per
//! [`RECORD_BATCH`] samples); the report merges the shards.

use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly, in nanoseconds. Anything slower than a
/// minute is a stalled run, recorded as a minute.
pub const HIGHEST_NANOS: u64 = 60_000_000_000;

/// Significant figures: 0.1 % resolution at every magnitude.
pub const SIGNIFICANT_FIGURES: u8 = 3;

/// Samples a receiver buffers before taking a shard's lock: large enough to
/// make the lock rare, small enough (2 KiB) for 10,000 receivers.
pub const RECORD_BATCH: usize = 256;

/// Shards: receivers on different worker threads rarely meet on one lock.
pub const SHARDS: usize = 8;

/// An empty latency histogram with the generator's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NANOS, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

/// The shared shards of one run.
#[derive(Debug)]
pub struct Latencies {
    shards: Box<[Mutex<Histogram<u64>>]>,
}

impl Latencies {
    /// Empty shards.
    pub fn new() -> Arc<Latencies> {
        Arc::new(Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        })
    }

    /// A recorder for receiver number `index`.
    pub fn recorder(self: &Arc<Self>, index: usize) -> Recorder {
        Recorder {
            samples: Vec::new(),
            shard: index % self.shards.len(),
            into: self.clone(),
        }
    }

    /// Every shard merged into one histogram.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            merge(&mut all, &shard);
        }
        all
    }
}

/// Adds every sample of `from` to `into`.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Same bounds everywhere, so `add` cannot fail; a foreign histogram's
    // out-of-range values are clamped rather than dropped.
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// One receiver's buffer of unflushed samples.
#[derive(Debug)]
pub struct Recorder {
    /// Allocated on the first sample, so idle receivers cost nothing.
    samples: Vec<u64>,
    shard: usize,
    into: Arc<Latencies>,
}

impl Recorder {
    /// Records one latency in nanoseconds.
    pub fn record(&mut self, nanos: u64) {
        if self.samples.capacity() == 0 {
            self.samples.reserve_exact(RECORD_BATCH);
        }
        self.samples.push(nanos);
        if self.samples.len() == RECORD_BATCH {
            self.flush();
        }
    }

    /// Moves buffered samples into the shard.
    pub fn flush(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let mut shard = self.into.shards[self.shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &nanos in &self.samples {
            shard.saturating_record(nanos.max(1));
        }
        self.samples.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The percentiles every report shows, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples behind the figures.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl Percentiles {
    /// Reads the percentiles off a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |nanos: u64| nanos as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_shards_equal_one_histogram_of_everything() {
        let latencies = Latencies::new();
        let mut reference = new_histogram();
        let mut recorders: Vec<Recorder> = (0..3).map(|i| latencies.recorder(i)).collect();
        for v in 1..=10_000u64 {
            let nanos = v * 997 % 5_000_000 + 1;
            recorders[(v % 3) as usize].record(nanos);
            reference.record(nanos).unwrap();
        }
        drop(recorders);
        let merged = latencies.merged();
        assert_eq!(merged.len(), 10_000);
        assert_eq!(Percentiles::of(&merged), Percentiles::of(&reference));
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        a.record(1_000).unwrap();
        b.record(2_000_000).unwrap();
        b.record(3).unwrap();
        merge(&mut a, &b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.min(), 3);
        assert!(a.max() >= 2_000_000);
    }

    #[test]
    fn unflushed_samples_reach_the_shard_on_flush() {
        let latencies = Latencies::new();
        let mut r = latencies.recorder(5);
        r.record(10);
        assert_eq!(latencies.merged().len(), 0);
        r.flush();
        assert_eq!(latencies.merged().len(), 1);
    }

    #[test]
    fn absurd_latency_is_clamped_not_lost() {
        let latencies = Latencies::new();
        let mut r = latencies.recorder(0);
        r.record(u64::MAX);
        r.record(0);
        r.flush();
        assert_eq!(latencies.merged().len(), 2);
    }

    #[test]
    fn percentiles_are_in_microseconds() {
        let mut h = new_histogram();
        for _ in 0..100 {
            h.record(50_000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((p.p50_us - 50.0).abs() < 0.1, "{p:?}");
        assert_eq!(p.count, 100);
    }
}
