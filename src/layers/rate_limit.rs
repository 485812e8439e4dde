//! Tenant rate limits: requests and tokens per minute, checked before any routing work.
//!
//! Tokens are reserved at admission (prompt estimate + output limit, capped at one minute's
//! allowance so a large request can still pass on a full bucket) and reconciled with the
//! provider's usage when the response body ends. Every chat response carries OpenAI's
//! `x-ratelimit-*` headers for the limits the tenant has; a refusal is a 429 with
//! `Retry-After`.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::observed::OnEnd;
use crate::body::Body;
use crate::cost::{estimate_prompt_tokens, requested_max_output};
use crate::error::GatewayError;
use crate::facts::Served;
use crate::limits::rate::{reset_header, BucketStatus};
use crate::limits::LimitState;
use crate::metrics::Metrics;
use crate::record::CallRecord;

/// Output tokens assumed when neither the request nor the tenant's budget sets a limit.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// The request's token estimate, computed once here and reused by the budget.
#[derive(Debug, Clone, Copy)]
pub struct TokenEstimate {
    pub prompt: u64,
    pub max_output: u64,
}

impl TokenEstimate {
    /// A 400 if the request's output limit is not a token count.
    pub fn of(ctx: &TenantCtx, request: &ChatRequest) -> Result<TokenEstimate, GatewayError> {
        let default = ctx
            .tenant
            .policy
            .budget
            .as_ref()
            .map_or(DEFAULT_MAX_OUTPUT, |b| u64::from(b.default_max_tokens));
        Ok(TokenEstimate {
            prompt: estimate_prompt_tokens(request),
            max_output: requested_max_output(request)?.unwrap_or(default),
        })
    }

    /// The worst case on `model`: every allowed output token, no more than it can produce.
    pub fn max_output_on(&self, model: &crate::config::Model) -> u64 {
        crate::cost::output_limit(self.max_output, model.capabilities.max_output_tokens)
    }

    /// Output tokens estimated from relayed data events when the provider reports none:
    /// about one per event, never more than the request allowed (as the estimated usage
    /// chunk a client sees is capped). A provider that ignores the limit and streams
    /// thousands of tiny events is not billed or counted past it.
    pub fn output_from_events(&self, data_events: u64) -> u64 {
        data_events.min(self.max_output)
    }
}

#[derive(Clone)]
pub struct RateLimitLayer {
    limits: Arc<LimitState>,
    metrics: Arc<Metrics>,
}

impl RateLimitLayer {
    pub fn new(limits: Arc<LimitState>, metrics: Arc<Metrics>) -> Self {
        RateLimitLayer { limits, metrics }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: Arc<LimitState>,
    metrics: Arc<Metrics>,
}

fn headers(
    requests: Option<BucketStatus>,
    tokens: Option<BucketStatus>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(r) = requests {
        out.push(("x-ratelimit-limit-requests", r.limit.to_string()));
        out.push(("x-ratelimit-remaining-requests", r.remaining.to_string()));
        out.push(("x-ratelimit-reset-requests", reset_header(r.reset)));
    }
    if let Some(t) = tokens {
        out.push(("x-ratelimit-limit-tokens", t.limit.to_string()));
        out.push(("x-ratelimit-remaining-tokens", t.remaining.to_string()));
        out.push(("x-ratelimit-reset-tokens", reset_header(t.reset)));
    }
    out
}

impl<S> Service<Request<ChatRequest>> for RateLimit<S>
where
    S: Service<Request<ChatRequest>, Response = Response<Body>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ChatRequest>) -> Self::Future {
        let Some(ctx) = request.extensions().get::<TenantCtx>() else {
            return Box::pin(async {
                Err(GatewayError::Internal("tenant context missing".into()))
            });
        };
        let estimate = match TokenEstimate::of(ctx, request.body()) {
            Ok(e) => e,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let tenant = ctx.tenant.clone();
        request.extensions_mut().insert(estimate);
        let state = self.limits.for_tenant(&tenant);
        if !state.has_rate_limits() {
            return Box::pin(self.inner.call(request));
        }
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let wanted = estimate.prompt.saturating_add(estimate.max_output);
            let granted = match state.take(wanted).await {
                Ok(granted) => granted,
                Err(refused) => {
                    metrics
                        .rate_limited
                        .with_label_values(&[&tenant.name, refused.limit])
                        .inc();
                    return Err(GatewayError::RateLimited {
                        limit: refused.limit,
                        limit_value: refused.limit_value,
                        retry_after_secs: refused.retry_after.as_secs_f64().ceil() as u64,
                        headers: headers(refused.requests, refused.tokens),
                    });
                }
            };
            let (headers, hold) = (headers(granted.requests, granted.tokens), granted.hold);
            let mut response = inner.call(request).await?;
            let succeeded = response.status().is_success();
            // An answer from the response cache used no provider tokens.
            let cache_hit = response
                .extensions()
                .get::<super::cache::CacheHit>()
                .is_some();
            let call = response
                .extensions()
                .get::<Served>()
                .map(|s| s.call.clone());
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, v);
                }
            }
            if let Some(hold) = hold {
                OnEnd::of(&mut response).push(move |_| {
                    let actual = match &call {
                        _ if cache_hit => 0,
                        Some(call) => tokens_used(call, estimate, succeeded),
                        None => hold.reserved(),
                    };
                    hold.reconcile(actual);
                });
            }
            Ok(response)
        })
    }
}

/// Tokens the request used: the provider's count, or (when the provider never said, e.g.
/// the client left mid-stream) the prompt estimate plus the output estimated from relayed
/// data events (`TokenEstimate::output_from_events`). A failed request that streamed
/// nothing used nothing.
pub fn tokens_used(call: &CallRecord, estimate: TokenEstimate, succeeded: bool) -> u64 {
    match call.usage() {
        Some(u) => u.total(),
        None => {
            let streamed = call.data_events();
            if streamed == 0 && !succeeded {
                0
            } else {
                estimate
                    .prompt
                    .saturating_add(estimate.output_from_events(streamed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tier;
    use crate::metrics::Metrics;
    use crate::record::{CallLabels, CallRecorder};

    #[test]
    fn an_output_estimate_from_events_stops_at_the_requested_limit() {
        let recorder = CallRecorder::new(
            Metrics::new(),
            CallLabels {
                tenant: "t".into(),
                tier: Tier::Fast,
                model: "m".into(),
                provider: "p".into(),
            },
            tokio::time::Instant::now(),
        );
        let estimate = TokenEstimate {
            prompt: 10,
            max_output: 5,
        };
        recorder.add_data_events(3);
        assert_eq!(tokens_used(recorder.record(), estimate, true), 13);
        recorder.add_data_events(10_000);
        assert_eq!(tokens_used(recorder.record(), estimate, true), 15);
        assert_eq!(estimate.output_from_events(u64::MAX), 5);
    }
}
