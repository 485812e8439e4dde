//! Calling providers: one entry point, `Upstream::call`, for every provider kind.
//!
//! The caller hands over an adapted request and the per-tier timing; it gets back either an
//! error from before the first response byte (which the error layer turns into a proper
//! status), or a response whose body streams with the timing rules of `body::relay`.
//! The HTTP client (`client.rs`) is built once per tier (the connect timeout is per client);
//! the total and idle deadlines are the gateway's own, so a long stream is never cut by a
//! client-wide timeout.

pub mod client;
pub mod deployments;
mod embed;
pub mod providers;
pub mod redact;
mod route;
mod serve;
pub mod translate;

pub use providers::anthropic::ProviderAdjustments;
use providers::{anthropic, openai, simulated};
pub use route::{RouteFailure, RouteRequest};
pub use serve::{Answer, ServePlan};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use tokio::time::Instant;

use crate::api::ChatRequest;
use crate::body::relay::{
    deadline_after, millis, EventStream, PendingStream, RelaySource, SseRelay, StreamTiming,
};
use crate::body::{full, Body};
use crate::classify::Tier;
use crate::config::{Deployment, Model, Provider, ProviderKind, Snapshot, TierTimeouts};
use crate::error::{FailureKind, GatewayError, TimeoutKind};
use crate::record::CallRecorder;

/// Largest non-streaming upstream response we accept (a bound, not a typical size).
const MAX_UPSTREAM_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Largest single SSE event we accept from a provider.
const MAX_UPSTREAM_EVENT_BYTES: usize = 4 * 1024 * 1024;

pub struct Upstream {
    /// Tells this `Upstream`'s clients apart in each thread's `THREAD_CLIENTS`.
    id: u64,
    /// Connect timeouts of the fast and reasoning clients.
    connect: (Duration, Duration),
    /// TLS settings every thread's clients share (built here, at startup or reload).
    tls: Arc<rustls::ClientConfig>,
    /// Per-deployment latency, breakers and the retry budget; kept across config reloads.
    deployments: Arc<deployments::Registry>,
}

static NEXT_UPSTREAM_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Upstreams whose clients a thread keeps (a reload makes a new one; the oldest goes).
const MAX_THREAD_CLIENTS: usize = 4;

thread_local! {
    static THREAD_CLIENTS: std::cell::RefCell<Vec<(u64, (client::Client, client::Client))>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Everything one call needs besides the request itself.
#[derive(Clone)]
pub struct CallContext {
    pub model: Arc<Model>,
    /// The deployment this attempt goes to: its provider and upstream model name are used,
    /// never `model.provider`/`model.upstream_model`.
    pub deployment: Arc<Deployment>,
    pub tier: Tier,
    pub timeouts: TierTimeouts,
    pub request_started: Instant,
    pub recorder: Arc<CallRecorder>,
    pub request_id: crate::layers::request_id::RequestId,
    /// Set for a `/v1/embeddings` request: the call is `embed::call`, not a completion.
    pub embeddings: Option<Arc<crate::embeddings::EmbeddingsRequest>>,
    /// The client's W3C trace context (`telemetry::upstream_headers`).
    pub trace: Option<crate::telemetry::ClientTrace>,
}

impl CallContext {
    fn total_deadline(&self) -> Instant {
        deadline_after(self.request_started, self.timeouts.total)
    }

    fn first_token_deadline(&self) -> Instant {
        deadline_after(self.request_started, self.timeouts.first_token)
    }

    fn provider(&self) -> String {
        self.deployment.provider.name.to_string()
    }

    fn timeout(&self, which: TimeoutKind, after: Duration) -> GatewayError {
        GatewayError::UpstreamTimeout {
            provider: self.provider(),
            which,
            after_ms: millis(after),
        }
    }
}

impl Upstream {
    pub fn new(snapshot: &Snapshot) -> Upstream {
        Upstream {
            id: NEXT_UPSTREAM_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            connect: (
                snapshot.fast_timeouts.connect,
                snapshot.reasoning_timeouts.connect,
            ),
            tls: client::tls_config(),
            deployments: Arc::default(),
        }
    }

    /// A new `Upstream` for a reloaded snapshot (new connect timeouts) that keeps what this
    /// one learned about every deployment: latency, breakers, retry budget.
    pub fn rebuilt(&self, snapshot: &Snapshot) -> Upstream {
        Upstream {
            deployments: self.deployments.clone(),
            ..Upstream::new(snapshot)
        }
    }

    /// Deployment `id`'s breaker as a request under config `generation` would find it, and
    /// the times it opened (`None`: never used); read by the metrics scrape.
    pub fn deployment_health(
        &self,
        id: &str,
        generation: u64,
    ) -> Option<(deployments::Breaker, u64)> {
        self.deployments.health(id, generation)
    }

    /// This thread's client for `tier`: a connection's task runs on the thread that opened
    /// it, so a pool per thread keeps a request and its provider connection on one core
    /// (the API threads of `run_with_reload_on_threads`; on a multi-threaded runtime it is
    /// simply a pool per worker).
    fn client(&self, tier: Tier) -> client::Client {
        THREAD_CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            let index = match clients.iter().position(|(id, _)| *id == self.id) {
                Some(index) => index,
                None => {
                    if clients.len() >= MAX_THREAD_CLIENTS {
                        clients.remove(0);
                    }
                    let pair = (
                        client::Client::new(self.connect.0, &self.tls),
                        client::Client::new(self.connect.1, &self.tls),
                    );
                    clients.push((self.id, pair));
                    clients.len() - 1
                }
            };
            let (fast, reasoning) = &clients[index].1;
            match tier {
                Tier::Fast => fast.clone(),
                Tier::Reasoning => reasoning.clone(),
            }
        })
    }

    pub async fn call(
        &self,
        ctx: CallContext,
        request: &ChatRequest,
    ) -> Result<Response<Body>, GatewayError> {
        let stream = request.is_stream();
        let client = self.client(ctx.tier);
        if let Some(embeddings) = ctx.embeddings.clone() {
            let json = embed::call(&client, &ctx, &embeddings).await?;
            return Ok(finish_json(&ctx, json));
        }
        match (&ctx.deployment.provider.kind, stream) {
            (ProviderKind::Simulated { .. }, false) => {
                let json = simulated::complete(&ctx, request).await?;
                Ok(finish_json(&ctx, json))
            }
            (ProviderKind::Simulated { .. }, true) => {
                let events = simulated::stream(&ctx, request);
                Ok(stream_response(&ctx, RelaySource::Streaming(events)))
            }
            (ProviderKind::OpenAi, false) => {
                let json = openai::complete(&client, &ctx, request).await?;
                Ok(finish_json(&ctx, json))
            }
            (ProviderKind::OpenAi, true) => {
                let pending = openai::stream(client, &ctx, request);
                start_stream(&ctx, pending).await
            }
            (ProviderKind::Anthropic { .. }, false) => {
                let (json, dropped) = anthropic::complete(&client, &ctx, request).await?;
                let mut response = finish_json(&ctx, json);
                response.extensions_mut().insert(dropped);
                Ok(response)
            }
            (ProviderKind::Anthropic { .. }, true) => {
                let (pending, dropped) = anthropic::stream(client, &ctx, request)?;
                let mut response = start_stream(&ctx, pending).await?;
                response.extensions_mut().insert(dropped);
                Ok(response)
            }
        }
    }
}

