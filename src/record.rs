//! What one upstream call reported, and who records it.
//!
//! `CallRecord` holds the facts only the provider side learns while an answer is produced:
//! the usage the provider reported, the data events relayed, the time to the first token and,
//! for a stream that failed after its 200, the failure's kind. It is written by one owner
//! (the call's `CallRecorder`, used by the provider code and the SSE relay) and read by the
//! layers above when the response body ends (billing, rate-limit reconciliation, metrics,
//! the cache), through the `Served` response extension.
//!
//! `CallRecorder` also keeps the call's Prometheus series: it is labelled with the model
//! and tier of the attempt it records, so a fallback's tokens and time to first token are
//! counted for the model that served them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::Tier;
use crate::cost::Usage;
use crate::error::{ErrorKind, GatewayError};
use crate::metrics::Metrics;

/// The facts of one upstream answer; see the module docs.
#[derive(Debug, Default)]
pub struct CallRecord {
    usage: Mutex<Option<Usage>>,
    data_events: AtomicU64,
    first_token_after: OnceLock<Duration>,
    failure: OnceLock<ErrorKind>,
    /// From the request's first upstream attempt to the end of this answer's upstream
    /// (the overhead histogram's upstream time).
    upstream_span: OnceLock<(Instant, Instant)>,
}

impl CallRecord {
    /// The provider's last reported usage.
    pub fn usage(&self) -> Option<Usage> {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Data events relayed so far: the output estimate when the provider reports no usage.
    pub fn data_events(&self) -> u64 {
        self.data_events.load(Ordering::Relaxed)
    }

    /// The gateway itself ended the answer (the shutdown deadline cut the stream): that,
    /// not the client going away, is its outcome. A failure already recorded stays.
    pub fn cut_by(&self, error: &GatewayError) {
        let _ = self.failure.set(error.error_kind());
    }

    /// Time from the request's arrival to the first token, if one was relayed.
    pub fn first_token_after(&self) -> Option<Duration> {
        self.first_token_after.get().copied()
    }

    /// The error that ended a stream after its 200, if one did.
    pub fn failure(&self) -> Option<ErrorKind> {
        self.failure.get().copied()
    }

    /// When the request's first upstream attempt started and this answer's upstream ended;
    /// `None` until it ended (and for cache hits).
    pub fn upstream_span(&self) -> Option<(Instant, Instant)> {
        self.upstream_span.get().copied()
    }
}

/// The series one call is counted under.
#[derive(Clone)]
pub struct CallLabels {
    pub tenant: Arc<str>,
    pub tier: Tier,
    pub model: Arc<str>,
    pub provider: Arc<str>,
}

/// Records one upstream call into its `CallRecord` and the metrics; shared by the provider's
/// stream and the response body.
pub struct CallRecorder {
    metrics: Arc<Metrics>,
    labels: CallLabels,
    record: Arc<CallRecord>,
    request_started: Instant,
    /// The request's first upstream attempt (this one, or an earlier retry or fallback).
    first_attempt: Instant,
    upstream_started: Instant,
    upstream_done: AtomicBool,
}

impl CallRecorder {
    /// A recorder for an attempt starting now (the request's first, unless
    /// `after_earlier_attempts` says otherwise).
    pub fn new(metrics: Arc<Metrics>, labels: CallLabels, request_started: Instant) -> Self {
        let now = Instant::now();
        CallRecorder {
            metrics,
            labels,
            record: Arc::default(),
            request_started,
            first_attempt: now,
            upstream_started: now,
            upstream_done: AtomicBool::new(false),
        }
    }

    /// The request's first upstream attempt started at `first_attempt` (a retry or a
    /// fallback): the overhead histogram counts the time since as upstream time.
    pub fn after_earlier_attempts(mut self, first_attempt: Instant) -> Self {
        self.first_attempt = first_attempt.min(self.upstream_started);
        self
    }

    pub fn record(&self) -> &Arc<CallRecord> {
        &self.record
    }

    pub fn provider(&self) -> &str {
        &self.labels.provider
    }

    pub fn started(&self) -> Instant {
        self.request_started
    }

    fn series(&self) -> [&str; 3] {
        let l = &self.labels;
        [&l.tenant, l.tier.as_str(), &l.model]
    }

