//! One model, several attempts: retries before the first response byte only.
//!
//! `Upstream::route` picks a deployment (`deployments.rs`), calls it, and on a retryable
//! failure (connection error, timeout before headers, 429/500/502/503/504) tries again,
//! another deployment first, bounded by `max_retries`, the shared retry budget, the
//! provider's `Retry-After` and the request's deadline. Once `Upstream::call` has returned a
//! response (a head, or for a slow stream the 200 with keep-alives) nothing is retried:
//! bytes may have reached the client.
//!
//! Each attempt has its own `CallRecorder`; only the final error is recorded as the
//! request's outcome, so a request that succeeded on its second attempt counts as `ok`. The
//! answer carries the `Served` fact: this model, the deployment that answered, and its
//! call's record.

// Numbers here come from providers and config: no unchecked arithmetic (issue 10).
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use serde_json::Value;
use tokio::time::Instant;
use tower::retry::budget::Budget;

use super::deployments::{hold, Outcome, Pick};
use super::{CallContext, Upstream};
use crate::api::ChatRequest;
use crate::body::relay::deadline_after;
use crate::body::Body;
use crate::classify::Tier;
use crate::config::{Model, Resilience, TierTimeouts};
use crate::embeddings::EmbeddingsRequest;
use crate::error::{FailureKind, GatewayError, TimeoutKind};
use crate::facts::Served;
use crate::metrics::Metrics;
use crate::record::{CallLabels, CallRecorder};
use crate::telemetry::ClientTrace;
use tracing::Instrument;

/// What routing one request to one model needs.
#[derive(Clone)]
pub struct RouteRequest {
    pub model: Arc<Model>,
    pub tier: Tier,
    pub timeouts: TierTimeouts,
    pub resilience: Resilience,
    pub tenant: Arc<str>,
    /// When the request arrived: every deadline counts from here.
    pub started: Instant,
    /// When the request's first upstream attempt started (the overhead histogram's upstream
    /// time runs from there, across retries and fallbacks).
    pub upstream_started: Instant,
    pub metrics: Arc<Metrics>,
    pub request_id: crate::layers::request_id::RequestId,
    /// The client's W3C trace context, for the upstream's trace headers.
    pub trace: Option<ClientTrace>,
    /// The config generation the request runs on: a newer one resets deployment health.
    pub generation: u64,
    /// Set for a `/v1/embeddings` request: what the provider is asked instead of a chat.
    pub embeddings: Option<Arc<EmbeddingsRequest>>,
}

/// Every attempt failed before the first byte.
#[derive(Debug)]
pub struct RouteFailure {
    pub error: GatewayError,
    /// True when the failure is the model's, not the request's: another model may serve it.
    pub fallback: bool,
    /// Short, header-safe description, e.g. `upstream 503`.
    pub summary: String,
}

/// Whether a failure before the response head is worth another attempt.
pub fn is_retryable(e: &GatewayError) -> bool {
    match e {
        GatewayError::UpstreamStatus { status, .. } => {
            matches!(status, 429 | 500 | 502 | 503 | 504)
        }
        GatewayError::UpstreamTimeout { which, .. } => {
            matches!(which, TimeoutKind::Connect | TimeoutKind::FirstToken)
        }
        // The request got no answer (a body that failed after its head is not retried).
        GatewayError::UpstreamUnavailable { kind, .. } => {
            matches!(kind, FailureKind::Connect | FailureKind::NoAnswer)
        }
        _ => false,
    }
}

fn summary(e: &GatewayError) -> String {
    match e {
        GatewayError::UpstreamStatus { status, .. } => format!("upstream {status}"),
        GatewayError::UpstreamTimeout { .. } => "upstream timeout".into(),
        _ => "upstream unavailable".into(),
    }
}

