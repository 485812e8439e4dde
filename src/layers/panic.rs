//! A bug in any layer becomes a 500 with an OpenAI-shaped body, and the connection survives.
//!
//! Our own rather than tower-http's `CatchPanicLayer`, which boxes every response body twice
//! more: a cost paid on every streamed chunk. Here the body passes through untouched.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::Body;
use crate::error::GatewayError;

#[derive(Debug, Clone, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

fn panic_response() -> Response<Body> {
    tracing::error!("a request handler panicked");
    GatewayError::Internal("the gateway hit a bug handling this request".into()).into_response()
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
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
        // A panic in `call` itself (before any future exists) is caught too.
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => future,
            Err(_) => return Box::pin(async { Ok(panic_response()) }),
        };
        Box::pin(async move {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Ok(panic_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn status_and_body<S>(service: S) -> (u16, serde_json::Value)
    where
        S: Service<Request<()>, Response = Response<Body>, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let response = CatchPanicLayer
            .layer(service)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_panic_in_the_future_or_in_call_is_a_500_with_an_openai_body() {
        let in_future = tower::service_fn(|_: Request<()>| async {
            if true {
                panic!("bug");
            }
            Ok::<Response<Body>, Infallible>(Response::new(crate::body::empty()))
        });
        let (status, body) = status_and_body(in_future).await;
        assert_eq!(status, 500);
        assert_eq!(body["error"]["type"], "server_error");

        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<()>> for PanicsInCall {
            type Response = Response<Body>;
            type Error = Infallible;
            type Future = BoxFuture<Result<Response<Body>, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                panic!("bug in call")
            }
        }
        assert_eq!(status_and_body(PanicsInCall).await.0, 500);
    }
}
