//! Live latency statistics per model: time to first token and total time of recent
//! successful requests, as sliding-window quantiles (the last `WINDOW` samples no older
//! than `MAX_AGE`).
//!
//! Recording happens once per finished request; quantiles are computed only when a
//! request carries a deadline, so the hot path pays one short mutex per request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: usize = 200;
const MAX_AGE: Duration = Duration::from_secs(600);
/// Below this many samples a quantile is a guess: no decision is based on it.
pub const MIN_SAMPLES: usize = 5;

#[derive(Debug, Default)]
struct Samples {
    first_token: VecDeque<(Instant, Duration)>,
    total: VecDeque<(Instant, Duration)>,
}

fn push(q: &mut VecDeque<(Instant, Duration)>, at: Instant, d: Duration) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back((at, d));
}

fn quantile(q: &VecDeque<(Instant, Duration)>, p: f64, now: Instant) -> Option<Duration> {
    let mut recent: Vec<Duration> = q
        .iter()
        .filter(|(at, _)| now.saturating_duration_since(*at) <= MAX_AGE)
        .map(|(_, d)| *d)
        .collect();
    if recent.len() < MIN_SAMPLES {
        return None;
    }
    let rank = ((p * recent.len() as f64).ceil() as usize).clamp(1, recent.len()) - 1;
    let (_, value, _) = recent.select_nth_unstable(rank);
    Some(*value)
}

/// The p90s a deadline is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub first_token_p90: Option<Duration>,
    pub total_p90: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct LatencyBook {
    models: RwLock<HashMap<Arc<str>, Arc<Mutex<Samples>>>>,
}

impl LatencyBook {
    fn samples(&self, model: &Arc<str>) -> Arc<Mutex<Samples>> {
        if let Some(s) = self
            .models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
        {
            return s.clone();
        }
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(model.clone())
            .or_default()
            .clone()
    }

    /// A successful request of `model` (first token: streams only).
    pub fn record(&self, model: &Arc<str>, first_token: Option<Duration>, total: Duration) {
        let now = Instant::now();
        let samples = self.samples(model);
        let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ft) = first_token {
            push(&mut s.first_token, now, ft);
        }
        push(&mut s.total, now, total);
    }

    pub fn observed(&self, model: &str) -> Observed {
        let now = Instant::now();
        let Some(samples) = self
            .models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
        else {
            return Observed::default();
        };
        let s = samples.lock().unwrap_or_else(|p| p.into_inner());
        Observed {
            first_token_p90: quantile(&s.first_token, 0.9, now),
            total_p90: quantile(&s.total, 0.9, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p90_needs_enough_samples_and_tracks_the_tail() {
        let book = LatencyBook::default();
        let model: Arc<str> = Arc::from("o3-mini");
        for _ in 0..4 {
            book.record(&model, None, Duration::from_secs(1));
        }
        assert_eq!(book.observed("o3-mini").total_p90, None);
        for i in 0..16 {
            let total = if i < 4 { 30 } else { 2 };
            book.record(
                &model,
                Some(Duration::from_secs(1)),
                Duration::from_secs(total),
            );
        }
        // 20 samples, 4 of them 30 s: the p90 is in the slow tail.
        assert_eq!(
            book.observed("o3-mini").total_p90,
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            book.observed("o3-mini").first_token_p90,
            Some(Duration::from_secs(1))
        );
        assert_eq!(book.observed("other"), Observed::default());
    }

    #[test]
    fn the_window_forgets_old_samples() {
        let book = LatencyBook::default();
        let model: Arc<str> = Arc::from("m");
        for _ in 0..WINDOW {
            book.record(&model, None, Duration::from_secs(60));
        }
        for _ in 0..WINDOW {
            book.record(&model, None, Duration::from_millis(100));
        }
        assert_eq!(
            book.observed("m").total_p90,
            Some(Duration::from_millis(100))
        );
    }
}