impl Upstream {
    /// Sends `request` (already adapted to `r.model`) to one of the model's deployments,
    /// retrying before the first response byte.
    pub async fn route(
        &self,
        r: &RouteRequest,
        mut request: ChatRequest,
    ) -> Result<Response<Body>, RouteFailure> {
        let cfg = r.resilience;
        self.deployments.observe_generation(r.generation);
        let budget = self.deployments.budget(cfg.retry_budget_ratio);
        budget.deposit();
        let mut deadline = deadline_after(r.started, r.timeouts.total);
        if request.is_stream() {
            // A retry after the first-token deadline could only time out again.
            deadline = deadline.min(deadline_after(r.started, r.timeouts.first_token));
        }
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut last: Option<GatewayError> = None;
        while tried.len() <= cfg.max_retries as usize {
            let attempt = match self.deployments.pick(&r.model.deployments, &tried) {
                Pick::Ready(attempt) => attempt,
                Pick::Wait(until) if until < deadline => {
                    // Held back by Retry-After and there is time: wait, then pick again.
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                Pick::Wait(_) | Pick::Unavailable => break,
            };
            let retry = !tried.is_empty();
            if retry && (Instant::now() >= deadline || !budget.withdraw()) {
                break;
            }
            let d = attempt.deployment.clone();
            if retry {
                r.metrics
                    .upstream_retries
                    .with_label_values(&[&r.model.name, &d.id])
                    .inc();
                tracing::debug!(deployment = &*d.id, "retrying upstream call");
            }
            let ctx = CallContext {
                model: r.model.clone(),
                deployment: d.clone(),
                tier: r.tier,
                timeouts: r.timeouts,
                request_started: r.started,
                recorder: Arc::new(
                    CallRecorder::new(
                        r.metrics.clone(),
                        CallLabels {
                            tenant: r.tenant.clone(),
                            tier: r.tier,
                            model: r.model.name.clone(),
                            provider: d.provider.name.clone(),
                        },
                        r.started,
                    )
                    .after_earlier_attempts(r.upstream_started),
                ),
                request_id: r.request_id.clone(),
                embeddings: r.embeddings.clone(),
                trace: r.trace.clone(),
            };
            // Deployments of one model may use different names for it.
            request
                .body
                .insert("model".into(), Value::String(d.upstream_model.clone()));
            let span = tracing::debug_span!(
                "upstream_attempt",
                model = &*r.model.name,
                deployment = &*d.id,
                attempt = tried.len().saturating_add(1),
                outcome = tracing::field::Empty
            );
            let called = self
                .call(ctx.clone(), &request)
                .instrument(span.clone())
                .await;
            span.record(
                "outcome",
                called.as_ref().map_or_else(GatewayError::kind, |_| "ok"),
            );
            drop(span);
            match called {
                Ok(mut response) => {
                    attempt.finish(Outcome::Success, &cfg);
                    response.extensions_mut().insert(Served {
                        model: r.model.clone(),
                        deployment: d.id.clone(),
                        call: ctx.recorder.record().clone(),
                    });
                    return Ok(response);
                }
                Err(mut error) if is_retryable(&error) => {
                    let retry_after = match &mut error {
                        GatewayError::UpstreamStatus {
                            retry_after_secs: Some(s),
                            ..
                        } => {
                            let held = hold(Duration::from_secs(*s), &cfg);
                            // The client is told the same capped wait, rounded up.
                            *s = held
                                .as_secs()
                                .saturating_add(u64::from(held.subsec_nanos() > 0));
                            Some(held)
                        }
                        _ => None,
                    };
                    attempt.finish(Outcome::Failure { retry_after }, &cfg);
                    // Ends this attempt's upstream timing without touching the outcome.
                    ctx.recorder.stream_completed();
                    tried.push(d.id.clone());
                    last = Some(error);
                }
                Err(error) => {
                    attempt.finish(Outcome::Answered, &cfg);
                    ctx.recorder.stream_failed(&error);
                    return Err(RouteFailure {
                        summary: summary(&error),
                        error,
                        fallback: false,
                    });
                }
            }
        }
        Err(match last {
            Some(error) => RouteFailure {
                summary: summary(&error),
                error,
                fallback: true,
            },
            None => RouteFailure {
                error: GatewayError::UpstreamUnavailable {
                    provider: r.model.provider.name.to_string(),
                    kind: FailureKind::NoDeployment,
                    message: format!(
                        "every deployment of model `{}` is unavailable (circuit breaker open or Retry-After pending)",
                        r.model.name
                    ),
                },
                fallback: true,
                summary: "circuit open".into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(kind: FailureKind) -> GatewayError {
        GatewayError::UpstreamUnavailable {
            provider: "p".into(),
            kind,
            message: "m".into(),
        }
    }

    fn timeout(which: TimeoutKind) -> GatewayError {
        GatewayError::UpstreamTimeout {
            provider: "p".into(),
            which,
            after_ms: 1,
        }
    }

    #[test]
    fn only_failures_without_an_answer_are_retried() {
        for kind in [FailureKind::Connect, FailureKind::NoAnswer] {
            assert!(is_retryable(&unavailable(kind)), "{kind:?}");
        }
        for kind in [
            FailureKind::Body,
            FailureKind::Stream,
            FailureKind::NoDeployment,
        ] {
            assert!(!is_retryable(&unavailable(kind)), "{kind:?}");
        }
        for which in [TimeoutKind::Connect, TimeoutKind::FirstToken] {
            assert!(is_retryable(&timeout(which)), "{which}");
        }
        for which in [TimeoutKind::Idle, TimeoutKind::Total] {
            assert!(!is_retryable(&timeout(which)), "{which}");
        }
        assert!(!is_retryable(&GatewayError::Overloaded));
    }
}