/// A finished non-streaming completion: counts its usage and wraps it.
fn finish_json(ctx: &CallContext, json: Bytes) -> Response<Body> {
    ctx.recorder.stream_completed();
    let mut response = Response::new(full(json));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Waits for the provider's response head, but not forever: if it has not come by the time
/// the first keep-alive is due, the 200 goes out and the relay keeps the connection warm.
/// An error before that point keeps its own status (e.g. 401 from the provider -> 502) and
/// may still be retried, so it is not recorded as the request's outcome here (see `route`).
async fn start_stream(
    ctx: &CallContext,
    mut pending: PendingStream,
) -> Result<Response<Body>, GatewayError> {
    let keepalive_at = deadline_after(Instant::now(), ctx.timeouts.keepalive_interval);
    let first_token_at = ctx.first_token_deadline().min(ctx.total_deadline());
    tokio::select! {
        result = &mut pending => {
            let events = result?;
            Ok(stream_response(ctx, RelaySource::Streaming(events)))
        }
        _ = tokio::time::sleep_until(keepalive_at.min(first_token_at)) => {
            if Instant::now() >= first_token_at {
                let after = first_token_at.saturating_duration_since(ctx.request_started);
                return Err(ctx.timeout(TimeoutKind::FirstToken, after));
            }
            Ok(stream_response(ctx, RelaySource::Pending(pending)))
        }
    }
}

fn stream_response(ctx: &CallContext, source: RelaySource) -> Response<Body> {
    let timing = StreamTiming {
        first_token_deadline: ctx.first_token_deadline(),
        total_deadline: ctx.total_deadline(),
        idle_timeout: ctx.timeouts.idle,
        keepalive_interval: ctx.timeouts.keepalive_interval,
    };
    let relay = SseRelay::new(source, timing, ctx.recorder.clone());
    let mut response = Response::new(Body::new(relay));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The provider's auth header, or an error if its key variable is unset.
fn auth(provider: &Provider) -> Result<Option<(header::HeaderName, HeaderValue)>, GatewayError> {
    match (&provider.api_key, &provider.api_key_env) {
        (Some(key), _) => Ok(Some((provider.auth_header.clone(), key.clone()))),
        (None, Some(env)) => Err(GatewayError::ProviderKeyMissing {
            provider: provider.name.to_string(),
            env: env.clone(),
        }),
        // No key configured at all: a local server (vLLM, Ollama) that needs none.
        (None, None) => Ok(None),
    }
}

/// The provider's completion endpoint (parsed once, at config load).
fn url(provider: &Provider) -> Result<&reqwest::Url, GatewayError> {
    provider.endpoint.as_ref().ok_or_else(|| {
        GatewayError::Internal(format!("provider `{}` has no endpoint", provider.name))
    })
}

/// Maps a client failure before the response head.
fn send_error(ctx: &CallContext, e: client::Error) -> GatewayError {
    if e.is_timeout() {
        return ctx.timeout(TimeoutKind::Connect, ctx.timeouts.connect);
    }
    GatewayError::UpstreamUnavailable {
        provider: ctx.provider(),
        kind: failure_kind(&e),
        message: error_chain(&e),
    }
}

/// What a client error says failed.
fn failure_kind(e: &client::Error) -> FailureKind {
    if e.is_connect() {
        FailureKind::Connect
    } else if e.is_body() {
        FailureKind::Body
    } else {
        FailureKind::NoAnswer
    }
}

/// A readable, secret-free description of a client error (the URL is left out).
fn error_chain(e: &client::Error) -> String {
    let mut message = match failure_kind(e) {
        FailureKind::Connect => "connection failed",
        FailureKind::Body => "response body failed",
        _ => "request failed",
    }
    .to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Reads a whole (bounded) response body before the total deadline.
async fn read_body(ctx: &CallContext, response: client::Response) -> Result<Bytes, GatewayError> {
    use futures_util::StreamExt;
    let deadline = ctx.total_deadline();
    let read = async {
        let mut out = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| GatewayError::UpstreamUnavailable {
                provider: ctx.provider(),
                kind: FailureKind::Body,
                message: error_chain(&e),
            })?;
            if out.len().saturating_add(chunk.len()) > MAX_UPSTREAM_BODY_BYTES {
                return Err(GatewayError::UpstreamInvalid {
                    provider: ctx.provider(),
                    message: "response body too large".into(),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| ctx.timeout(TimeoutKind::Total, ctx.timeouts.total))?
}

/// A streaming request must be answered with `text/event-stream`: anything else (a JSON
/// body, an HTML error page) would be relayed to the client as if it were events. A response
/// without a content type is left to the SSE parser, which bounds what it buffers.
fn expect_event_stream(ctx: &CallContext, response: &client::Response) -> Result<(), GatewayError> {
    let Some(value) = response.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let mime = text.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("text/event-stream") {
        return Ok(());
    }
    let shown: String = mime.chars().filter(|c| !c.is_control()).take(80).collect();
    Err(GatewayError::UpstreamInvalid {
        provider: ctx.provider(),
        message: format!("a streaming request was answered with `{shown}`, not text/event-stream"),
    })
}

/// Turns a provider error status into a `GatewayError` with the provider's message.
/// Callers box this future: it runs only for error statuses, and inline (its body read
/// included) it would make every call's future, moved and copied whole, kilobytes larger.
async fn status_error(
    ctx: &CallContext,
    response: client::Response,
    message_of: fn(u16, &[u8]) -> String,
) -> GatewayError {
    let status = response.status().as_u16();
    let retry_after_secs = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after_secs);
    let body = read_body(ctx, response).await.unwrap_or_default();
    let secrets = redact::provider_secrets(&ctx.deployment.provider);
    let param = upstream_param(&body).map(|p| redact::redact(&p, &secrets));
    GatewayError::UpstreamStatus {
        provider: ctx.provider(),
        status,
        message: redact::redact(&message_of(status, &body), &secrets),
        param,
        retry_after_secs,
    }
}

/// OpenAI's `error.param` (which request field the provider objected to), kept short.
fn upstream_param(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let param = value.get("error")?.get("param")?.as_str()?;
    (!param.is_empty() && param.len() <= 200).then(|| param.to_string())
}

/// A `Retry-After` header's delay in seconds. Only the delay-seconds form; an HTTP date is
/// rare from LLM providers and ignored. More digits than a `u64` holds saturate (the route
/// caps the hold anyway) instead of being dropped as unparseable.
fn retry_after_secs(value: &str) -> Option<u64> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// Seconds since the epoch, for `created` fields.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) type Events = EventStream;

#[cfg(test)]
mod tests {
    use super::retry_after_secs;

    #[test]
    fn retry_after_is_parsed_strictly_and_saturates() {
        assert_eq!(retry_after_secs("7"), Some(7));
        assert_eq!(retry_after_secs(" 30 "), Some(30));
        assert_eq!(retry_after_secs("18446744073709551615"), Some(u64::MAX));
        assert_eq!(retry_after_secs("99999999999999999999999"), Some(u64::MAX));
        for bad in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(retry_after_secs(bad), None, "{bad}");
        }
    }
}
