//! In-flight limit: at most N requests at once, counted until the response body ends
//! (a stream holds its permit for its whole life). Excess requests are shed at once with
//! 503 and `Retry-After` rather than queued: queueing hides overload and grows memory.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::observed::OnEnd;
use crate::body::Body;
use crate::error::GatewayError;

#[derive(Clone)]
pub struct InFlightLimitLayer {
    permits: Arc<Semaphore>,
}

impl InFlightLimitLayer {
    pub fn new(max: usize) -> Self {
        InFlightLimitLayer {
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> Service<Request<B>> for InFlightLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = GatewayError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Box::pin(async { Err(GatewayError::Overloaded) });
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            OnEnd::of(&mut response).push(move |_| drop(permit));
            Ok(response)
        })
    }
}
