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
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::parse_errors;
use crate::body::relay::deadline_after;

/// The HTTP/2 client preface starts with this; such a connection has no HTTP/1 heads.
pub(super) const H2_PREFACE_START: &[u8] = b"PRI ";

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

    /// Whatever is written now is hyper's own answer to a head it could not parse: an
    /// HTTP/1 head has started arriving and no request was handed to the service.
    fn unparsed_head(&self) -> bool {
        self.with(|s| s.active == 0 && s.awaiting_head && s.h2 == Some(false))
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
    ///
    /// One timer for the connection's life, checked when it fires and moved only when the
    /// deadline in force comes earlier than it (a new head's shorter header timeout). A
    /// request starting or ending does not touch it: re-arming a timer on every request
    /// made tokio wake its own event loop through the eventfd (the new idle deadline was
    /// earlier than the request deadline the loop had last slept towards), one extra
    /// `write` and `epoll_wait` per request (strace, BENCHMARKS.md).
    pub async fn expired(&self) -> Expired {
        let first = self.deadline().map_or_else(
            || deadline_after(Instant::now(), self.timeouts.idle),
            |(at, _)| at,
        );
        let timer = tokio::time::sleep_until(first);
        tokio::pin!(timer);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before reading the state, so a change in between is not missed.
            changed.as_mut().enable();
            if let Some((at, _)) = self.deadline() {
                if at < timer.deadline() {
                    timer.as_mut().reset(at);
                }
            }
            tokio::select! {
                () = timer.as_mut() => match self.deadline() {
                    Some((at, why)) if at <= Instant::now() => return why,
                    Some((at, _)) => timer.as_mut().reset(at),
                    // A request is in progress: look again one idle period on.
                    None => timer
                        .as_mut()
                        .reset(deadline_after(Instant::now(), self.timeouts.idle)),
                },
                () = &mut changed => {}
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
    /// The accepted socket, telling `ConnActivity` when bytes arrive, and giving hyper's own
    /// parse-error responses a JSON body (`parse_errors.rs`).
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        activity: Arc<ConnActivity>,
        // A rewritten error response and how much of it is written.
        pending: Option<(Vec<u8>, usize)>,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        ActivityIo {
            inner,
            activity,
            pending: None,
        }
    }
}

impl<T: AsyncWrite> ActivityIo<T> {
    /// Writes what is left of a rewritten error response before anything else.
    fn poll_pending(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while let Some((bytes, written)) = this.pending.as_mut() {
            if *written >= bytes.len() {
                *this.pending = None;
                break;
            }
            let n = ready!(this.inner.as_mut().poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written = written.saturating_add(n);
        }
        Poll::Ready(Ok(()))
    }

    /// `Some(len)`: `head` (all `len` bytes hyper wanted written) was one of hyper's own
    /// error responses and its rewrite is now pending.
    fn take_error_head(self: Pin<&mut Self>, head: &[u8]) -> Option<usize> {
        if !parse_errors::may_be_error_head(head) || !self.activity.unparsed_head() {
            return None;
        }
        let rewritten = parse_errors::with_json_body(head)?;
        *self.project().pending = Some((rewritten, 0));
        Some(head.len())
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
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.as_mut().poll_pending(cx))?;
        if let Some(n) = self.as_mut().take_error_head(buf) {
            // Claim it written; what goes out is the rewrite, flushed from now on.
            let _ = self.as_mut().poll_pending(cx)?;
            return Poll::Ready(Ok(n));
        }
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_pending(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_pending(cx))?;
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.as_mut().poll_pending(cx))?;
        let first = bufs.iter().find(|b| !b.is_empty());
        if first.is_some_and(|b| parse_errors::may_be_error_head(b)) {
            let whole: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(n) = self.as_mut().take_error_head(&whole) {
                let _ = self.as_mut().poll_pending(cx)?;
                return Poll::Ready(Ok(n));
            }
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    async fn expires_after(activity: &ConnActivity) -> (Expired, Duration) {
        let started = Instant::now();
        let why = activity.expired().await;
        (why, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_gets_the_header_timeout() {
        let a = ConnActivity::new(T);
        assert_eq!(expires_after(&a).await, (Expired::HeaderTimeout, T.header));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_response_the_idle_timeout_then_a_new_head_the_header_timeout() {
        let a = ConnActivity::new(T);
        a.bytes_read(b"POST / HTTP/1.1\r\n");
        let request = RequestActivity::start(&a);
        // Nothing expires while a request is in progress, however long it takes.
        let waited = tokio::time::timeout(Duration::from_secs(3600), a.expired()).await;
        assert!(waited.is_err());
        drop(request);
        assert_eq!(expires_after(&a).await, (Expired::IdleTimeout, T.idle));

        let a = ConnActivity::new(T);
        drop(RequestActivity::start(&a));
        tokio::time::advance(Duration::from_secs(30)).await;
        a.bytes_read(b"PO");
        assert_eq!(expires_after(&a).await, (Expired::HeaderTimeout, T.header));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_without_streams_idles_instead() {
        let a = ConnActivity::new(T);
        a.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(!a.unparsed_head());
        a.bytes_read(b"\x00\x00\x08\x06");
        assert_eq!(expires_after(&a).await, (Expired::IdleTimeout, T.idle));
    }
}
