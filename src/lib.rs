//! deliberate: an OpenAI-compatible LLM gateway that routes each request to a fast chat
//! model or a slow reasoning model.
//!
//! `run` starts the API and admin listeners on listeners the caller bound (so tests can use
//! port 0) and serves until the shutdown token fires, then drains gracefully.
//! The request path itself is assembled in `app.rs`.

pub mod admin;
pub mod admission;
pub mod api;
pub mod app;
pub mod body;
pub mod classify;
pub mod config;
pub mod cost;
pub mod endpoints;
pub mod error;
pub mod latency;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod sse;
pub mod state;
pub mod sticky;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminService;
use crate::classify::learned::LearnedClassifier;
use crate::config::Snapshot;
use crate::state::AppState;

/// Installs the process-wide TLS crypto provider (ring) for the upstream client.
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves the gateway until `shutdown` is cancelled, then drains in-flight requests and
/// streams for at most the configured grace period. The admin listener keeps answering
/// (with `/readyz` = 503) until the API listener has drained.
pub async fn run(
    api: TcpListener,
    admin: TcpListener,
    snapshot: Snapshot,
    shutdown: CancellationToken,
) {
    install_crypto_provider();
    let grace = snapshot.server.shutdown_grace;
    let state = AppState::new(snapshot, Arc::new(LearnedClassifier::builtin()));
    let api_service = app::api_service(&state);
    let admin_service = AdminService {
        metrics: state.metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let admin_stop = CancellationToken::new();
    let admin_task = server::serve(
        admin,
        admin_service,
        admin_stop.clone(),
        Duration::from_secs(1),
    );
    let api_task = async {
        server::serve(api, api_service, shutdown, grace).await;
        admin_stop.cancel();
    };
    tokio::join!(api_task, admin_task);
    tracing::info!("shutdown complete");
}
