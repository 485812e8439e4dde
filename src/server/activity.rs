//! Per-connection slow-client timers: how long a connection may sit without a request in
//! progress.
//!
//! hyper 1 has one HTTP/1 timer (`header_read_timeout`) that runs both while a connection is
//! idle between requests and while a head is arriving, so it cannot give an idle keep-alive
//! connection 75 s and a half-sent head 10 s; HTTP/2 has no idle timer at all, and the auto
//! builder's version sniffing waits forever for its first bytes. So the gateway keeps its own:
//! - `ActivityIo` wraps the socket and notes the first byte read while no request is active
//!   (a head has started arriving);
//! - `ConnActivity` counts requests in progress (from the service call until the response
//!   body ends or is dropped);
//! - `expired` resolves when the connection has had no request in progress for the idle
//!   timeout, or when a head (or a fresh connection's first request) has taken longer than
//!   the header timeout. The accept loop then closes the connection: nothing is being
//!   answered on it, so nothing is lost.
//!
//! Request bodies are the request's own business (`body_read_timeout` in the body layer).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The HTTP/2 client preface starts with this; such a connection has no HTTP/1 heads.
const H2_PREFACE_START: &[u8] = b"PRI ";

#[derive(Debug)]
struct State {
    /// Requests in progress on this connection.
    active: usize,
    /// Bytes of a request head have arrived (or the connection is new) and no request has
    /// started since.
    awaiting_head: bool,
    /// Start of the current idle or head phase.
    since: Instant,
    /// The first read decided the protocol: HTTP/2 connections multiplex, and frames
    /// between streams (PING, SETTINGS) are not heads.
    h2: Option<bool>,
}

/// What a connection may do, and for how long, before it is closed.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

#[derive(Debug)]
pub struct ConnActivity {
    state: Mutex<State>,
    changed: Notify,
    timeouts: Timeouts,
}

/// Why a connection was closed by its timers (a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderTimeout,
    IdleTimeout,
}

impl ConnActivity {
    pub fn new(timeouts: Timeouts) -> Arc<ConnActivity> {
        Arc::new(ConnActivity {
            // A fresh connection must send its first head within the header timeout.
            state: Mutex::new(State {
                active: 0,
                awaiting_head: true,
                since: Instant::now(),
                h2: None,
            }),
            changed: Notify::new(),
            timeouts,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // The state stays consistent at every step, so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// A request's head is complete and the service has it.
    pub fn request_started(&self) {
        self.with(|s| {
            s.active = s.active.saturating_add(1);
            s.awaiting_head = false;
        });
        self.changed.notify_one();
    }

    /// A request's response body ended or was dropped.
    pub fn request_ended(&self) {
        self.with(|s| {
            s.active = s.active.saturating_sub(1);
            if s.active == 0 {
                s.since = Instant::now();
            }
        });
        self.changed.notify_one();
    }

    fn bytes_read(&self, first: &[u8]) {
        let started = self.with(|s| {
            let h2 = *s.h2.get_or_insert_with(|| {
                let n = first.len().min(H2_PREFACE_START.len());
                first[..n] == H2_PREFACE_START[..n]
            });
            if h2 {
                // The preface is not a head: an HTTP/2 connection idles until its first stream.
                if s.awaiting_head && s.active == 0 {
                    s.awaiting_head = false;
                    s.since = Instant::now();
                    return true;
                }
                return false;
            }
            if s.active == 0 && !s.awaiting_head {
                s.awaiting_head = true;
                s.since = Instant::now();
                return true;
            }
            false
        });
        if started {
            self.changed.notify_one();
        }
    }

    fn deadline(&self) -> Option<(Instant, Expired)> {
        self.with(|s| {
            if s.active > 0 {
                None
            } else if s.awaiting_head {
                Some((s.since + self.timeouts.header, Expired::HeaderTimeout))
            } else {
                Some((s.since + self.timeouts.idle, Expired::IdleTimeout))
            }
        })
    }

    /// Resolves when the connection has been without a request for too long.
    pub async fn expired(&self) -> Expired {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before reading the state, so a change in between is not missed.
            changed.as_mut().enable();
            match self.deadline() {
                None => changed.await,
                Some((at, why)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            // A request may have started just now: look again.
                            if self.deadline().is_some_and(|(again, _)| again <= Instant::now()) {
                                return why;
                            }
                        }
                        _ = &mut changed => {}
                    }
                }
            }
        }
    }
}

/// Counts one request in progress until dropped.
pub struct RequestActivity(Arc<ConnActivity>);

impl RequestActivity {
    pub fn start(activity: &Arc<ConnActivity>) -> RequestActivity {
        activity.request_started();
        RequestActivity(activity.clone())
    }
}

impl Drop for RequestActivity {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project_lite::pin_project! {
    /// The accepted socket, telling `ConnActivity` when bytes arrive.
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        activity: Arc<ConnActivity>,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        ActivityIo { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.activity.bytes_read(new);
            }
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
