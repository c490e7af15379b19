//! Figures over time: a task that snapshots the server and a delivery
//! counter at a fixed interval until told to stop.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::probe::Probe;
use crate::report::Sample;

/// Interval between samples: fine enough to see a stall within a second,
/// coarse enough to cost nothing.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// A running sampler.
pub struct Sampler {
    stop: CancellationToken,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling now; `delivered` reads the delivery counter.
    pub fn start(probe: Probe, delivered: impl Fn() -> u64 + Send + 'static) -> Sampler {
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(probe, delivered, stop.clone()));
        Sampler { stop, task }
    }

    /// Stops and returns the samples.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn sample(probe: Probe, delivered: impl Fn() -> u64, stop: CancellationToken) -> Vec<Sample> {
    let began = Instant::now();
    let first = probe.snapshot();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return samples,
        }
        let now = probe.snapshot();
        let since =
            |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?).as_secs_f64());
        samples.push(Sample {
            t_s: began.elapsed().as_secs_f64(),
            delivered: delivered(),
            server_rss_bytes: now.server_rss,
            server_cpu_s: since(first.server_cpu, now.server_cpu),
            generator_cpu_s: since(first.own_cpu, now.own_cpu),
        });
    }
}

/// Deliveries per second in each whole second of `samples`.
pub fn per_second(samples: &[Sample]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut last = (0.0, 0u64);
    let mut second = 1.0;
    for s in samples {
        if s.t_s + 1e-6 >= second {
            let span = s.t_s - last.0;
            if span > 0.0 {
                out.push((s.delivered - last.1) as f64 / span);
            }
            last = (s.t_s, s.delivered);
            second += 1.0;
        }
    }
    out
}

/// Highest sampled server RSS.
pub fn peak_rss(samples: &[Sample]) -> Option<u64> {
    samples.iter().filter_map(|s| s.server_rss_bytes).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_rates_from_quarter_second_samples() {
        let samples: Vec<Sample> = (1..=9)
            .map(|i| Sample {
                t_s: i as f64 * 0.25,
                delivered: i * 100,
                ..Sample::default()
            })
            .collect();
        assert_eq!(per_second(&samples), vec![400.0, 400.0]);
    }
}
