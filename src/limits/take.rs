//! The rate-limit entry point: `TenantLimits::take` takes one request and a request's tokens
//! from the tenant's buckets: in Redis (one bucket pair for every replica) when it is
//! configured and answers, otherwise in this replica's own buckets. Callers never decide
//! between the two.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::rate::BucketStatus;
use super::redis_rate::{self, Taken};
use super::{Bucket, TenantLimits, TokenHold};

/// Admitted: the buckets after the take, and the token reservation to reconcile later.
pub struct Granted {
    pub requests: Option<BucketStatus>,
    pub tokens: Option<BucketStatus>,
    pub hold: Option<TokenHold>,
}

/// Refused by a rate limit: which one, and when to try again.
pub struct Refused {
    /// `requests` or `tokens`.
    pub limit: &'static str,
    pub limit_value: u64,
    pub retry_after: Duration,
    pub requests: Option<BucketStatus>,
    pub tokens: Option<BucketStatus>,
}

impl TenantLimits {
    /// Whether the tenant has any rate limit (else `take` need not be called).
    pub fn has_rate_limits(&self) -> bool {
        self.limits.requests_per_minute.is_some() || self.limits.tokens_per_minute.is_some()
    }

    /// Takes one request and `tokens` (the request's prompt estimate plus its output limit).
    /// The tokens reserved are capped at one minute's allowance, so a large request can
    /// still pass on a full bucket.
    pub async fn take(self: &Arc<Self>, tokens: u64) -> Result<Granted, Refused> {
        let tokens = self
            .limits
            .tokens_per_minute
            .map_or(tokens, |cap| tokens.min(u64::from(cap)));
        if let Some(shared) = &self.shared {
            let taken = redis_rate::take(
                shared,
                &self.name,
                self.limits.requests_per_minute,
                self.limits.tokens_per_minute,
                tokens,
            )
            .await;
            if let Some(taken) = taken {
                return self.from_shared(taken, tokens);
            }
        }
        self.take_local(tokens)
    }

    fn from_shared(self: &Arc<Self>, taken: Taken, tokens: u64) -> Result<Granted, Refused> {
        match taken {
            Taken::Granted {
                requests,
                tokens: status,
            } => Ok(Granted {
                requests,
                tokens: status,
                hold: self
                    .limits
                    .tokens_per_minute
                    .map(|_| TokenHold::in_shared(self.clone(), tokens)),
            }),
            Taken::Refused {
                limit,
                retry_after,
                requests,
                tokens,
            } => {
                let value = if limit == "requests" {
                    self.limits.requests_per_minute
                } else {
                    self.limits.tokens_per_minute
                };
                Err(Refused {
                    limit,
                    limit_value: u64::from(value.unwrap_or(0)),
                    retry_after,
                    requests,
                    tokens,
                })
            }
        }
    }

    /// This replica's own buckets (no Redis, or Redis not answering).
    fn take_local(&self, tokens: u64) -> Result<Granted, Refused> {
        let rate = &self.rate;
        let now = Instant::now();
        let refuse = |limit: &'static str, limit_value: u64, retry_after: Duration| {
            let status = |b: &Option<Bucket>| b.as_ref().map(|b| b.status(now));
            Refused {
                limit,
                limit_value,
                retry_after,
                requests: status(&rate.requests),
                tokens: status(&rate.tokens),
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
        let token_status = match &rate.tokens {
            None => None,
            Some(bucket) => match bucket.take(tokens, now) {
                Ok(s) => {
                    hold = Some(TokenHold::new(rate.clone(), tokens));
                    Some(s)
                }
                Err(wait) => {
                    // The request slot taken above is given back: nothing was sent.
                    if let Some(r) = &rate.requests {
                        r.reconcile(1, 0, now);
                    }
                    return Err(refuse("tokens", bucket.limit(), wait.retry_after));
                }
            },
        };
        Ok(Granted {
            requests,
            tokens: token_status,
            hold,
        })
    }
}
