//! Error bodies in the shape of the endpoint's own API.
//!
//! Every error is built OpenAI-shaped (`GatewayError::into_response`), by whichever layer
//! refused the request. For endpoints whose clients expect another shape (`ErrorShape` of
//! the path's `Endpoint`), this layer re-renders error responses on their way out. It sits
//! above tenant auth, so a 401 is converted too, and works from the path alone (the router's
//! `Endpoint` fact is not there yet for a request refused above it). Status, headers and
//! response facts are kept; only the body changes. Error bodies are small and whole (never
//! a stream): read with a cap, passed on unchanged if they are not an OpenAI error.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::{full, Body};
use crate::endpoints::{endpoint_of, Endpoint};

/// Larger than any error body the gateway writes.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The shape of an endpoint's error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error":{"message","type","param","code"}}`: what the gateway builds.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

impl ErrorShape {
    pub fn of(endpoint: Endpoint) -> ErrorShape {
        match endpoint {
            Endpoint::Messages | Endpoint::CountTokens => ErrorShape::Anthropic,
            Endpoint::Chat | Endpoint::Responses | Endpoint::Embeddings => ErrorShape::OpenAi,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ErrorShapeLayer;

impl<S> Layer<S> for ErrorShapeLayer {
    type Service = ShapeErrors<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ShapeErrors { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ShapeErrors<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ShapeErrors<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shape = endpoint_of(request.uri().path()).map_or(ErrorShape::OpenAi, ErrorShape::of);
        let future = self.inner.call(request);
        if shape == ErrorShape::OpenAi {
            return Box::pin(future);
        }
        Box::pin(async move {
            let response = future.await?;
            let status = response.status();
            if !(status.is_client_error() || status.is_server_error()) {
                return Ok(response);
            }
            Ok(reshape(response, shape).await)
        })
    }
}

async fn reshape(response: Response<Body>, shape: ErrorShape) -> Response<Body> {
    // The gateway's error bodies are whole, with an exact size; anything else (a body of
    // unknown or large size) is not one of them and passes unchanged.
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_ERROR_BODY_BYTES as u64);
    if !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, full(Bytes::new()));
    };
    let bytes = collected.to_bytes();
    let rendered = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| render(&v, parts.status, shape));
    let Some(rendered) = rendered else {
        return Response::from_parts(parts, full(bytes));
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(rendered))
}

/// An OpenAI-shaped error in `shape`; `None` if `openai` is not an OpenAI error.
fn render(openai: &Value, status: StatusCode, shape: ErrorShape) -> Option<Bytes> {
    let message = openai.get("error")?.get("message")?.as_str()?;
    let value = match shape {
        ErrorShape::OpenAi => return None,
        ErrorShape::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_type(status), "message": message},
        }),
    };
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// Anthropic's error type for a status (its documented mapping).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openai_error_renders_in_anthropic_shape_by_status() {
        let openai = json!({"error": {"message": "bad key", "type": "authentication_error", "param": null, "code": "invalid_api_key"}});
        let out = render(&openai, StatusCode::UNAUTHORIZED, ErrorShape::Anthropic).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "bad key"}})
        );
        assert_eq!(
            anthropic_type(StatusCode::TOO_MANY_REQUESTS),
            "rate_limit_error"
        );
        assert_eq!(anthropic_type(StatusCode::BAD_GATEWAY), "api_error");
        assert_eq!(
            anthropic_type(StatusCode::METHOD_NOT_ALLOWED),
            "invalid_request_error"
        );
    }

    #[test]
    fn a_body_that_is_not_an_openai_error_is_left_alone() {
        assert!(render(
            &json!({"x": 1}),
            StatusCode::BAD_REQUEST,
            ErrorShape::Anthropic
        )
        .is_none());
    }
}
