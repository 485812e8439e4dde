//! Routing decision: runs `policy::decide` (explicit signals, classifier, tenant policy)
//! once per chat request and hands the `Decision` on as a request extension.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::Body;
use crate::classify::Classifier;
use crate::error::GatewayError;
use crate::metrics::{Metrics, RequestLabels};
use crate::policy::{self, DecisionSource, TIER_HEADER};

#[derive(Clone)]
pub struct DecideLayer {
    classifier: Arc<dyn Classifier>,
    metrics: Arc<Metrics>,
}

impl DecideLayer {
    pub fn new(classifier: Arc<dyn Classifier>, metrics: Arc<Metrics>) -> Self {
        DecideLayer {
            classifier,
            metrics,
        }
    }
}

impl<S> Layer<S> for DecideLayer {
    type Service = Decide<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Decide {
            inner,
            classifier: self.classifier.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Decide<S> {
    inner: S,
    classifier: Arc<dyn Classifier>,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<ChatRequest>> for Decide<S>
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
        let tier_header = request.headers().get(TIER_HEADER).map(|v| v.as_bytes());
        let decision =
            match policy::decide(&ctx.tenant, request.body(), tier_header, &*self.classifier) {
                Ok(d) => d,
                Err(e) => return Box::pin(async { Err(e) }),
            };
        if decision.source != DecisionSource::Model {
            self.metrics
                .classifier_decisions
                .with_label_values(&[decision.tier.as_str(), decision.source.as_str()])
                .inc();
        }
        if let Some(labels) = request.extensions().get::<Arc<RequestLabels>>() {
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
        request.extensions_mut().insert(decision);
        Box::pin(self.inner.call(request))
    }
}
