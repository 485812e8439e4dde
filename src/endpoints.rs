//! The API's endpoints, behind tenant auth: routing by path, `/v1/models`, and the
//! innermost chat completions service that adapts the request and calls the provider.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use serde_json::json;
use tower::Service;

use crate::admission::RequestDeadline;
use crate::api::ChatRequest;
use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::layers::request_id::RequestId;
use crate::layers::tenant::TenantCtx;
use crate::layers::BoxFuture;
use crate::metrics::{Metrics, RequestLabels, RequestRecorder};
use crate::policy::Decision;
use crate::upstream::{translate, CallContext, ProviderAdjustments, Upstream};

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

            let adjusted = translate::adapt_request(&mut chat.body, &decision.model)?;
            translate::request_stream_usage(&mut chat, &decision.model);
            let mut timeouts = *ctx.snapshot.timeouts(decision.tier);
            if let Some(RequestDeadline(d)) = parts.extensions.get::<RequestDeadline>() {
                // The client's deadline is this request's own total timeout.
                timeouts.total = timeouts.total.min(*d);
                timeouts.first_token = timeouts.first_token.min(timeouts.total);
            }
            let call = CallContext {
                model: decision.model.clone(),
                tier: decision.tier,
                timeouts,
                request_started: labels.started,
                recorder: Arc::new(RequestRecorder::new(
                    metrics,
                    labels.clone(),
                    decision.model.provider.name.clone(),
                )),
                request_id: request_id.0.clone(),
            };
            let mut response = upstream.call(call, chat).await?;
            let mut adjusted = adjusted;
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
                Some(HeaderValue::from_static(decision.tier.as_str())),
            );
            set("x-deliberate-model", header_value(&decision.model.name));
            set("x-deliberate-reason", header_value(&decision.reason));
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
