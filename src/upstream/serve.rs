//! One request, its model and then its fallbacks: `Upstream::serve`.
//!
//! The request is adapted to the decided model (`translate`) and routed to one of its
//! deployments with retries (`route`). If every attempt failed in a way that is the model's
//! fault (not the request's) and time is left, the next model of the decision's fallback
//! chain gets the client's original request, adapted to it; a fallback that cannot take the
//! request's parameters is skipped. The answer carries the `Served` fact of the model that
//! answered; `Answer` says what was changed on the way and why a fallback served.

use std::sync::Arc;

use http::Response;
use tokio::time::Instant;

use super::{translate, RouteRequest, Upstream};
use crate::api::ChatRequest;
use crate::body::relay::deadline_after;
use crate::body::Body;
use crate::config::{Model, Resilience, TierTimeouts};
use crate::embeddings::EmbeddingsRequest;
use crate::error::GatewayError;
use crate::layers::request_id::RequestId;
use crate::metrics::Metrics;
use crate::telemetry::ClientTrace;
use tracing::Instrument;

/// What serving one request needs besides the request itself.
pub struct ServePlan<'a> {
    pub model: &'a Arc<Model>,
    pub fallbacks: &'a [Arc<Model>],
    /// One deadline for the whole request, fallbacks included.
    pub timeouts: TierTimeouts,
    pub resilience: Resilience,
    pub tenant: &'a Arc<str>,
    pub request_id: &'a RequestId,
    pub trace: Option<&'a ClientTrace>,
    pub started: Instant,
    pub generation: u64,
    pub metrics: &'a Arc<Metrics>,
    /// Set for a `/v1/embeddings` request (its chat request is only a stand-in).
    pub embeddings: Option<Arc<EmbeddingsRequest>>,
}

/// A response and how it came about.
pub struct Answer {
    pub response: Response<Body>,
    /// Parameter changes made for the serving model (`x-deliberate-adjusted`).
    pub adjusted: Vec<String>,
    /// Set when a fallback served: which model failed, and how.
    pub fallback_reason: Option<String>,
    /// Fallback models tried (skipped ones not counted).
    pub fallbacks: u32,
}

impl Upstream {
    pub async fn serve(
        &self,
        plan: ServePlan<'_>,
        mut chat: ChatRequest,
    ) -> Result<Answer, GatewayError> {
        // The client's body before adaptation, kept only when a fallback may need it (each
        // model gets parameters adapted from what the client sent).
        let original = (!plan.fallbacks.is_empty()).then(|| chat.clone());
        // An embeddings request's stand-in is never sent: nothing to adapt.
        let mut adjusted = Vec::new();
        if plan.embeddings.is_none() {
            adjusted = translate::adapt_request(&mut chat.body, plan.model)?;
            translate::request_stream_usage(&mut chat, plan.model);
        }
        let upstream_started = Instant::now();
        let route = |model: &Arc<Model>| RouteRequest {
            model: model.clone(),
            tier: model.tier,
            timeouts: plan.timeouts,
            resilience: plan.resilience,
            tenant: plan.tenant.clone(),
            started: plan.started,
            upstream_started,
            metrics: plan.metrics.clone(),
            request_id: plan.request_id.clone(),
            trace: plan.trace.cloned(),
            generation: plan.generation,
            embeddings: plan.embeddings.clone(),
        };
        let span = |model: &Arc<Model>, fallback: bool| {
            tracing::debug_span!("upstream", model = &*model.name, fallback)
        };
        let mut result = self
            .route(&route(plan.model), chat)
            .instrument(span(plan.model, false))
            .await;
        let mut served = plan.model;
        let mut fallback_reason = None;
        let mut fallbacks = 0u32;
        let deadline = deadline_after(plan.started, plan.timeouts.total);
        for next in plan.fallbacks {
            let first = match &result {
                Err(failure) if failure.fallback && Instant::now() < deadline => failure,
                _ => break,
            };
            let Some(mut body) = original.clone() else {
                break;
            };
            // A fallback that cannot take this request's parameters is skipped.
            let Ok(next_adjusted) = translate::adapt_request(&mut body.body, next) else {
                continue;
            };
            translate::request_stream_usage(&mut body, next);
            plan.metrics
                .fallbacks
                .with_label_values(&[plan.tenant, &plan.model.name, &next.name])
                .inc();
            fallback_reason.get_or_insert_with(|| {
                format!("fallback: {} failed ({})", plan.model.name, first.summary)
            });
            tracing::info!(from = &*served.name, to = &*next.name, "falling back");
            served = next;
            adjusted = next_adjusted;
            fallbacks = fallbacks.saturating_add(1);
            result = self
                .route(&route(next), body)
                .instrument(span(next, true))
                .await;
        }
        let response = result.map_err(|failure| failure.error)?;
        Ok(Answer {
            response,
            adjusted,
            fallback_reason,
            fallbacks,
        })
    }
}
