//! Routing decision under the tenant's policies: runs `policy::decide` (explicit signals,
//! classifier), asks the second stage about a classifier score in its uncertain band
//! (`classify::stage2`: bounded, under a time budget, first-stage score kept otherwise),
//! then `admission::admit` (stickiness, budget, deadline, shadow, reservation)
//! once per chat request, hands the `Decision` on as a request extension, and settles the
//! request's cost when its response body ends (stream end or client gone).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::rate_limit::TokenEstimate;
use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::admission::{self, cost_header, Admitted, PolicyState, RequestDeadline};
use crate::api::ChatRequest;
use crate::body::guard::{BodyEnd, GuardedBody};
use crate::body::Body;
use crate::classify::stage2::SecondStage;
use crate::classify::{Classifier, Role, Tier};
use crate::cost::{cost, Usage};
use crate::error::GatewayError;
use crate::metrics::{Metrics, RequestLabels};
use crate::policy::{self, Decision, DecisionSource, TIER_HEADER};

#[derive(Clone)]
pub struct DecideLayer {
    classifier: Arc<dyn Classifier>,
    second: Arc<SecondStage>,
    metrics: Arc<Metrics>,
    policy: Arc<PolicyState>,
}

impl DecideLayer {
    pub fn new(
        classifier: Arc<dyn Classifier>,
        second: Arc<SecondStage>,
        metrics: Arc<Metrics>,
        policy: Arc<PolicyState>,
    ) -> Self {
        DecideLayer {
            classifier,
            second,
            metrics,
            policy,
        }
    }
}

impl<S> Layer<S> for DecideLayer {
    type Service = Decide<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Decide {
            inner,
            classifier: self.classifier.clone(),
            second: self.second.clone(),
            metrics: self.metrics.clone(),
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Decide<S> {
    inner: S,
    classifier: Arc<dyn Classifier>,
    second: Arc<SecondStage>,
    metrics: Arc<Metrics>,
    policy: Arc<PolicyState>,
}

impl<S> Service<Request<ChatRequest>> for Decide<S>
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

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let Some(ctx) = request.extensions().get::<TenantCtx>().cloned() else {
            return Box::pin(async {
                Err(GatewayError::Internal("tenant context missing".into()))
            });
        };
        let tier_header = request.headers().get(TIER_HEADER).map(|v| v.as_bytes());
        let decision =
            match policy::decide(&ctx.tenant, request.body(), tier_header, &*self.classifier) {
                Ok(d) => d,
                Err(e) => return Box::pin(async { Err(e) }),
            };
        let estimate = match request.extensions().get::<TokenEstimate>() {
            Some(e) => *e,
            None => match TokenEstimate::of(&ctx, request.body()) {
                Ok(e) => e,
                Err(e) => return Box::pin(async { Err(e) }),
            },
        };
        let metrics = self.metrics.clone();
        let policy = self.policy.clone();
        let second = self.second.clone();
        let default_threshold = self.classifier.default_threshold();
        Box::pin(async move {
            let decision =
                second_opinion(&second, &ctx, request.body(), decision, default_threshold).await;
            let longest = ctx.snapshot.timeouts(Tier::Reasoning).total;
            let input = admission::AdmitInput {
                tenant: &ctx.tenant,
                request: request.body(),
                headers: request.headers(),
                estimate,
                hold_ttl: longest.max(ctx.snapshot.timeouts(Tier::Fast).total) + HOLD_SLACK,
            };
            let admitted = admission::admit(&policy, &metrics, input, decision).await?;
            route(inner, request, ctx, admitted, estimate, metrics, policy).await
        })
    }
}

/// The second stage's verdict on a classifier decision in its band; any other decision,
/// or no answer in time, stays as it was.
async fn second_opinion(
    stage: &SecondStage,
    ctx: &TenantCtx,
    body: &ChatRequest,
    decision: Decision,
    default_threshold: f32,
) -> Decision {
    let first = match decision.score {
        Some(s) if decision.source == DecisionSource::Classifier && stage.wants(s) => s,
        _ => return decision,
    };
    let conversation = body.conversation();
    let Some(last_user) = conversation
        .turns
        .iter()
        .rev()
        .find(|t| t.role == Role::User)
    else {
        return decision;
    };
    match stage.refine(&last_user.text, first).await {
        Some(score) => policy::with_second_stage(&ctx.tenant, decision, score, default_threshold),
        None => decision,
    }
}

