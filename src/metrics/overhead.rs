//! `deliberate_overhead_seconds`: the time the gateway itself adds to a request a provider
//! answered, i.e. the request's time minus the upstream's, by stage:
//! - `before_upstream`: from the request's arrival to the first upstream request (auth, body
//!   read and parse, rate limits, classification and policies, the cache lookup);
//! - `after_upstream`: from the end of the upstream answer to the end of the response body
//!   (assembling and writing a non-streamed answer; for a stream, the last relayed bytes);
//! - `total`: the two together.
//!
//! "Upstream" runs from the first attempt's request to the end of the answer that served,
//! so retries, `Retry-After` holds and fallbacks count as upstream time, not overhead. The
//! relay's per-chunk work happens while the upstream streams and is not in here. Cache hits
//! have no upstream and are not observed.
//!
//! The three series are resolved once at startup: observing is three atomic adds, with no
//! label lookup or allocation per request.

use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};
use tokio::time::Instant;

pub struct Overhead {
    before_upstream: Histogram,
    after_upstream: Histogram,
    total: Histogram,
}

impl Overhead {
    pub(super) fn register(registry: &Registry) -> Overhead {
        let family = HistogramVec::new(
            HistogramOpts::new(
                "deliberate_overhead_seconds",
                "Time the gateway adds to a request a provider answered (request time minus upstream time), by stage: before_upstream, after_upstream, total.",
            )
            // 25 us to ~0.8 s.
            .buckets(prometheus::exponential_buckets(0.000_025, 2.0, 16).expect("valid buckets")),
            &["stage"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(family.clone()))
            .expect("metric names are unique");
        Overhead {
            before_upstream: family.with_label_values(&["before_upstream"]),
            after_upstream: family.with_label_values(&["after_upstream"]),
            total: family.with_label_values(&["total"]),
        }
    }

    /// Observes one request that arrived at `arrived`, whose upstream ran from
    /// `upstream.0` to `upstream.1`, and whose response body ended at `ended`.
    pub fn observe(&self, arrived: Instant, upstream: (Instant, Instant), ended: Instant) {
        let (upstream_started, upstream_ended) = upstream;
        let before = upstream_started.saturating_duration_since(arrived);
        let after = ended.saturating_duration_since(upstream_ended);
        self.before_upstream.observe(before.as_secs_f64());
        self.after_upstream.observe(after.as_secs_f64());
        self.total.observe((before + after).as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn overhead_is_request_time_minus_upstream_time() {
        let registry = Registry::new();
        let overhead = Overhead::register(&registry);
        let arrived = Instant::now();
        let ms = Duration::from_millis;
        overhead.observe(
            arrived,
            (arrived + ms(2), arrived + ms(500)),
            arrived + ms(503),
        );
        assert_eq!(overhead.total.get_sample_count(), 1);
        assert!((overhead.before_upstream.get_sample_sum() - 0.002).abs() < 1e-9);
        assert!((overhead.after_upstream.get_sample_sum() - 0.003).abs() < 1e-9);
        assert!((overhead.total.get_sample_sum() - 0.005).abs() < 1e-9);
    }
}
