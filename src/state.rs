//! Shared state of a running gateway: cheap to clone, handed to every layer that needs it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admission::PolicyState;
use crate::classify::Classifier;
use crate::config::Snapshot;
use crate::metrics::Metrics;
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct AppState {
    /// The live config; each request loads it once (see `layers::tenant`).
    pub live: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub upstream: Arc<Upstream>,
    pub classifier: Arc<dyn Classifier>,
    /// Spend, rate-limit, latency and session state; survives config reloads.
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
        AppState {
            live: Arc::new(ArcSwap::from_pointee(snapshot)),
            metrics: Metrics::new(),
            upstream,
            classifier,
            policy: Arc::new(PolicyState::default()),
            cache,
        }
    }
}
