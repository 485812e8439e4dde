//! The request path: the ONLY place that decides the order of the layers.
//!
//! Outermost first, each with the reason for its place:
//!
//! 1. catch panic: a bug in any layer becomes a 500 with an OpenAI-shaped body, and the
//!    connection survives.
//! 2. request id: first, so every later layer, log line and error has it (`RequestCtx`).
//! 3. trace span: one span per request, carrying the request id, entered while it is handled.
//! 4. metrics: wraps every response body once (`ObservedBody`), which runs the end-of-body
//!    work the layers below left (`OnEnd`) and then counts the request by the facts on its
//!    response (`TenantName`, `Routed`, `Served`, `ErrorKind`); records when the body ends
//!    (end of stream or client gone).
//! 5. tenant auth: 401 before reading the body; pins the config snapshot; puts the tenant on
//!    every response of an authenticated request, errors included.
//! 6. error response: below it everything fails with `GatewayError`; above it nothing fails.
//!    (`decide` turns the failures of routed requests into responses itself, so that they
//!    keep the tier and model they were routed to.)
//! 7. router: `/v1/models` is answered here; chat goes on down:
//! 8. parse body: bounded read (413), body deadline (408), shape limits and one JSON parse
//!    (400) for the whole path.
//! 9. in-flight limit: sheds load (503) before any work; the permit lives until the response
//!    body ends. Below the body read, so clients that are slow to send (or stall on purpose)
//!    cannot take every permit: they are bounded by the connection cap and body timeout.
//! 10. rate limit: requests/tokens per minute (429) before any routing work; reconciles
//!     the token reservation when the body ends.
//! 11. decide: tier and model from explicit signals and the classifier, then the tenant's
//!     policies (stickiness, budget, deadline, shadow) and the budget reservation; settles
//!     the cost when the body ends.
//! 12. cache: below decide because the key needs the resolved model (and the tenant); a hit
//!     answers here and `decide` bills it nothing; misses are stored when their body ends.
//! 13. chat service: parameter translation, provider call, streaming relay, headers.

use std::convert::Infallible;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::body::Body;
use crate::endpoints::{ChatCompletions, Router};
use crate::layers::{
    body::ParseBodyLayer, cache::CacheLayer, decide::DecideLayer, error::ErrorResponseLayer,
    in_flight::InFlightLimitLayer, metrics::MetricsLayer, panic::CatchPanicLayer,
    rate_limit::RateLimitLayer, request_id::RequestIdLayer, span::RequestSpanLayer,
    tenant::TenantAuthLayer,
};
use crate::state::AppState;

/// The API service for one listener; cloned per connection.
pub type ApiService =
    BoxCloneSyncService<Request<hyper::body::Incoming>, Response<Body>, Infallible>;

pub fn api_service(state: &AppState) -> ApiService {
    let settings = state.live.load().server.clone();
    let chat = ServiceBuilder::new()
        .layer(ParseBodyLayer::new(
            settings.body_limits,
            settings.connections.body_read_timeout,
        ))
        // After the body: a client still sending (or stalling) holds no permit.
        .layer(InFlightLimitLayer::new(settings.max_in_flight_requests))
        .layer(RateLimitLayer::new(
            state.policy.limits.clone(),
            state.metrics.clone(),
        ))
        .layer(DecideLayer::new(
            state.classifier.clone(),
            state.metrics.clone(),
            state.policy.clone(),
        ))
        .layer(CacheLayer::new(
            state.cache.clone(),
            state.policy.shared.clone(),
            state.metrics.clone(),
        ))
        .service(ChatCompletions::new(
            state.upstream.clone(),
            state.metrics.clone(),
        ));

    let service = ServiceBuilder::new()
        .layer(CatchPanicLayer)
        .layer(RequestIdLayer)
        .layer(RequestSpanLayer)
        .layer(MetricsLayer::new(state.metrics.clone()))
        .layer(TenantAuthLayer::new(state.live.clone()))
        .layer(ErrorResponseLayer)
        .service(Router::new(chat));
    BoxCloneSyncService::new(service)
}
