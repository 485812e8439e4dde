//! `SseRelay`: the client-facing body of every streaming completion.
//!
//! It relays an upstream event stream (already OpenAI-shaped SSE bytes, whatever the provider)
//! frame by frame, never buffering, and owns the stream's timing rules:
//! - first-token deadline: no data within it ends the stream;
//! - idle timeout: the gap allowed between two data frames;
//! - total deadline: the request's absolute end;
//! - keep-alive: while waiting (a reasoning model may think for minutes) it sends SSE comment
//!   lines so idle proxies and load balancers do not cut the connection.
//!
//! Once the 200 has gone out a failure cannot change the status, so any upstream error or
//! timeout ends the stream with exactly one final `data: {"error":{...}}` event.
//! The relay may start before the upstream has even answered (`RelaySource::Pending`): that
//! is how keep-alives flow while a slow provider holds back its response headers.

// Numbers here come from providers and config: no unchecked arithmetic (issue 10).
#![deny(clippy::arithmetic_side_effects)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body as HttpBody, Frame};
use tokio::time::{Instant, Sleep};

use super::{sse_data, BoxError, SSE_KEEPALIVE};
use crate::error::{GatewayError, TimeoutKind};
use crate::record::CallRecorder;

/// About thirty years: what "never" means for a deadline (as tokio's own far future).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `from + after` without the panic of `Instant + Duration` on overflow: a duration too long
/// to represent (a config value, a provider's `Retry-After`) means "far in the future".
pub fn deadline_after(from: Instant, after: Duration) -> Instant {
    from.checked_add(after.min(FAR_FUTURE))
        .or_else(|| from.checked_add(FAR_FUTURE))
        .unwrap_or(from)
}

/// A piece of an upstream stream of OpenAI-shaped SSE bytes.
pub struct StreamChunk {
    pub bytes: Bytes,
    /// How many `data:` events from the provider it completes (a chunk may carry many:
    /// the provider body joins what one read brought). Zero for comments and partial
    /// events, which are relayed but are not the first token and do not reset the idle
    /// timeout: a provider that only sends pings must still hit its deadlines. The count is
    /// the output estimate when the provider reports no usage (about one token per event).
    pub data_events: u64,
}

impl StreamChunk {
    pub fn data(bytes: Bytes) -> StreamChunk {
        StreamChunk::events(bytes, 1)
    }

    pub fn events(bytes: Bytes, data_events: u64) -> StreamChunk {
        StreamChunk { bytes, data_events }
    }
}

/// An upstream stream of OpenAI-shaped SSE bytes.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, GatewayError>> + Send>>;
/// An upstream call that has not answered yet; resolves to its event stream.
pub type PendingStream = Pin<Box<dyn Future<Output = Result<EventStream, GatewayError>> + Send>>;

pub enum RelaySource {
    Pending(PendingStream),
    Streaming(EventStream),
}

/// The timing rules of one stream. Deadlines are absolute instants.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    pub first_token_deadline: Instant,
    pub total_deadline: Instant,
    pub idle_timeout: Duration,
    pub keepalive_interval: Duration,
}

enum State {
    Waiting(PendingStream),
    Streaming(EventStream),
    Done,
}

pub struct SseRelay {
    state: State,
    timing: StreamTiming,
    saw_data: bool,
    /// When the last data event went out (or the relay started): the idle timeout counts
    /// from here.
    last_data: Instant,
    /// When the last data event or keep-alive went out: the next keep-alive is due an
    /// interval later.
    last_sent: Instant,
    /// Fires at the earliest of: first-token (or idle) deadline and the total deadline. Set
    /// at the first data event, then not moved on every data event (a timer-wheel update per
    /// chunk): when it fires, the deadline is checked against `last_data` and re-armed if
    /// data moved it later.
    deadline: Pin<Box<Sleep>>,
    /// Likewise checked against `last_sent` when it fires.
    keepalive: Pin<Box<Sleep>>,
    recorder: Arc<CallRecorder>,
}

