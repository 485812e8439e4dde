//! One tracing span per request, carrying its id, method and path, entered while the request
//! is handled (every log line of the request path is in it). Also owns the client's W3C trace
//! context: a valid `traceparent` becomes the span's parent when traces are exported, and a
//! `ClientTrace` request extension for the access log and the upstream call.
//! (The access log keeps the span open until the response body ends.)
//!
//! Not tower-http's `TraceLayer`: that one also enters the span on every poll of the response
//! body, a cost paid per streamed chunk for events we do not emit. A stream's end is recorded
//! by the metrics layer instead.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::BoxFuture;
use crate::facts::RequestCtx;
use crate::telemetry::{self, ClientTrace};

#[derive(Debug, Clone, Default)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestSpan { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestSpan<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestSpan<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Disabled at the configured level, this is a no-op span and no formatting happens.
        let span = tracing::info_span!(
            "request",
            id = tracing::field::Empty,
            method = %request.method(),
            path = request.uri().path()
        );
        if !span.is_disabled() {
            if let Some(id) = request
                .extensions()
                .get::<RequestCtx>()
                .and_then(|ctx| ctx.id.0.to_str().ok())
            {
                span.record("id", id);
            }
        }
        if let Some(client) = ClientTrace::from_headers(request.headers()) {
            telemetry::adopt(&span, Some(&client));
            request.extensions_mut().insert(client);
        }
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(future.instrument(span))
    }
}
