//! Accept loop for one listener: HTTP/1.1 and h2c on the same port, TCP_NODELAY on every
//! accepted socket (no 40 ms Nagle stalls on streams), slow-client limits, and graceful
//! shutdown: stop accepting, let in-flight requests and streams finish, then at the hard
//! deadline answer what is left (503, or a final SSE error event) and close.
//!
//! Slow clients cannot hold the gateway: at most `max_connections` are open (past it the
//! loop stops accepting until one closes, so the kernel's backlog queues the rest); a
//! connection that does not finish a head within the header timeout, or sits with no
//! request for the idle timeout, is closed (`activity.rs`); HTTP/2 peers that stop
//! answering PINGs are dropped by hyper. Request bodies have their own deadline in the body
//! layer, and the in-flight permit is only taken once the body is read (see `app.rs`).

mod activity;
mod deadline;
mod parse_errors;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use self::activity::{ActivityIo, ConnActivity, Timeouts, H2_PREFACE_START};
use self::deadline::ConnService;
use crate::body::Body;
use crate::config::ConnectionSettings;

/// After the grace period, how long the final 503s and SSE error events get to be written
/// before every connection is cut.
const FINAL_WRITE: Duration = Duration::from_secs(1);

/// How one listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Drain time after the shutdown signal.
    pub grace: Duration,
    pub connections: ConnectionSettings,
}

/// Serves `service` on `listener` until `shutdown` fires, then drains for at most
/// `options.grace`.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: CancellationToken,
    options: ServeOptions,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let limits = options.connections;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    let timeouts = Timeouts {
        header: limits.header_read_timeout,
        idle: limits.keep_alive_idle_timeout,
    };
    // For a connection whose first bytes cannot start HTTP/2's preface: the auto builder
    // reads those bytes itself to tell the versions apart and hands them back to HTTP/1 as
    // a separate small read, which grows hyper's 8 KiB read buffer to 16 KiB on every
    // connection (heaptrack: 16 KB per open stream). Peeking instead leaves them in the
    // socket.
    let http1_builder = Arc::new(builder.clone().http1_only());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    // Fired when the grace period is over: unanswered requests get their 503.
    let deadline = CancellationToken::new();
    // Fired a moment later: connections still open are dropped.
    let hard_stop = CancellationToken::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let activity = ConnActivity::new(timeouts);
        let service = ConnService::new(service.clone(), activity.clone(), deadline.clone());
        let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
        let (builder, http1_builder) = (builder.clone(), http1_builder.clone());
        connections.spawn(async move {
            // The slot is free again when this connection task ends.
            let _slot = slot;
            // The header timeout (`activity`) already runs: a peer that sends nothing is
            // closed by it here as it would be by hyper.
            let http1 = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = hard_stop.cancelled() => return,
                why = activity.expired() => {
                    tracing::debug!(%peer, ?why, "closing a connection that sent nothing");
                    return;
                }
                http1 = cannot_be_http2(&stream) => http1,
            };
            let builder = if http1 { &http1_builder } else { &builder };
            let io = TokioIo::new(ActivityIo::new(stream, activity.clone()));
            let connection = builder
                .serve_connection(io, TowerToHyperService::new(service))
                .into_owned();
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    // A connection accepted just as shutdown began takes no request.
                    biased;
                    _ = shutdown.cancelled(), if !draining => {
                        // Finish what is in progress, take nothing new.
                        connection.as_mut().graceful_shutdown();
                        draining = true;
                    }
                    _ = hard_stop.cancelled() => break,
                    why = activity.expired() => {
                        // No request is in progress on it: closing loses nothing.
                        tracing::debug!(%peer, ?why, "closing a connection without a request in progress");
                        break;
                    }
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(options.grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX),
            "shutdown grace period over; answering what is left and closing connections"
        );
        deadline.cancel();
        if tokio::time::timeout(FINAL_WRITE, connections.wait())
            .await
            .is_err()
        {
            hard_stop.cancel();
            connections.wait().await;
        }
    }
}

/// Waits for the connection's first bytes, without taking them: true if they cannot begin
/// HTTP/2's prior-knowledge preface. False also when the peer closed or the peek failed:
/// hyper then sees that itself.
async fn cannot_be_http2(stream: &TcpStream) -> bool {
    let mut first = [0u8; H2_PREFACE_START.len()];
    match stream.peek(&mut first).await {
        Ok(n) if n > 0 => first[..n] != H2_PREFACE_START[..n],
        _ => false,
    }
}

/// Serves `service` on `listener` from `threads` threads, each with a single-threaded
/// runtime and its own handle on the listening socket (the kernel wakes them in turn; one
/// accept wins). Returns when every thread has drained; the threads keep their runtimes
/// (and so what their requests spawned) running until `finish` fires; join them with
/// `join_threads`.
pub async fn serve_on_threads<S>(
    listener: TcpListener,
    service: S,
    shutdown: CancellationToken,
    options: ServeOptions,
    threads: usize,
    finish: CancellationToken,
) -> Vec<std::thread::JoinHandle<()>>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = listener
        .into_std()
        .expect("a bound listener converts back to std");
    let mut drained = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = listener
            .try_clone()
            .expect("the listening socket can be shared");
        let (service, shutdown, finish) = (service.clone(), shutdown.clone(), finish.clone());
        let (done, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("deliberate-api-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime starts");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("the listener registers");
                    serve(listener, service, shutdown, options).await;
                    let _ = done.send(());
                    finish.cancelled().await;
                });
                // Blocking work still running on this runtime gets a bounded wait, like the
                // connections' final write.
                runtime.shutdown_timeout(FINAL_WRITE);
            })
            .expect("an API thread starts");
        drained.push(drained_rx);
        handles.push(handle);
    }
    for rx in drained {
        let _ = rx.await;
    }
    handles
}

/// Waits for the threads of `serve_on_threads` to end (after their `finish`).
pub async fn join_threads(threads: Vec<std::thread::JoinHandle<()>>) {
    if threads.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}
