//! Bounded body read and parse, once: a body over the limit gets 413 (early, from
//! `Content-Length`, or while reading), one that does not arrive within the body timeout
//! gets 408, bad JSON or a bad `messages` gets 400 naming the field. The body is parsed in
//! the shape of the request's `Endpoint` and translated to the internal chat request
//! (`endpoints::parse_request`). Downstream services receive `Request<ChatRequest>` and
//! never touch bytes again.
//!
//! Memory: a body may become a tree only within the shape limits (nesting depth, values per
//! body limit, `messages` count), checked on the bytes before the tree is built (see
//! `json_shape.rs`), so a request costs a small multiple of the body limit, not of the
//! body's element count.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

use super::json_shape;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::{Body, BoxError};
use crate::config::BodyLimits;
use crate::endpoints::{self, Endpoint};
use crate::error::GatewayError;

#[derive(Clone)]
pub struct ParseBodyLayer {
    limits: BodyLimits,
    read_timeout: Duration,
}

impl ParseBodyLayer {
    pub fn new(limits: BodyLimits, read_timeout: Duration) -> Self {
        ParseBodyLayer {
            limits,
            read_timeout,
        }
    }
}

impl<S> Layer<S> for ParseBodyLayer {
    type Service = ParseBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ParseBody {
            inner,
            limits: self.limits,
            read_timeout: self.read_timeout,
        }
    }
}

#[derive(Clone)]
pub struct ParseBody<S> {
    inner: S,
    limits: BodyLimits,
    read_timeout: Duration,
}

impl<S, B> Service<Request<B>> for ParseBody<S>
where
    S: Service<Request<ChatRequest>, Response = Response<Body>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limits = self.limits;
        let limit = limits.max_bytes;
        let read_timeout = self.read_timeout;
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let declared = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(GatewayError::PayloadTooLarge { limit_bytes: limit });
            }
            let (mut parts, body) = request.into_parts();
            let endpoint = *parts
                .extensions
                .get::<Endpoint>()
                .ok_or_else(|| GatewayError::Internal("endpoint missing".into()))?;
            // A client that stalls mid-body is cut here: it holds nothing else meanwhile (the
            // in-flight permit is taken below this layer).
            let read = tokio::time::timeout(read_timeout, Limited::new(body, limit).collect());
            let Ok(read) = read.await else {
                return Err(GatewayError::BodyTimeout {
                    after_ms: u64::try_from(read_timeout.as_millis()).unwrap_or(u64::MAX),
                });
            };
            let bytes = match read {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(GatewayError::PayloadTooLarge { limit_bytes: limit })
                }
                Err(e) => {
                    return Err(GatewayError::invalid(
                        format!("Could not read the request body: {e}"),
                        None,
                    ))
                }
            };
            check_shape(&bytes, &limits)?;
            let chat = endpoints::parse_request(endpoint, &bytes, &mut parts.extensions)?;
            drop(bytes);
            if chat.messages().len() > limits.max_messages {
                return Err(GatewayError::invalid(
                    format!(
                        "`messages` has {} entries; this gateway accepts at most {}.",
                        chat.messages().len(),
                        limits.max_messages
                    ),
                    Some("messages".to_string()),
                ));
            }
            inner.call(Request::from_parts(parts, chat)).await
        })
    }
}

/// Refuses a body whose tree would be too deep or too large, before building it.
fn check_shape(bytes: &[u8], limits: &BodyLimits) -> Result<(), GatewayError> {
    let shape = json_shape::scan(bytes);
    if shape.depth > limits.max_json_depth {
        return Err(GatewayError::invalid(
            format!(
                "Request body nests JSON {} levels deep; this gateway accepts at most {}.",
                shape.depth, limits.max_json_depth
            ),
            None,
        ));
    }
    let budget = json_shape::value_budget(limits.max_bytes);
    if shape.values > budget {
        return Err(GatewayError::invalid(
            format!(
                "Request body holds about {} JSON values; this gateway accepts at most {budget}.",
                shape.values
            ),
            None,
        ));
    }
    Ok(())
}
