//! Routing decision under the tenant's policies: runs `policy::decide` (explicit signals,
//! classifier), asks the second stage about a classifier score in its uncertain band
//! (`classify::stage2`: bounded, under a time budget, first-stage score kept otherwise),
//! then `admission::admit` (stickiness, budget, deadline, shadow, reservation)
//! once per chat request, hands the `Decision` on as a request extension, puts `Routed` on
//! the response, and leaves the `billing::Settlement` for the end of the response body
//! (stream end or client gone).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::rate_limit::TokenEstimate;
use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::observed::OnEnd;
use crate::body::Body;
use crate::classify::stage2::SecondStage;
use crate::classify::{Classifier, Tier};
use crate::cost::cost;
use crate::embeddings::EmbeddingsRequest;
use crate::error::GatewayError;
use crate::facts::{Billed, HeadWitness, RequestCtx, Routed, Served};
use crate::metrics::Metrics;
use crate::policy::admission::{self, Admitted, PolicyState, RequestDeadline};
use crate::policy::billing::{cost_header, Settlement};
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
        let classify = tracing::debug_span!(
            "classify",
            tier = tracing::field::Empty,
            score = tracing::field::Empty,
            source = tracing::field::Empty
        );
        // Embeddings are not classified: the tenant's embedding model, or the one named.
        let decided =
            classify.in_scope(
                || match request.extensions().get::<Arc<EmbeddingsRequest>>() {
                    Some(embeddings) => policy::decide_embedding(&ctx.tenant, &embeddings.model),
                    None => {
                        policy::decide(&ctx.tenant, request.body(), tier_header, &*self.classifier)
                    }
                },
            );
        let decision = match decided {
            Ok(d) => d,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        if !classify.is_disabled() {
            classify.record("tier", decision.tier.as_str());
            classify.record("source", decision.source.as_str());
            if let Some(score) = decision.score {
                classify.record("score", f64::from(score));
            }
        }
        drop(classify);
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
            // A refusal (budget, deadline header) is counted for where it was headed.
            let routed = Routed::of(&decision);
            let admitted = match admission::admit(&policy, &metrics, input, decision)
                .instrument(tracing::debug_span!("admission"))
                .await
            {
                Ok(admitted) => admitted,
                Err(error) => {
                    let mut response = error.respond();
                    response.extensions_mut().insert(routed);
                    return Ok(response);
                }
            };
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
    let Some(text) = conversation.last_user_text() else {
        return decision;
    };
    match stage.refine(text, first).await {
        Some(score) => policy::with_second_stage(&ctx.tenant, decision, score, default_threshold),
        None => decision,
    }
}

/// A budget hold outlives its request's longest timeout by this much before Redis drops it.
const HOLD_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends the admitted request on and leaves its settlement for the end of the response body.
/// Every response from here on carries `Routed`, failures included (they become responses
/// here, so the request is counted for the tier it was routed to).
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
    if !matches!(
        decision.source,
        DecisionSource::Model | DecisionSource::Embedding
    ) {
        metrics
            .classifier_decisions
            .with_label_values(&[decision.tier.as_str(), decision.source.as_str()])
            .inc();
    }
    tracing::debug!(
        tier = decision.tier.as_str(),
        model = &*decision.model.name,
        score = decision.score,
        reason = %decision.reason,
        "routing decision"
    );
    let routed = Routed::of(&decision);
    HeadWitness::routed(&request, &routed);
    let started = request
        .extensions()
        .get::<RequestCtx>()
        .map_or_else(tokio::time::Instant::now, |r| r.started);
    let is_stream = request.body().is_stream();
    if let Some(d) = deadline {
        request.extensions_mut().insert(RequestDeadline(d));
    }
    request.extensions_mut().insert(decision);
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
    let mut response = match inner.call(request).await {
        Ok(response) => response,
        // The reservation is dropped unused: released.
        Err(error) => error.respond(),
    };
    response.extensions_mut().insert(routed);
    let served = response.extensions().get::<Served>().cloned();
    let succeeded = response.status().is_success();
    // An answer from the response cache costs nothing and says nothing about latency.
    let cache_hit = response
        .extensions()
        .get::<super::cache::CacheHit>()
        .is_some();
    let headers = response.headers_mut();
    if let (false, Some(served)) = (is_stream, &served) {
        if let Some(usage) = served.call.usage() {
            let c = cost(&served.model.price, &usage);
            if let Ok(v) = http::HeaderValue::from_str(&cost_header(c)) {
                headers.insert("x-deliberate-cost-usd", v);
            }
        }
    }
    if let Some(w) = warning.and_then(|w| http::HeaderValue::from_str(&w).ok()) {
        headers.insert("x-deliberate-warning", w);
    }
    if let Some(would) = shadow_would {
        headers.insert(
            "x-deliberate-shadow-tier",
            http::HeaderValue::from_static(would.as_str()),
        );
    }
    let billed = Billed::default();
    response.extensions_mut().insert(billed.clone());
    let settle = Settlement {
        billed,
        metrics,
        latency: policy.latency.clone(),
        tenant: ctx.tenant.name.clone(),
        started,
        served,
        estimate,
        succeeded,
        is_stream,
        cache_hit,
        reservation,
        limits,
    };
    OnEnd::of(&mut response).push(move |ended| settle.run(ended));
    Ok(response)
}
