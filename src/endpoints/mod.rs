//! The API's endpoints, behind tenant auth: routing by path, and what each endpoint adds to
//! the one chat stack.
//!
//! Every model endpoint (`Endpoint`) goes down the SAME stack (parse body -> in-flight ->
//! rate limit -> decide -> cache -> response adapter -> chat service), so auth, limits,
//! budgets, the cache and metrics apply to each alike. An endpoint differs only in three
//! hooks, each a `match` on `Endpoint` here:
//! - `parse_request`: its request body -> the internal `ChatRequest` (classification,
//!   policies and providers only ever see a chat request); what the way back needs is kept
//!   as a typed request extension;
//! - `ResponseAdapter`: the chat answer -> its own JSON, or its own typed SSE events
//!   (frame by frame, one final error event on a mid-stream failure);
//! - `clean_answer` / `replay` / `ErrorShape`: when its answer may be cached, what a cache
//!   hit sends for it, and the shape of its error bodies (`layers::error_shape`).
//!
//! Paths are accepted with and without the `/v1` prefix (clients configured with the bare
//! host). `/models` is answered here; `/messages/count_tokens` (`Endpoint::CountTokens`)
//! goes down its own short stack, since no model answers it (`messages::count_tokens`);
//! `GET /health` is answered above tenant auth (`layers::health`).

pub mod answer;
pub mod catalog;
pub mod chat;
pub mod models;
pub mod responses;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Extensions, Method, Request, Response};
use tower::{Service, ServiceExt};

pub use self::chat::ChatCompletions;
use crate::api::ChatRequest;
use crate::body::Body;
use crate::error::GatewayError;
pub use crate::facts::Endpoint;
use crate::layers::BoxFuture;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Model(Endpoint),
    CountTokens,
    Models,
    ModelById(String),
    Unknown,
}

/// `path` without a trailing `/` and without the `/v1` prefix.
fn unversioned(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    match path.strip_prefix("/v1") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    }
}

fn route(path: &str) -> Route {
    match unversioned(path) {
        "/chat/completions" => Route::Model(Endpoint::Chat),
        "/responses" => Route::Model(Endpoint::Responses),
        "/messages" => Route::Model(Endpoint::Messages),
        "/embeddings" => Route::Model(Endpoint::Embeddings),
        "/messages/count_tokens" => Route::CountTokens,
        "/models" => Route::Models,
        p => match p.strip_prefix("/models/") {
            Some(id) => Route::ModelById(id.chars().take(200).collect()),
            None => Route::Unknown,
        },
    }
}

/// The endpoint a path names, if any (with or without `/v1`): for layers above the router
/// that must know it from the path alone (the error shape of a 401).
pub fn endpoint_of(path: &str) -> Option<Endpoint> {
    match route(path) {
        Route::Model(endpoint) => Some(endpoint),
        Route::CountTokens => Some(Endpoint::CountTokens),
        _ => None,
    }
}

/// The endpoints whose requests go down the chat stack (`count_tokens` has its own).
fn served(endpoint: Endpoint) -> bool {
    match endpoint {
        Endpoint::Chat | Endpoint::Responses | Endpoint::Messages | Endpoint::Embeddings => true,
        Endpoint::CountTokens => false,
    }
}

/// Request extension: fields of the client's request that the translation to a chat
/// request dropped; reported in `x-deliberate-adjusted` like the model's own adjustments.
#[derive(Debug, Clone, Default)]
pub struct DroppedFields(pub Vec<String>);

/// The endpoint's request body as the internal chat request. What the response side needs
/// (e.g. the Responses `instructions` and `text.format`) goes into `extensions`.
pub fn parse_request(
    endpoint: Endpoint,
    bytes: &[u8],
    extensions: &mut Extensions,
) -> Result<ChatRequest, GatewayError> {
    match endpoint {
        Endpoint::Chat => ChatRequest::parse(bytes),
        Endpoint::Responses => responses::parse(bytes, extensions),
        Endpoint::Messages => crate::messages::endpoint::parse(bytes, extensions),
        Endpoint::Embeddings => crate::embeddings::parse_request(bytes, extensions),
        Endpoint::CountTokens => crate::messages::count_tokens::parse(bytes, extensions),
    }
}

/// Turns the chat answer into the endpoint's answer; made from the request's extensions
/// before it goes down, applied to the response on its way back.
pub enum ResponseAdapter {
    /// The answer is already in the endpoint's shape.
    Identity,
    Responses(Arc<responses::Echo>),
    Messages(Arc<crate::messages::MessagesContext>),
}

impl ResponseAdapter {
    pub fn for_request(extensions: &Extensions) -> Result<ResponseAdapter, GatewayError> {
        let endpoint = extensions
            .get::<Endpoint>()
            .ok_or_else(|| GatewayError::Internal("endpoint missing".into()))?;
        match endpoint {
            Endpoint::Chat => Ok(ResponseAdapter::Identity),
            Endpoint::Responses => extensions
                .get::<Arc<responses::Echo>>()
                .map(|echo| ResponseAdapter::Responses(echo.clone()))
                .ok_or_else(|| GatewayError::Internal("responses request missing".into())),
            Endpoint::Messages => extensions
                .get::<Arc<crate::messages::MessagesContext>>()
                .map(|context| ResponseAdapter::Messages(context.clone()))
                .ok_or_else(|| GatewayError::Internal("messages request missing".into())),
            // The provider answers in the embeddings shape already.
            Endpoint::Embeddings => Ok(ResponseAdapter::Identity),
            Endpoint::CountTokens => Err(GatewayError::Internal(
                "count_tokens has no chat answer to adapt".into(),
            )),
        }
    }

