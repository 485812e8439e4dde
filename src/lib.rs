//! deliberate: an OpenAI-compatible LLM gateway that routes each request to a fast chat
//! model or a slow reasoning model.
//!
//! `run` starts the API and admin listeners on listeners the caller bound (so tests can use
//! port 0) and serves until the shutdown token fires, then drains gracefully.
//! `run_with_reload` does the same for a config read from files, which it reloads on SIGHUP,
//! on file changes and on `POST /admin/reload` (see `reload.rs`).
//! The request path itself is assembled in `app.rs`.

pub mod admin;

pub mod api;
pub mod app;

pub mod body;
pub mod cache;
pub mod classify;
pub mod config;
pub mod cost;
pub mod demo;
pub mod embeddings;
pub mod endpoints;
pub mod error;
pub mod facts;

pub mod layers;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod policy;
pub mod record;
pub mod redis;
pub mod reload;
pub mod server;
pub mod sse;
pub mod state;
pub mod telemetry;

pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminService;
use crate::classify::cached::CachedClassifier;
use crate::classify::learned::LearnedClassifier;
use crate::config::Snapshot;
use crate::reload::{ConfigPaths, Reloader};
use crate::state::AppState;

/// How often an idle gateway checks that Redis answers (`deliberate_redis_up`).
const REDIS_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide TLS crypto provider (ring) for the upstream client.
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves the gateway until `shutdown` is cancelled, then drains in-flight requests and
/// streams for at most the configured grace period. The admin listener keeps answering
/// (with `/readyz` = 503) until the API listener has drained. The config never changes
/// (the demo, or a caller that manages config itself).
pub async fn run(
    api: TcpListener,
    admin: TcpListener,
    snapshot: Snapshot,
    shutdown: CancellationToken,
) {
    serve(api, admin, snapshot, None, shutdown, 0).await
}

/// Like `run`, for a `snapshot` loaded from `paths`: reloads them on SIGHUP, when they
/// change (polled every `server.reload_poll_ms`) and on `POST /admin/reload`.
pub async fn run_with_reload(
    api: TcpListener,
    admin: TcpListener,
    snapshot: Snapshot,
    paths: ConfigPaths,
    shutdown: CancellationToken,
) {
    serve(api, admin, snapshot, Some(paths), shutdown, 0).await
}

/// `run_with_reload` with the API listener served by `threads` threads, each with its own
/// single-threaded runtime (what `deliberate serve` does: one per core). A connection and
/// everything its requests do stay on the thread that accepted it, so no task wakes a task
/// on another core (measured in BENCHMARKS.md: ~10% of the CPU per request, and most of the
/// added latency at concurrency 1). Background work (reload, Redis, the admin listener)
/// stays on the caller's runtime. `threads == 0` serves on the caller's runtime.
pub async fn run_with_reload_on_threads(
    api: TcpListener,
    admin: TcpListener,
    snapshot: Snapshot,
    paths: Option<ConfigPaths>,
    shutdown: CancellationToken,
    threads: usize,
) {
    serve(api, admin, snapshot, paths, shutdown, threads).await
}

async fn serve(
    api: TcpListener,
    admin: TcpListener,
    mut snapshot: Snapshot,
    paths: Option<ConfigPaths>,
    shutdown: CancellationToken,
    threads: usize,
) {
    install_crypto_provider();
    let options = server::ServeOptions {
        grace: snapshot.server.shutdown_grace,
        connections: snapshot.server.connections,
    };
    snapshot.generation = 1;
    // Decisions are cached by conversation: repeated prompts are scored once.
    let classifier = CachedClassifier::new(LearnedClassifier::builtin());
    let second_stage = snapshot.server.second_stage.clone();
    let mut state = AppState::new(snapshot, Arc::new(classifier));
    // Loading the encoder reads ~25 MB: off the async workers. It says once in the log
    // what it did; a gateway without it serves from the first stage alone.
    let metrics = state.metrics.clone();
    state.second_stage = Arc::new(
        tokio::task::spawn_blocking(move || classify::stage2::head::start(&second_stage, metrics))
            .await
            .unwrap_or_else(|_| {
                classify::stage2::SecondStage::off("failed to start", state.metrics.clone())
            }),
    );
    let api_service = app::api_service(&state, shutdown.clone());
    let tasks = TaskTracker::new();
    let reloader = paths.map(|paths| {
        let reloader = Arc::new(Reloader::new(
            paths,
            state.live.clone(),
            state.metrics.clone(),
        ));
        reloader.spawn(&tasks, shutdown.clone());
        reloader
    });
    if let Some(shared) = state.policy.shared.clone() {
        tasks.spawn(shared.watch(REDIS_PROBE_EVERY, shutdown.clone()));
    }
    tasks.close();
    let admin_service = AdminService::new(state.clone(), reloader, shutdown.clone());
    let admin_stop = CancellationToken::new();
    let admin_task = server::serve(
        admin,
        admin_service,
        admin_stop.clone(),
        server::ServeOptions {
            grace: Duration::from_secs(1),
            ..options
        },
    );
    // The API threads' runtimes live until the end: what their requests left running
    // (settlements, cache writes) finishes before the process does.
    let finish = CancellationToken::new();
    let api_task = async {
        let threads = if threads == 0 {
            server::serve(api, api_service, shutdown, options).await;
            Vec::new()
        } else {
            server::serve_on_threads(api, api_service, shutdown, options, threads, finish.clone())
                .await
        };
        admin_stop.cancel();
        threads
    };
    let (threads, ()) = tokio::join!(api_task, admin_task);
    // The reload task stops when shutdown fires; a reload in progress finishes first.
    tasks.wait().await;
    // Settlements and cache writes of the last responses reach Redis before we exit.
    if let Some(shared) = &state.policy.shared {
        shared.drain(Duration::from_secs(5)).await;
    }
    finish.cancel();
    server::join_threads(threads).await;
    tracing::info!("shutdown complete");
}
