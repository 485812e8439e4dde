//! Bounded body read and parse, once: a body over the limit gets 413 (early, from
//! `Content-Length`, or while reading), bad JSON or a bad `messages` gets 400 naming the
//! field. Downstream services receive `Request<ChatRequest>` and never touch bytes again.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::{Body, BoxError};
use crate::error::GatewayError;

#[derive(Clone)]
pub struct ParseBodyLayer {
    limit_bytes: usize,
}

impl ParseBodyLayer {
    pub fn new(limit_bytes: usize) -> Self {
        ParseBodyLayer { limit_bytes }
    }
}

impl<S> Layer<S> for ParseBodyLayer {
    type Service = ParseBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ParseBody {
            inner,
            limit_bytes: self.limit_bytes,
        }
    }
}

#[derive(Clone)]
pub struct ParseBody<S> {
    inner: S,
    limit_bytes: usize,
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
        let limit = self.limit_bytes;
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
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
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
            let chat = ChatRequest::parse(&bytes)?;
            inner.call(Request::from_parts(parts, chat)).await
        })
    }
}
