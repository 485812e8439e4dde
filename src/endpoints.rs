//! The API's endpoints, behind tenant auth: routing by path, `/v1/models`, and the
//! innermost chat completions service that adapts the request and calls the provider.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use serde_json::json;
use tower::Service;

use crate::api::ChatRequest;
use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::facts::{RequestCtx, Served};
use crate::layers::tenant::TenantCtx;
use crate::layers::BoxFuture;
use crate::metrics::Metrics;
use crate::policy::admission::RequestDeadline;
use crate::policy::Decision;
use crate::upstream::{Answer, ProviderAdjustments, ServePlan, Upstream};

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
                started: request.started,
                generation: ctx.snapshot.generation,
                metrics: &metrics,
            };
            let Answer {
                mut response,
                mut adjusted,
                fallback_reason,
            } = upstream.serve(plan, chat).await?;
            if let Some(provider) = response.extensions_mut().remove::<ProviderAdjustments>() {
                adjusted.extend(provider.0);
            }
            let served = response
                .extensions()
                .get::<Served>()
                .map(|s| s.model.clone())
                .ok_or_else(|| missing("served model"))?;

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