impl SseRelay {
    pub fn new(source: RelaySource, timing: StreamTiming, recorder: Arc<CallRecorder>) -> Self {
        let state = match source {
            RelaySource::Pending(pending) => State::Waiting(pending),
            RelaySource::Streaming(stream) => State::Streaming(stream),
        };
        let first = timing.first_token_deadline.min(timing.total_deadline);
        SseRelay {
            state,
            timing,
            saw_data: false,
            last_data: Instant::now(),
            last_sent: Instant::now(),
            deadline: Box::pin(tokio::time::sleep_until(first)),
            keepalive: Box::pin(tokio::time::sleep(timing.keepalive_interval)),
            recorder,
        }
    }

    /// The deadline in force now: first token (until the first data event), then idle since
    /// the last one; never past the total deadline.
    fn current_deadline(&self) -> Instant {
        let by_data = if self.saw_data {
            deadline_after(self.last_data, self.timing.idle_timeout)
        } else {
            self.timing.first_token_deadline
        };
        by_data.min(self.timing.total_deadline)
    }

    /// Ends the stream with one error event.
    fn fail(&mut self, error: GatewayError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        self.recorder.stream_failed(&error);
        let json = serde_json::to_vec(&error.to_json()).unwrap_or_default();
        Poll::Ready(Some(Ok(Frame::data(sse_data(&json)))))
    }

    fn timeout_error(&self) -> GatewayError {
        let now = Instant::now();
        let (which, after) = if now >= self.timing.total_deadline {
            (TimeoutKind::Total, self.timing.total_deadline)
        } else if !self.saw_data {
            (TimeoutKind::FirstToken, self.timing.first_token_deadline)
        } else {
            (TimeoutKind::Idle, now)
        };
        let after_ms = match which {
            TimeoutKind::Idle => millis(self.timing.idle_timeout),
            _ => millis(after.saturating_duration_since(self.recorder.started())),
        };
        GatewayError::UpstreamTimeout {
            provider: self.recorder.provider().to_string(),
            which,
            after_ms,
        }
    }
}

/// Whole milliseconds, saturating (a `u128` does not fit an error message's `u64`).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl HttpBody for SseRelay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Waiting(pending) => match pending.as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => {
                        this.state = State::Streaming(stream);
                        continue;
                    }
                    Poll::Ready(Err(error)) => return this.fail(error),
                    Poll::Pending => break,
                },
                State::Streaming(stream) => match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(StreamChunk { bytes, data_events }))) => {
                        if bytes.is_empty() {
                            continue;
                        }
                        if data_events == 0 {
                            return Poll::Ready(Some(Ok(Frame::data(bytes))));
                        }
                        this.last_data = Instant::now();
                        this.last_sent = this.last_data;
                        this.recorder.add_data_events(data_events);
                        if !this.saw_data {
                            this.saw_data = true;
                            this.recorder.first_token();
                            // The idle deadline may be earlier than the first-token one: set it
                            // once; later data only moves it later, which is checked lazily.
                            let due = this.current_deadline();
                            this.deadline.as_mut().reset(due);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Poll::Ready(Some(Err(error))) => return this.fail(error),
                    Poll::Ready(None) => {
                        this.state = State::Done;
                        this.recorder.stream_completed();
                        return Poll::Ready(None);
                    }
                    Poll::Pending => break,
                },
            }
        }
        // Nothing from upstream yet: check the clocks.
        while this.deadline.as_mut().poll(cx).is_ready() {
            let due = this.current_deadline();
            if Instant::now() >= due {
                let error = this.timeout_error();
                return this.fail(error);
            }
            // Data came since the timer was set: wait for the deadline it moved to.
            this.deadline.as_mut().reset(due);
        }
        while this.keepalive.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = deadline_after(this.last_sent, this.timing.keepalive_interval);
            if now < due {
                this.keepalive.as_mut().reset(due);
                continue;
            }
            // Counted from now: the next comment is an interval away, unless data comes.
            this.last_sent = now;
            this.keepalive
                .as_mut()
                .reset(deadline_after(now, this.timing.keepalive_interval));
            // Register the new timer with the waker before returning.
            let _ = this.keepalive.as_mut().poll(cx);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(SSE_KEEPALIVE)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
