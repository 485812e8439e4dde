//! `GuardedBody`: a pass-through body that reports how it ended, exactly once.
//!
//! The metrics layer must record a request's duration when the *stream* ends, not when the
//! headers go out, and must still record it when the client disconnects (the body is dropped
//! unfinished). The in-flight limit must hold its permit for the same span. Both wrap the
//! response body in a `GuardedBody` whose `on_end` callback runs once with the `BodyEnd`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::{Body, BoxError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// The body reached its end.
    Complete,
    /// The body yielded an error.
    Error,
    /// The body was dropped before its end: the client went away.
    Dropped,
}

pub struct GuardedBody<F: FnOnce(BodyEnd) + Send + 'static> {
    inner: Body,
    on_end: Option<F>,
}

impl<F: FnOnce(BodyEnd) + Send + 'static> GuardedBody<F> {
    pub fn new(inner: Body, on_end: F) -> Self {
        let mut guarded = GuardedBody {
            inner,
            on_end: Some(on_end),
        };
        // An empty body never gets polled by hyper: it is complete already.
        if guarded.inner.is_end_stream() {
            guarded.fire(BodyEnd::Complete);
        }
        guarded
    }

    fn fire(&mut self, end: BodyEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(end);
        }
    }
}

impl<F: FnOnce(BodyEnd) + Send + 'static> Drop for GuardedBody<F> {
    fn drop(&mut self) {
        self.fire(BodyEnd::Dropped);
    }
}

// `Body` is `Unpin` (it is boxed) and `F` is only moved out, never pinned.
impl<F: FnOnce(BodyEnd) + Send + 'static> Unpin for GuardedBody<F> {}

impl<F: FnOnce(BodyEnd) + Send + 'static> HttpBody for GuardedBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.fire(BodyEnd::Complete),
            Poll::Ready(Some(Err(_))) => this.fire(BodyEnd::Error),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.fire(BodyEnd::Complete),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (
        Arc<Mutex<Vec<BodyEnd>>>,
        impl FnOnce(BodyEnd) + Send + 'static,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, move |end| sink.lock().unwrap().push(end))
    }

    #[tokio::test]
    async fn fires_once_on_complete() {
        let (seen, cb) = recorder();
        let body = GuardedBody::new(full("hello"), cb);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(*seen.lock().unwrap(), vec![BodyEnd::Complete]);
    }

    #[test]
    fn fires_on_drop_when_unfinished() {
        let (seen, cb) = recorder();
        drop(GuardedBody::new(full("hello"), cb));
        assert_eq!(*seen.lock().unwrap(), vec![BodyEnd::Dropped]);
    }
}
