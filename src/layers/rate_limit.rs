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
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::observed::OnEnd;
use crate::body::Body;
use crate::config::RateLimits;
use crate::cost::{estimate_prompt_tokens, requested_max_output};
use crate::error::GatewayError;
use crate::facts::Served;
use crate::limits::rate::{reset_header, BucketStatus};
use crate::limits::{LimitState, TenantLimits, TokenHold};
use crate::metrics::Metrics;
use crate::record::CallRecord;
use crate::shared::rate::Taken;
use crate::shared::Shared;

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
        if state.rate.requests.is_none() && state.rate.tokens.is_none() {
            return Box::pin(self.inner.call(request));
        }
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let admitted = match &state.shared {
                Some(shared) => take_shared(shared, &state, estimate).await,
                None => None,
            };
            let admitted = admitted.unwrap_or_else(|| take_local(&state, estimate));
            let (headers, hold) = match admitted {
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
                        headers: refused.headers,
                    });
                }
            };
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

/// A request refused by a rate limit.
struct Refused {
    limit: &'static str,
    limit_value: u64,
    retry_after: Duration,
    headers: Vec<(&'static str, String)>,
}

type Admission = Result<(Vec<(&'static str, String)>, Option<TokenHold>), Refused>;

/// Tokens a request reserves: its estimate, capped at one minute's allowance so a large
/// request can still pass on a full bucket.
fn wanted(limits: &RateLimits, estimate: TokenEstimate) -> u64 {
    let all = estimate.prompt.saturating_add(estimate.max_output);
    limits
        .tokens_per_minute
        .map_or(all, |cap| all.min(u64::from(cap)))
}

/// Takes from the buckets in Redis, shared by every replica; `None` if Redis did not answer.
async fn take_shared(
    shared: &Arc<Shared>,
    state: &Arc<TenantLimits>,
    estimate: TokenEstimate,
) -> Option<Admission> {
    let limits = state.limits;
    let tokens = wanted(&limits, estimate);
    let taken = crate::shared::rate::take(
        shared,
        &state.name,
        limits.requests_per_minute,
        limits.tokens_per_minute,
        tokens,
    )
    .await?;
    Some(match taken {
        Taken::Granted {
            requests,
            tokens: t,
        } => {
            let hold = limits
                .tokens_per_minute
                .map(|_| TokenHold::in_shared(state.clone(), tokens));
            Ok((headers(requests, t), hold))
        }
        Taken::Refused {
            limit,
            retry_after,
            requests,
            tokens: t,
        } => {
            let value = if limit == "requests" {
                limits.requests_per_minute
            } else {
                limits.tokens_per_minute
            };
            Err(Refused {
                limit,
                limit_value: u64::from(value.unwrap_or(0)),
                retry_after,
                headers: headers(requests, t),
            })
        }
    })
}

/// Takes from this replica's own buckets (no Redis, or Redis not answering).
fn take_local(state: &Arc<TenantLimits>, estimate: TokenEstimate) -> Admission {
    let rate = &state.rate;
    let now = Instant::now();
    let refuse = |limit: &'static str, limit_value: u64, retry_after: Duration| {
        let status = |b: &Option<crate::limits::Bucket>| b.as_ref().map(|b| b.status(now));
        Refused {
            limit,
            limit_value,
            retry_after,
            headers: headers(status(&rate.requests), status(&rate.tokens)),
        }
    };
    let requests = match &rate.requests {
        None => None,
        Some(bucket) => match bucket.take(1, now) {
            Ok(s) => Some(s),
            Err(wait) => return Err(refuse("requests", bucket.limit(), wait.retry_after)),
        },
    };
    let mut hold = None;
    let tokens = match &rate.tokens {
        None => None,
        Some(bucket) => {
            let wanted = wanted(&state.limits, estimate);
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
                    return Err(refuse("tokens", bucket.limit(), wait.retry_after));
                }
            }
        }
    };
    Ok((headers(requests, tokens), hold))
}

/// Tokens the request used: the provider's count, or (when the provider never said, e.g.
/// the client left mid-stream) the prompt estimate plus one token per relayed data event.
/// A failed request that streamed nothing used nothing.
pub fn tokens_used(call: &CallRecord, estimate: TokenEstimate, succeeded: bool) -> u64 {
    match call.usage() {
        Some(u) => u.total(),
        None => {
            let streamed = call.data_events();
            if streamed == 0 && !succeeded {
                0
            } else {
                estimate.prompt.saturating_add(streamed)
            }
        }
    }
}
