//! Error-to-response: below this layer services fail with `GatewayError`; above it the
//! stack is infallible and every failure is an OpenAI-shaped response with its status.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::Body;
use crate::error::GatewayError;

#[derive(Debug, Clone, Default)]
pub struct ErrorResponseLayer;

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ErrorResponse<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ErrorResponse<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = GatewayError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // Our services are always ready; log if that ever changes.
                tracing::error!(error = %e, "service failed readiness");
                Poll::Ready(Ok(()))
            }
            other => other.map(|_| Ok(())),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move { Ok(future.await.unwrap_or_else(GatewayError::respond)) })
    }
}
