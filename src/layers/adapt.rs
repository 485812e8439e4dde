//! Endpoint response adapter: turns the chat answer into the answer of the endpoint the
//! request came in through (`endpoints::ResponseAdapter`): the Responses JSON, or its typed
//! SSE events as a body wrapper (frame by frame, never buffered).
//!
//! Sits below the cache, so a hit replays the endpoint's own bytes (the cache keys by
//! endpoint), and below the metrics layer's `ObservedBody`, so first byte and outcome are
//! observed on what the client gets. A chat request passes through untouched.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::Body;
use crate::endpoints::ResponseAdapter;
use crate::error::GatewayError;

#[derive(Debug, Clone, Default)]
pub struct AdaptResponseLayer;

impl<S> Layer<S> for AdaptResponseLayer {
    type Service = AdaptResponse<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdaptResponse { inner }
    }
}

#[derive(Debug, Clone)]
pub struct AdaptResponse<S> {
    inner: S,
}

impl<S> Service<Request<ChatRequest>> for AdaptResponse<S>
where
    S: Service<
            Request<ChatRequest>,
            Response = Response<Body>,
            Error = GatewayError,
            Future = BoxFuture<Result<Response<Body>, GatewayError>>,
        > + Send
        + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let adapter = match ResponseAdapter::for_request(request.extensions()) {
            Ok(adapter) => adapter,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let future = self.inner.call(request);
        if let ResponseAdapter::Identity = adapter {
            // A chat answer is already in its endpoint's shape: its own future, not a
            // second box around it (the answer's future is kilobytes, copied on boxing).
            return future;
        }
        Box::pin(async move {
            let response = future.await?;
            adapter.adapt(response).await
        })
    }
}