    /// A 200 answer in the endpoint's shape: JSON converted whole (it is in memory
    /// already), a stream wrapped frame by frame. Anything else passes unchanged.
    pub async fn adapt(self, response: Response<Body>) -> Result<Response<Body>, GatewayError> {
        match self {
            ResponseAdapter::Identity => Ok(response),
            ResponseAdapter::Responses(echo) => responses::adapt(echo, response).await,
            ResponseAdapter::Messages(context) => {
                crate::messages::endpoint::adapt(context, response).await
            }
        }
    }
}

/// True if a complete answer of `endpoint` may be stored in the cache: it is a success in
/// the endpoint's own shape (a stream ended cleanly, with no error event).
pub fn clean_answer(endpoint: Endpoint, stream: bool, bytes: &[u8]) -> bool {
    match (endpoint, stream) {
        (Endpoint::Chat, true) => crate::cache::clean_stream(bytes),
        (Endpoint::Chat, false) => serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("error").is_none()),
        (Endpoint::Responses, stream) => responses::clean_answer(stream, bytes),
        (Endpoint::Messages, stream) => crate::messages::endpoint::clean_answer(stream, bytes),
        (Endpoint::Embeddings, stream) => !stream && crate::embeddings::clean_answer(bytes),
        (Endpoint::CountTokens, _) => false,
    }
}

/// The bytes a cache hit of `endpoint` sends for its stored answer: a Responses answer gets
/// a fresh response id (`responses::replay`); the others replay as stored.
pub fn replay(endpoint: Endpoint, stream: bool, stored: &Bytes) -> Bytes {
    match endpoint {
        Endpoint::Responses => responses::with_fresh_id(stream, stored),
        Endpoint::Chat | Endpoint::Messages | Endpoint::Embeddings | Endpoint::CountTokens => {
            stored.clone()
        }
    }
}

/// Dispatches by method and path; `chat` is the stack every model endpoint goes down,
/// `count_tokens` the one of `messages/count_tokens` (body read and parse, then the count).
#[derive(Clone)]
pub struct Router<C, K> {
    chat: C,
    count_tokens: K,
}

impl<C, K> Router<C, K> {
    pub fn new(chat: C, count_tokens: K) -> Self {
        Router { chat, count_tokens }
    }
}

impl<C, K, B> Service<Request<B>> for Router<C, K>
where
    C: Service<Request<B>, Response = Response<Body>, Error = GatewayError> + Send + 'static,
    C::Future: Send + 'static,
    K: Service<Request<B>, Response = Response<Body>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    K::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.chat.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path().trim_end_matches('/').to_string();
        let method = request.method().clone();
        let not_allowed = |allow| GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.chars().take(200).collect(),
            allow,
        };
        let result = match route(&path) {
            Route::Model(endpoint) if served(endpoint) && method == Method::POST => {
                request.extensions_mut().insert(endpoint);
                return Box::pin(self.chat.call(request));
            }
            Route::Model(endpoint) if served(endpoint) => Err(not_allowed("POST")),
            Route::CountTokens if method == Method::POST => {
                request.extensions_mut().insert(Endpoint::CountTokens);
                // `poll_ready` readied the chat stack only: `oneshot` readies this one.
                return Box::pin(self.count_tokens.clone().oneshot(request));
            }
            Route::CountTokens => Err(not_allowed("POST")),
            Route::Models if method == Method::GET => models::list_models(&request),
            Route::ModelById(id) if method == Method::GET => models::get_model(&request, &id),
            Route::Models | Route::ModelById(_) => Err(not_allowed("GET")),
            Route::Model(_) | Route::Unknown => Err(GatewayError::UnknownEndpoint {
                method: method.to_string(),
                path: path.chars().take(200).collect(),
            }),
        };
        Box::pin(async move { result })
    }
}

/// Bytes of one named SSE event (`event:` line, then `data:`).
pub fn sse_event(name: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len().saturating_add(name.len()).saturating_add(17));
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_with_and_without_v1() {
        for path in [
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/chat/completions/",
        ] {
            assert_eq!(route(path), Route::Model(Endpoint::Chat), "{path}");
        }
        assert_eq!(route("/responses"), Route::Model(Endpoint::Responses));
        assert_eq!(route("/models"), Route::Models);
        assert_eq!(route("/v1/messages/count_tokens"), Route::CountTokens);
        assert_eq!(route("/messages/count_tokens/"), Route::CountTokens);
        assert_eq!(route("/v1/models/a/b"), Route::ModelById("a/b".into()));
        assert_eq!(route("/v1"), Route::Unknown);
        assert_eq!(route("/v1x/chat/completions"), Route::Unknown);
        assert_eq!(route("/v2/chat/completions"), Route::Unknown);
    }

    #[test]
    fn the_endpoint_of_a_path_includes_count_tokens() {
        assert_eq!(
            endpoint_of("/v1/messages/count_tokens"),
            Some(Endpoint::CountTokens)
        );
        assert_eq!(endpoint_of("/messages"), Some(Endpoint::Messages));
        assert_eq!(endpoint_of("/v1/models"), None);
    }
}
