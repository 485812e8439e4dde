//! `TeeBody`: a pass-through body that keeps a capped copy of the bytes it relays.
//!
//! The response cache stores an answer only after the client got all of it: frames go on
//! at full speed, a copy is kept up to `cap` bytes (past the cap the copy is dropped
//! quietly), and `on_complete` runs with the copy only when the body reached its end.
//! An error or a drop before the end (client gone) never calls it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::{Body, BoxError};

pub struct TeeBody<F: FnOnce(Bytes) + Send + 'static> {
    inner: Body,
    /// `None` once the copy passed the cap or the body failed.
    copy: Option<Vec<u8>>,
    cap: usize,
    on_complete: Option<F>,
}

impl<F: FnOnce(Bytes) + Send + 'static> TeeBody<F> {
    pub fn new(inner: Body, cap: usize, on_complete: F) -> Self {
        TeeBody {
            inner,
            copy: Some(Vec::new()),
            cap,
            on_complete: Some(on_complete),
        }
    }

    fn complete(&mut self) {
        if let (Some(copy), Some(f)) = (self.copy.take(), self.on_complete.take()) {
            f(Bytes::from(copy));
        }
        self.on_complete = None;
    }

    fn abandon(&mut self) {
        self.copy = None;
        self.on_complete = None;
    }
}

// `Body` is `Unpin` (it is boxed) and `F` is only moved out, never pinned.
impl<F: FnOnce(Bytes) + Send + 'static> Unpin for TeeBody<F> {}

impl<F: FnOnce(Bytes) + Send + 'static> HttpBody for TeeBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(copy)) = (frame.data_ref(), this.copy.as_mut()) {
                    if copy.len() + data.len() > this.cap {
                        this.abandon();
                    } else {
                        copy.extend_from_slice(data);
                    }
                }
                if this.inner.is_end_stream() {
                    this.complete();
                }
            }
            Poll::Ready(None) => this.complete(),
            Poll::Ready(Some(Err(_))) => this.abandon(),
            Poll::Pending => {}
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

    #[tokio::test]
    async fn copies_up_to_the_cap() {
        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let body = TeeBody::new(full("hello"), 5, move |b| *sink.lock().unwrap() = Some(b));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello");
        assert_eq!(seen.lock().unwrap().as_deref(), Some(&b"hello"[..]));

        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let body = TeeBody::new(full("hello!"), 5, move |b| *sink.lock().unwrap() = Some(b));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello!");
        assert!(seen.lock().unwrap().is_none());
    }

    #[test]
    fn never_completes_when_dropped() {
        let seen = Arc::new(Mutex::new(false));
        let sink = seen.clone();
        drop(TeeBody::new(full("x"), 5, move |_| {
            *sink.lock().unwrap() = true
        }));
        assert!(!*seen.lock().unwrap());
    }
}
