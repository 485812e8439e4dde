//! Shared state of a running gateway: cheap to clone, handed to every layer that needs it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::classify::stage2::SecondStage;
use crate::classify::Classifier;
use crate::config::Snapshot;
use crate::limits::LimitState;
use crate::metrics::Metrics;
use crate::policy::admission::PolicyState;
use crate::redis::Shared;
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct AppState {
    /// The live config; each request loads it once (see `layers::tenant`).
    pub live: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub upstream: Arc<Upstream>,
    pub classifier: Arc<dyn Classifier>,
    /// Asked about classifier scores in its uncertain band; off until `lib::serve` starts
    /// it from `[second_stage]` (tests that build the state themselves get it off).
    pub second_stage: Arc<SecondStage>,
    /// Spend, rate-limit, latency and session state, and the Redis tier when configured;
    /// survives config reloads.
    pub policy: Arc<PolicyState>,
    /// Response cache; survives config reloads (the key carries the config generation).
    pub cache: Arc<crate::cache::ResponseCache>,
}

impl AppState {
    pub fn new(snapshot: Snapshot, classifier: Arc<dyn Classifier>) -> AppState {
        let upstream = Arc::new(Upstream::new(&snapshot));
        let cache = Arc::new(crate::cache::ResponseCache::new(
            snapshot.server.cache_max_bytes,
        ));
        let metrics = Metrics::new();
        let shared = snapshot.server.redis.as_ref().and_then(|settings| {
            Shared::new(settings, metrics.clone())
                .inspect_err(|e| {
                    // Validated at load; a failure here leaves the gateway serving locally.
                    tracing::error!(error = %e, "redis tier not started; state stays local");
                })
                .ok()
        });
        let policy = PolicyState {
            limits: Arc::new(LimitState::new(shared.clone(), metrics.clone())),
            shared,
            ..PolicyState::default()
        };
        crate::metrics::declare_config(&metrics, &snapshot);
        AppState {
            live: Arc::new(ArcSwap::from_pointee(snapshot)),
            second_stage: Arc::new(SecondStage::off("not started", metrics.clone())),
            metrics,
            upstream,
            classifier,
            policy: Arc::new(policy),
            cache,
        }
    }
}
