//! The request path: the ONLY place that decides the order of the layers.
//!
//! Outermost first, each with the reason for its place:
//!
//! 1. catch panic: a bug in any layer becomes a 500 with an OpenAI-shaped body, and the
//!    connection survives.
//! 2. request id: first, so every later layer, log line and error has it (`RequestCtx`).
//! 3. health: `GET /health` for load balancers, before auth (no key) and not counted.
//! 4. trace span: one span per request, carrying the request id, entered while it is handled.
//! 5. metrics: wraps every response body once (`ObservedBody`), which runs the end-of-body
//!    work the layers below left (`OnEnd`) and then counts the request by the facts on its
//!    response (`TenantName`, `Routed`, `Served`, `ErrorKind`); records when the body ends
//!    (end of stream or client gone).
//! 6. access log: right below metrics, so it sees every response and its end-of-body hook
//!    runs after the settlement's; one line per request when its body ends.
//! 7. error shape: re-renders error bodies in the shape of the path's endpoint (Anthropic's
//!    on `/v1/messages`); above tenant auth so a 401 is converted too.
//! 8. tenant auth: 401 before reading the body; pins the config snapshot; puts the tenant on
//!    every response of an authenticated request, errors included.
//! 9. error response: below it everything fails with `GatewayError`; above it nothing fails.
//!    (`decide` turns the failures of routed requests into responses itself, so that they
//!    keep the tier and model they were routed to.)
//! 10. router: `/v1/models` is answered here; `/v1/messages/count_tokens` goes down its own
//!     short stack (the body read and the in-flight permits of 11 and 12, then the count:
//!     no model is called, nothing is reserved); every model endpoint (chat completions,
//!     responses, ...) goes on down the same stack with its `Endpoint` fact:
//! 11. parse body: bounded read (413), body deadline (408), shape limits and one JSON parse
//!     (400) for the whole path; the endpoint's request is translated to a chat request here.
//! 12. in-flight limit: sheds load (503) before any work; the permit lives until the response
//!     body ends. Below the body read, so clients that are slow to send (or stall on purpose)
//!     cannot take every permit: they are bounded by the connection cap and body timeout.
//! 13. rate limit: requests/tokens per minute (429) before any routing work; reconciles
//!     the token reservation when the body ends.
//! 14. decide: tier and model from explicit signals and the classifier, then the tenant's
//!     policies (stickiness, budget, deadline, shadow) and the budget reservation; settles
//!     the cost when the body ends.
//! 15. cache: below decide because the key needs the resolved model (and the tenant and
//!     endpoint); a hit answers here and `decide` bills it nothing; misses are stored when
//!     their body ends.
//! 16. response adapter: the chat answer back into the endpoint's shape (JSON or typed SSE
//!     events, frame by frame); below the cache so a hit replays the endpoint's own bytes.
//! 17. chat service: parameter translation, provider call, streaming relay, headers.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::api::ChatRequest;
use crate::body::Body;
use crate::endpoints::{ChatCompletions, Router};
use crate::error::GatewayError;
use crate::layers::{
    access_log::AccessLogLayer, adapt::AdaptResponseLayer, body::ParseBodyLayer, cache::CacheLayer,
    decide::DecideLayer, error::ErrorResponseLayer, error_shape::ErrorShapeLayer,
    health::HealthLayer, in_flight::InFlightLimitLayer, metrics::MetricsLayer,
    panic::CatchPanicLayer, rate_limit::RateLimitLayer, request_id::RequestIdLayer,
    span::RequestSpanLayer, tenant::TenantAuthLayer,
};
use crate::messages::count_tokens::CountTokens;
use crate::state::AppState;

/// The API service for one listener; cloned per connection.
pub type ApiService = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// The stack is boxed in parts (what a request goes through is unchanged): every layer's
/// `Service` bounds are proved over the types nested below it, and a stack nested too deep
/// makes that work explode at compile time. A box costs one allocation per request.
pub fn api_service(state: &AppState, shutdown: CancellationToken) -> ApiService {
    let settings = state.live.load().server.clone();
    let answer: BoxCloneSyncService<Request<ChatRequest>, Response<Body>, GatewayError> =
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(CacheLayer::new(
                    state.cache.clone(),
                    state.policy.shared.clone(),
                    state.metrics.clone(),
                ))
                .layer(AdaptResponseLayer)
                .service(ChatCompletions::new(
                    state.upstream.clone(),
                    state.metrics.clone(),
                )),
        );
    let parse_body =
        ParseBodyLayer::new(settings.body_limits, settings.connections.body_read_timeout);
    // One set of permits for both stacks below.
    let in_flight = InFlightLimitLayer::new(settings.max_in_flight_requests);
    let chat: BoxCloneSyncService<Request<Incoming>, Response<Body>, GatewayError> =
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(parse_body.clone())
                // After the body: a client still sending (or stalling) holds no permit.
                .layer(in_flight.clone())
                .layer(RateLimitLayer::new(
                    state.policy.limits.clone(),
                    state.metrics.clone(),
                ))
                .layer(DecideLayer::new(
                    state.classifier.clone(),
                    state.second_stage.clone(),
                    state.metrics.clone(),
                    state.policy.clone(),
                ))
                .service(answer),
        );
    // `messages/count_tokens`: the same body read and permits, then the count (no model).
    let count_tokens: BoxCloneSyncService<Request<Incoming>, Response<Body>, GatewayError> =
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(parse_body)
                .layer(in_flight)
                .service(CountTokens),
        );
    let routed: ApiService = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(TenantAuthLayer::new(state.live.clone()))
            .layer(ErrorResponseLayer)
            .service(Router::new(chat, count_tokens)),
    );
    let service = ServiceBuilder::new()
        .layer(CatchPanicLayer)
        .layer(RequestIdLayer)
        .layer(HealthLayer::new(shutdown))
        .layer(RequestSpanLayer)
        .layer(MetricsLayer::new(state.metrics.clone()))
        .layer(AccessLogLayer)
        .layer(ErrorShapeLayer)
        .service(routed);
    BoxCloneSyncService::new(service)
}
