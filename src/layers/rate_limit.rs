//! Tenant rate limits: requests and tokens per minute, checked before any routing work.
//!
//! Tokens are reserved at admission (prompt estimate + output limit, capped at one minute's
//! allowance so a large request can still pass on a full bucket) and reconciled with the
//! provider's usage when the response body ends. Every chat response carries OpenAI's
//! `x-ratelimit-*` headers for the limits the tenant has; a refusal is a 429 with
//! `Retry-After`.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::guard::GuardedBody;
use crate::body::Body;
use crate::cost::{estimate_prompt_tokens, requested_max_output};
use crate::error::GatewayError;
use crate::limits::rate::{reset_header, BucketStatus};
use crate::limits::{LimitState, TokenHold};
use crate::metrics::{Metrics, RequestLabels};

/// Output tokens assumed when neither the request nor the tenant's budget sets a limit.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// The request's token estimate, computed once here and reused by the budget.
#[derive(Debug, Clone, Copy)]
pub struct TokenEstimate {
    pub prompt: u64,
    pub max_output: u64,
}

impl TokenEstimate {
    pub fn of(ctx: &TenantCtx, request: &ChatRequest) -> TokenEstimate {
        let default = ctx
            .tenant
            .policy
            .budget
            .as_ref()
            .map_or(DEFAULT_MAX_OUTPUT, |b| u64::from(b.default_max_tokens));
        TokenEstimate {
            prompt: estimate_prompt_tokens(request),
            max_output: requested_max_output(request).unwrap_or(default),
        }
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
        let estimate = TokenEstimate::of(ctx, request.body());
        let tenant = ctx.tenant.clone();
        request.extensions_mut().insert(estimate);
        let state = self.limits.for_tenant(&tenant);
        let rate = state.rate.clone();
        if rate.requests.is_none() && rate.tokens.is_none() {
            return Box::pin(self.inner.call(request));
        }
        let now = Instant::now();
        let refuse = |limit: &'static str, limit_value: u64, retry: std::time::Duration| {
            self.metrics
                .rate_limited
                .with_label_values(&[&tenant.name, limit])
                .inc();
            let status = |b: &Option<crate::limits::Bucket>| b.as_ref().map(|b| b.status(now));
            GatewayError::RateLimited {
                limit,
                limit_value,
                retry_after_secs: retry.as_secs_f64().ceil() as u64,
                headers: headers(status(&rate.requests), status(&rate.tokens)),
            }
        };
        let requests = match &rate.requests {
            None => None,
            Some(bucket) => match bucket.take(1, now) {
                Ok(s) => Some(s),
                Err(wait) => {
                    let e = refuse("requests", bucket.limit(), wait.retry_after);
                    return Box::pin(async move { Err(e) });
                }
            },
        };
        let mut hold = None;
        let tokens = match &rate.tokens {
            None => None,
            Some(bucket) => {
                let wanted = (estimate.prompt + estimate.max_output).min(bucket.limit());
                match bucket.take(wanted, now) {
                    Ok(s) => {
                        hold = Some(TokenHold::new(rate.clone(), wanted));
                        Some(s)
                    }
                    Err(wait) => {
                        // The request slot taken above is given back: nothing was sent.
                        if let Some(r) = &rate.requests {
                            r.reconcile(1, 0, now);
                        }
                        let e = refuse("tokens", bucket.limit(), wait.retry_after);
                        return Box::pin(async move { Err(e) });
                    }
                }
            }
        };
        let labels = request.extensions().get::<Arc<RequestLabels>>().cloned();
        let headers = headers(requests, tokens);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let (mut parts, body) = response.into_parts();
            let succeeded = parts.status.is_success();
            // An answer from the response cache used no provider tokens.
            let cache_hit = parts.extensions.get::<super::cache::CacheHit>().is_some();
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    parts.headers.insert(name, v);
                }
            }
            let body = match hold {
                None => body,
                Some(hold) => Body::new(GuardedBody::new(body, move |_end| {
                    let actual = match &labels {
                        _ if cache_hit => 0,
                        Some(l) => tokens_used(l, estimate, succeeded),
                        None => hold.reserved(),
                    };
                    hold.reconcile(actual);
                })),
            };
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// Tokens the request used: the provider's count, or (when the provider never said, e.g.
/// the client left mid-stream) the prompt estimate plus one token per relayed data event.
/// A failed request that streamed nothing used nothing.
pub fn tokens_used(labels: &RequestLabels, estimate: TokenEstimate, succeeded: bool) -> u64 {
    match labels.usage() {
        Some(u) => u.total(),
        None => {
            let streamed = labels
                .data_events
                .load(std::sync::atomic::Ordering::Relaxed);
            if streamed == 0 && !succeeded {
                0
            } else {
                estimate.prompt + streamed
            }
        }
    }
}
