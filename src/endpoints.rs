//! The API's endpoints, behind tenant auth: routing by path, `/v1/models`, and the
//! innermost chat completions service that adapts the request and calls the provider.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use serde_json::json;
use tokio::time::Instant;
use tower::Service;

use crate::admission::RequestDeadline;
use crate::api::ChatRequest;
use crate::body::{full, Body};
use crate::config::Model;
use crate::error::GatewayError;
use crate::layers::request_id::RequestId;
use crate::layers::tenant::TenantCtx;
use crate::layers::BoxFuture;
use crate::metrics::{Metrics, RequestLabels};
use crate::policy::Decision;
use crate::upstream::{translate, ProviderAdjustments, RouteRequest, Upstream};

/// Dispatches by method and path; `chat` is the chat completions stack.
#[derive(Clone)]
pub struct Router<C> {
    chat: C,
}

impl<C> Router<C> {
    pub fn new(chat: C) -> Self {
        Router { chat }
    }
}

impl<C, B> Service<Request<B>> for Router<C>
where
    C: Service<Request<B>, Response = Response<Body>, Error = GatewayError> + Send + 'static,
    C::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.chat.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().trim_end_matches('/');
        let method = request.method();
        let not_allowed = |allow| GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allow,
        };
        let result = match path {
            "/v1/chat/completions" if method == Method::POST => {
                return Box::pin(self.chat.call(request))
            }
            "/v1/chat/completions" => Err(not_allowed("POST")),
            "/v1/models" if method == Method::GET => list_models(&request),
            p if p.starts_with("/v1/models/") && method == Method::GET => {
                get_model(&request, &p["/v1/models/".len()..])
            }
            "/v1/models" => Err(not_allowed("GET")),
            _ => Err(GatewayError::UnknownEndpoint {
                method: method.to_string(),
                path: path.chars().take(200).collect(),
            }),
        };
        Box::pin(async move { result })
    }
}

fn tenant_ctx<B>(request: &Request<B>) -> Result<&TenantCtx, GatewayError> {
    request
        .extensions()
        .get::<TenantCtx>()
        .ok_or_else(|| GatewayError::Internal("tenant context missing".into()))
}

/// Model ids the tenant may use: the virtual models first, then its concrete models.
fn model_ids(ctx: &TenantCtx) -> impl Iterator<Item = (&str, &str)> {
    ["auto", "fast", "reasoning"]
        .into_iter()
        .map(|id| (id, "deliberate"))
        .chain(
            ctx.tenant
                .allowed_models
                .iter()
                .map(|m| (&*m.name, &*m.provider.name)),
        )
}

fn model_object(id: &str, owner: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn list_models<B>(request: &Request<B>) -> Result<Response<Body>, GatewayError> {
    let ctx = tenant_ctx(request)?;
    let data: Vec<_> = model_ids(ctx)
        .map(|(id, owner)| model_object(id, owner))
        .collect();
    Ok(json_response(&json!({"object": "list", "data": data})))
}

fn get_model<B>(request: &Request<B>, id: &str) -> Result<Response<Body>, GatewayError> {
    let ctx = tenant_ctx(request)?;
    model_ids(ctx)
        .find(|(candidate, _)| *candidate == id)
        .map(|(id, owner)| json_response(&model_object(id, owner)))
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: id.chars().take(200).collect(),
        })
}

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
            let (parts, mut chat) = request.into_parts();
            let missing = |what: &str| GatewayError::Internal(format!("{what} missing"));
            let ctx = parts
                .extensions
                .get::<TenantCtx>()
                .ok_or_else(|| missing("tenant context"))?;
            let decision = parts
                .extensions
                .get::<Decision>()
                .ok_or_else(|| missing("decision"))?;
            let labels = parts
                .extensions
                .get::<Arc<RequestLabels>>()
                .ok_or_else(|| missing("labels"))?;
            let request_id = parts
                .extensions
                .get::<RequestId>()
                .ok_or_else(|| missing("request id"))?;

            // The client's body before adaptation, kept only when a fallback may need it
            // (each model gets parameters adapted from what the client sent).
            let original = (!decision.fallbacks.is_empty()).then(|| chat.clone());
            let adjusted = translate::adapt_request(&mut chat.body, &decision.model)?;
            translate::request_stream_usage(&mut chat, &decision.model);
            let mut timeouts = *ctx.snapshot.timeouts(decision.tier);
            if let Some(RequestDeadline(d)) = parts.extensions.get::<RequestDeadline>() {
                // The client's deadline is this request's own total timeout.
                timeouts.total = timeouts.total.min(*d);
                timeouts.first_token = timeouts.first_token.min(timeouts.total);
            }
            let route = |model: &Arc<Model>| RouteRequest {
                model: model.clone(),
                tier: model.tier,
                // One deadline for the whole request, fallbacks included.
                timeouts,
                resilience: ctx.snapshot.resilience,
                labels: labels.clone(),
                metrics: metrics.clone(),
                request_id: request_id.clone(),
                generation: ctx.snapshot.generation,
            };
            let mut result = upstream.route(&route(&decision.model), chat).await;
            let (mut served, mut adjusted, mut fallback_reason) = (&decision.model, adjusted, None);
            let deadline = crate::body::relay::deadline_after(labels.started, timeouts.total);
            for next in &decision.fallbacks {
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
                metrics
                    .fallbacks
                    .with_label_values(&[&ctx.tenant.name, &decision.model.name, &next.name])
                    .inc();
                fallback_reason.get_or_insert_with(|| {
                    format!(
                        "fallback: {} failed ({})",
                        decision.model.name, first.summary
                    )
                });
                tracing::info!(from = &*served.name, to = &*next.name, "falling back");
                served = next;
                adjusted = next_adjusted;
                result = upstream.route(&route(next), body).await;
            }
            let mut response = result.map_err(|failure| failure.error)?;
            if let Some(provider) = response.extensions_mut().remove::<ProviderAdjustments>() {
                adjusted.extend(provider.0);
            }

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