/// A budget hold outlives its request's longest timeout by this much before Redis drops it.
const HOLD_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends the admitted request on and settles its cost when the response body ends.
async fn route<S>(
    mut inner: S,
    mut request: Request<ChatRequest>,
    ctx: TenantCtx,
    admitted: Admitted,
    estimate: TokenEstimate,
    metrics: Arc<Metrics>,
    policy: Arc<PolicyState>,
) -> Result<Response<Body>, GatewayError>
where
    S: Service<Request<ChatRequest>, Response = Response<Body>, Error = GatewayError>,
{
    let Admitted {
        decision,
        reservation,
        limits,
        deadline,
        warning,
        shadow_would,
    } = admitted;
    if decision.source != DecisionSource::Model {
        metrics
            .classifier_decisions
            .with_label_values(&[decision.tier.as_str(), decision.source.as_str()])
            .inc();
    }
    let labels = request.extensions().get::<Arc<RequestLabels>>().cloned();
    if let Some(labels) = &labels {
        let _ = labels.tier.set(decision.tier);
        let _ = labels.model.set(decision.model.name.clone());
    }
    tracing::debug!(
        tier = decision.tier.as_str(),
        model = &*decision.model.name,
        score = decision.score,
        reason = %decision.reason,
        "routing decision"
    );
    let snapshot = ctx.snapshot.clone();
    let tenant = ctx.tenant.name.clone();
    let is_stream = request.body().is_stream();
    if let Some(d) = deadline {
        request.extensions_mut().insert(RequestDeadline(d));
    }
    request.extensions_mut().insert(decision.clone());
    // A reservation only bounds spend if the model cannot write past it: a request with no
    // output limit of its own gets the one its hold was sized for.
    if reservation.is_some() {
        let body = request.body_mut();
        if crate::cost::MAX_OUTPUT_FIELDS
            .iter()
            .all(|f| body.body.get(*f).is_none_or(serde_json::Value::is_null))
        {
            body.body
                .insert("max_tokens".into(), estimate.max_output.into());
        }
    }
    let latency = policy.latency.clone();
    let response = inner.call(request).await?;
    let (mut parts, body) = response.into_parts();
    let served = parts
        .headers
        .get("x-deliberate-model")
        .and_then(|v| v.to_str().ok())
        .and_then(|m| snapshot.models.get(m).cloned())
        .unwrap_or_else(|| decision.model.clone());
    let succeeded = parts.status.is_success();
    // An answer from the response cache costs nothing and says nothing about latency.
    let cache_hit = parts.extensions.get::<super::cache::CacheHit>().is_some();
    if let (false, Some(usage)) = (is_stream, labels.as_ref().and_then(|l| l.usage())) {
        let c = cost(&served.price, &usage);
        if let Ok(v) = http::HeaderValue::from_str(&cost_header(c)) {
            parts.headers.insert("x-deliberate-cost-usd", v);
        }
    }
    if let Some(w) = warning.and_then(|w| http::HeaderValue::from_str(&w).ok()) {
        parts.headers.insert("x-deliberate-warning", w);
    }
    if let Some(would) = shadow_would {
        parts.headers.insert(
            "x-deliberate-shadow-tier",
            http::HeaderValue::from_static(would.as_str()),
        );
    }
    let settle = Settlement {
        metrics,
        latency,
        labels,
        tenant,
        served,
        estimate,
        succeeded,
        is_stream,
        cache_hit,
        reservation,
        limits,
    };
    let body = Body::new(GuardedBody::new(body, move |end| settle.run(end)));
    Ok(Response::from_parts(parts, body))
}

/// What a finished request owes: run once when its response body ends.
struct Settlement {
    metrics: Arc<Metrics>,
    latency: Arc<crate::latency::LatencyBook>,
    labels: Option<Arc<RequestLabels>>,
    tenant: Arc<str>,
    served: Arc<crate::config::Model>,
    estimate: TokenEstimate,
    succeeded: bool,
    /// A stream's 200 says nothing about output: only relayed data events do.
    is_stream: bool,
    cache_hit: bool,
    reservation: Option<crate::limits::Reservation>,
    limits: Arc<crate::limits::TenantLimits>,
}

impl Settlement {
    fn run(self, end: BodyEnd) {
        let Some(labels) = self.labels else {
            return;
        };
        let usage = labels.usage();
        let streamed = labels
            .data_events
            .load(std::sync::atomic::Ordering::Relaxed);
        let billed = match usage {
            _ if self.cache_hit => None,
            Some(u) => Some(u),
            // No usage from the provider: bill an estimate if anything was produced. A stream
            // that failed before its first data event (a first-token timeout after the 200)
            // produced nothing: it owes only what the provider reported, here nothing.
            None if (self.succeeded && !self.is_stream) || streamed > 0 => {
                self.metrics
                    .cost_estimated
                    .with_label_values(&[&self.tenant, &self.served.name])
                    .inc();
                Some(Usage {
                    prompt: self.estimate.prompt,
                    completion: streamed,
                    ..Usage::default()
                })
            }
            None => None,
        };
        let amount = billed.map_or(0, |u| cost(&self.served.price, &u));
        let now = self.limits.ledger.now();
        match self.reservation {
            Some(r) => {
                r.settle_at(amount, now);
                self.limits.publish();
            }
            None => self.limits.record(amount, now),
        }
        if amount > 0 {
            self.metrics
                .cost_usd
                .with_label_values(&[&self.tenant, self.served.tier.as_str(), &self.served.name])
                .inc_by(crate::cost::usd(amount));
        }
        let clean = end == BodyEnd::Complete
            && self.succeeded
            && !self.cache_hit
            && labels.outcome.get().is_none();
        if clean {
            self.latency.record(
                &self.served.name,
                labels.first_token_after.get().copied(),
                labels.started.elapsed(),
            );
        }
    }
}
