//! The innermost service of every endpoint: adapt the (chat) request to the decided model,
//! call it, and label the answer with the `x-deliberate-*` headers.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tower::Service;

use super::DroppedFields;
use crate::api::ChatRequest;
use crate::body::observed::{BodyEnd, OnEnd};
use crate::body::Body;
use crate::error::GatewayError;
use crate::facts::{FellBack, RequestCtx, Served};
use crate::layers::tenant::TenantCtx;
use crate::layers::BoxFuture;
use crate::metrics::Metrics;
use crate::policy::admission::RequestDeadline;
use crate::policy::Decision;
use crate::telemetry::ClientTrace;
use crate::upstream::{Answer, ProviderAdjustments, ServePlan, Upstream};

/// The innermost service: adapt the request to the chosen model, call it, label the answer.
#[derive(Clone)]
pub struct ChatCompletions {
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
}

impl ChatCompletions {
    pub fn new(upstream: Arc<Upstream>, metrics: Arc<Metrics>) -> Self {
        ChatCompletions { upstream, metrics }
    }
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl Service<Request<ChatRequest>> for ChatCompletions {
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let upstream = self.upstream.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let (parts, chat) = request.into_parts();
            let missing = |what: &str| GatewayError::Internal(format!("{what} missing"));
            let ext = &parts.extensions;
            let ctx = ext
                .get::<TenantCtx>()
                .ok_or_else(|| missing("tenant context"))?;
            let decision = ext.get::<Decision>().ok_or_else(|| missing("decision"))?;
            let request = ext
                .get::<RequestCtx>()
                .ok_or_else(|| missing("request context"))?;

            let mut timeouts = *ctx.snapshot.timeouts(decision.tier);
            if let Some(RequestDeadline(d)) = ext.get::<RequestDeadline>() {
                // The client's deadline is this request's own total timeout.
                timeouts.total = timeouts.total.min(*d);
                timeouts.first_token = timeouts.first_token.min(timeouts.total);
            }
            let plan = ServePlan {
                model: &decision.model,
                fallbacks: &decision.fallbacks,
                timeouts,
                resilience: ctx.snapshot.resilience,
                tenant: &ctx.tenant.name,
                request_id: &request.id,
                trace: ext.get::<ClientTrace>(),
                started: request.started,
                generation: ctx.snapshot.generation,
                metrics: &metrics,
                embeddings: ext
                    .get::<Arc<crate::embeddings::EmbeddingsRequest>>()
                    .cloned(),
            };
            let is_stream = chat.is_stream();
            let Answer {
                mut response,
                mut adjusted,
                fallback_reason,
                fallbacks,
            } = upstream.serve(plan, chat).await?;
            if let Some(provider) = response.extensions_mut().remove::<ProviderAdjustments>() {
                adjusted.extend(provider.0);
            }
            if let Some(DroppedFields(fields)) = parts.extensions.get::<DroppedFields>() {
                adjusted.extend(fields.iter().map(|f| format!("dropped {f}")));
            }
            let served = response
                .extensions()
                .get::<Served>()
                .cloned()
                .ok_or_else(|| missing("served model"))?;
            if let (Some(reason), true) = (&fallback_reason, fallbacks > 0) {
                response.extensions_mut().insert(FellBack {
                    count: fallbacks,
                    reason: reason.as_str().into(),
                });
            }
            if is_stream {
                stream_span(&mut response, &served);
            }
            let served = served.model;

            let headers = response.headers_mut();
            let mut set = |name: &'static str, value: Option<HeaderValue>| {
                if let Some(v) = value {
                    headers.insert(HeaderName::from_static(name), v);
                }
            };
            set(
                "x-deliberate-tier",
                Some(HeaderValue::from_static(served.tier.as_str())),
            );
            set("x-deliberate-model", header_value(&served.name));
            let reason = fallback_reason.as_deref().unwrap_or(&decision.reason);
            set("x-deliberate-reason", header_value(reason));
            // An explicit choice is certain: 0 for fast, 1 for reasoning.
            let score = decision.score.unwrap_or(match decision.tier {
                crate::classify::Tier::Fast => 0.0,
                crate::classify::Tier::Reasoning => 1.0,
            });
            set("x-deliberate-score", header_value(&format!("{score:.3}")));
            if !adjusted.is_empty() {
                set("x-deliberate-adjusted", header_value(&adjusted.join(", ")));
            }
            Ok(response)
        })
    }
}

/// A span from a stream's head to its end (traces only: nothing is done when it is off).
fn stream_span(response: &mut Response<Body>, served: &Served) {
    let span = tracing::debug_span!(
        "stream",
        model = &*served.model.name,
        data_events = tracing::field::Empty,
        end = tracing::field::Empty
    );
    if span.is_disabled() {
        return;
    }
    let call = served.call.clone();
    OnEnd::of(response).push(move |ended| {
        span.record("data_events", call.data_events());
        let end = match (call.failure(), ended.end) {
            (Some(kind), _) => kind.0,
            (None, BodyEnd::Complete) => "complete",
            (None, BodyEnd::Error) => "body_error",
            (None, BodyEnd::Dropped) => "client_disconnected",
        };
        span.record("end", end);
    });
}