    pub fn first_token(&self) {
        let after = self.request_started.elapsed();
        if self.record.first_token_after.set(after).is_ok() {
            self.metrics
                .time_to_first_token
                .with_label_values(&self.series())
                .observe(after.as_secs_f64());
        }
    }

    /// Relayed data events (about one output token each for most providers). Saturates:
    /// the count feeds the bill when a provider reports no usage, so it never wraps.
    pub fn add_data_events(&self, events: u64) {
        let _ = self
            .record
            .data_events
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(events))
            });
    }

    /// Counts tokens from an OpenAI-shaped `usage` object.
    pub fn usage(&self, usage: &serde_json::Value) {
        let parsed = Usage::from_openai(usage);
        let previous = self
            .record
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(parsed);
        // Count each token once even if a provider repeats its usage (Anthropic reports
        // input at the start and output at the end of a stream).
        let before = previous.unwrap_or_default();
        let (prompt, cached, completion, reasoning) = (
            parsed.prompt.saturating_sub(before.prompt),
            parsed.cached_prompt.saturating_sub(before.cached_prompt),
            parsed.completion.saturating_sub(before.completion),
            parsed.reasoning.saturating_sub(before.reasoning),
        );
        let cached = cached.min(prompt);
        let reasoning = reasoning.min(completion);
        let [tenant, tier, model] = self.series();
        for (kind, n) in [
            ("input", prompt - cached),
            ("cached_input", cached),
            ("output", completion - reasoning),
            ("reasoning", reasoning),
        ] {
            if n > 0 {
                self.metrics
                    .tokens
                    .with_label_values(&[tenant, tier, model, kind])
                    .inc_by(n);
            }
        }
    }

    fn finish_upstream(&self) -> bool {
        if self.upstream_done.swap(true, Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let _ = self.record.upstream_span.set((self.first_attempt, now));
        self.metrics
            .upstream_duration
            .with_label_values(&[&self.labels.provider, &self.labels.model])
            .observe(
                now.saturating_duration_since(self.upstream_started)
                    .as_secs_f64(),
            );
        true
    }

    /// A non-streaming call or a stream ended cleanly (or an attempt that will be retried).
    pub fn stream_completed(&self) {
        self.finish_upstream();
    }

    /// A stream failed after its 200; the error kind becomes the request's outcome.
    pub fn stream_failed(&self, error: &GatewayError) {
        if self.finish_upstream() {
            let _ = self.record.failure.set(error.error_kind());
        }
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        // Dropped before the upstream finished: the client went away and took the stream
        // (the body's end says so); only the upstream timing is closed here.
        self.finish_upstream();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> CallRecorder {
        let labels = CallLabels {
            tenant: "t".into(),
            tier: Tier::Fast,
            model: "m".into(),
            provider: "p".into(),
        };
        CallRecorder::new(Metrics::new(), labels, Instant::now())
    }

    #[test]
    fn repeated_usage_counts_each_token_once_and_keeps_the_last_report() {
        let r = recorder();
        r.usage(&serde_json::json!({"prompt_tokens": 10, "completion_tokens": 0}));
        r.usage(&serde_json::json!({"prompt_tokens": 10, "completion_tokens": 7}));
        let usage = r.record().usage().unwrap();
        assert_eq!((usage.prompt, usage.completion), (10, 7));
    }

    #[test]
    fn a_stream_failure_is_kept_once() {
        let r = recorder();
        r.add_data_events(1);
        r.first_token();
        r.stream_failed(&GatewayError::Overloaded);
        r.stream_failed(&GatewayError::InvalidApiKey);
        assert_eq!(
            r.record().failure(),
            Some(GatewayError::Overloaded.error_kind())
        );
        assert_eq!(r.record().data_events(), 1);
        r.add_data_events(u64::MAX);
        assert_eq!(r.record().data_events(), u64::MAX);
        assert!(r.record().first_token_after().is_some());
    }

    #[test]
    fn the_upstream_span_starts_at_the_first_attempt_and_ends_once() {
        let first = Instant::now();
        let r = recorder().after_earlier_attempts(first);
        assert_eq!(r.record().upstream_span(), None, "not ended yet");
        r.stream_completed();
        let (started, ended) = r.record().upstream_span().unwrap();
        assert_eq!(started, first);
        r.stream_completed();
        assert_eq!(r.record().upstream_span(), Some((started, ended)));
    }
}
