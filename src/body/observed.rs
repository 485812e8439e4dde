//! `ObservedBody`: the one wrapper around every response body, and `OnEnd`, the work layers
//! leave for it.
//!
//! Several layers must act when a response *body* ends, not when its head goes out: the
//! in-flight permit is released, the rate-limit reservation reconciled, the cost settled, a
//! cached answer stored, the request counted. Instead of each wrapping (and boxing) the body
//! again, each layer adds a hook to the response's `OnEnd` extension on the way back, and the
//! metrics layer wraps the body once in an `ObservedBody` that runs every hook exactly once,
//! innermost layer first: at the end of the stream, on a body error, or when the body is
//! dropped unfinished (the client went away), including an empty body that is never polled.
//! A layer may also ask for a capped copy of the bytes (the cache's tee); the copy is handed
//! to the hooks only if the body completed within the cap.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

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

/// How a response body ended, as its hooks see it.
#[derive(Debug)]
pub struct Ended {
    pub end: BodyEnd,
    /// From when the body was wrapped to its first data frame.
    pub first_byte_after: Option<Duration>,
    /// The bytes relayed, if a copy was asked for and the body completed within its cap.
    pub copy: Option<Bytes>,
}

type Hook = Box<dyn FnOnce(&Ended) + Send>;

#[derive(Default)]
struct Pending {
    hooks: Vec<Hook>,
    copy_cap: Option<usize>,
}

/// Response extension: the end-of-body work of the layers below. (Extensions must be
/// `Clone + Sync`, hence the shared cell; only the layers on one response's way back and
/// then its `ObservedBody` ever touch it.)
#[derive(Clone, Default)]
pub struct OnEnd(Arc<Mutex<Pending>>);

impl OnEnd {
    /// The response's `OnEnd`, added if it has none yet.
    pub fn of<B>(response: &mut Response<B>) -> &OnEnd {
        response.extensions_mut().get_or_insert_default::<OnEnd>()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `hook` once when the body ends.
    pub fn push(&self, hook: impl FnOnce(&Ended) + Send + 'static) {
        self.pending().hooks.push(Box::new(hook));
    }

    /// Keeps a copy of the body, up to `cap` bytes, for the hooks.
    pub fn copy_up_to(&self, cap: usize) {
        self.pending().copy_cap = Some(cap);
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }
}

pub struct ObservedBody {
    inner: Body,
    hooks: Vec<Hook>,
    /// `None` when no copy was asked for, or once it passed its cap.
    copy: Option<Vec<u8>>,
    copy_cap: usize,
    wrapped_at: Instant,
    first_byte_after: Option<Duration>,
}

impl ObservedBody {
    /// Wraps `body` with the hooks `on_end` holds (if any) and then `last`.
    pub fn new(
        inner: Body,
        on_end: Option<OnEnd>,
        last: impl FnOnce(&Ended) + Send + 'static,
    ) -> Self {
        let pending = on_end.map(|o| o.take()).unwrap_or_default();
        let mut hooks = pending.hooks;
        hooks.push(Box::new(last));
        let mut observed = ObservedBody {
            inner,
            hooks,
            copy: pending.copy_cap.map(|_| Vec::new()),
            copy_cap: pending.copy_cap.unwrap_or(0),
            wrapped_at: Instant::now(),
            first_byte_after: None,
        };
        // An empty body never gets polled by hyper: it is complete already.
        if observed.inner.is_end_stream() {
            observed.fire(BodyEnd::Complete);
        }
        observed
    }

    fn fire(&mut self, end: BodyEnd) {
        if self.hooks.is_empty() {
            return;
        }
        let copy = match end {
            BodyEnd::Complete => self.copy.take().map(Bytes::from),
            _ => None,
        };
        let ended = Ended {
            end,
            first_byte_after: self.first_byte_after,
            copy,
        };
        for hook in self.hooks.drain(..) {
            hook(&ended);
        }
    }

    fn observe(&mut self, data: &Bytes) {
        if self.first_byte_after.is_none() && !data.is_empty() {
            self.first_byte_after = Some(self.wrapped_at.elapsed());
        }
        if let Some(copy) = self.copy.as_mut() {
            if copy.len().saturating_add(data.len()) > self.copy_cap {
                self.copy = None;
            } else {
                copy.extend_from_slice(data);
            }
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.fire(BodyEnd::Dropped);
    }
}

impl HttpBody for ObservedBody {
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
                if let Some(data) = frame.data_ref() {
                    this.observe(data);
                }
                if this.inner.is_end_stream() {
                    this.fire(BodyEnd::Complete);
                }
            }
            Poll::Ready(None) => this.fire(BodyEnd::Complete),
            Poll::Ready(Some(Err(_))) => this.fire(BodyEnd::Error),
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

    type Seen = Arc<Mutex<Vec<(&'static str, BodyEnd, Option<Bytes>)>>>;

    /// A response whose `OnEnd` has two hooks (named "inner" then "outer") and, if `cap`, a
    /// copy asked for.
    fn observed(body: Body, cap: Option<usize>) -> (ObservedBody, Seen) {
        let seen: Seen = Arc::default();
        let mut response = Response::new(());
        for name in ["inner", "outer"] {
            let sink = seen.clone();
            OnEnd::of(&mut response)
                .push(move |e: &Ended| sink.lock().unwrap().push((name, e.end, e.copy.clone())));
        }
        if let Some(cap) = cap {
            OnEnd::of(&mut response).copy_up_to(cap);
        }
        let sink = seen.clone();
        let on_end = response.extensions_mut().remove::<OnEnd>();
        let body = ObservedBody::new(body, on_end, move |e: &Ended| {
            sink.lock().unwrap().push(("last", e.end, None))
        });
        (body, seen)
    }

    fn names(seen: &Seen) -> Vec<(&'static str, BodyEnd)> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(n, e, _)| (*n, *e))
            .collect()
    }

    #[tokio::test]
    async fn hooks_run_once_in_order_at_the_end_with_the_copy() {
        let (body, seen) = observed(full("hello"), Some(5));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello");
        let complete = BodyEnd::Complete;
        assert_eq!(
            names(&seen),
            vec![("inner", complete), ("outer", complete), ("last", complete)]
        );
        assert_eq!(seen.lock().unwrap()[0].2.as_deref(), Some(&b"hello"[..]));
    }

    #[tokio::test]
    async fn a_copy_past_its_cap_is_dropped_quietly() {
        let (body, seen) = observed(full("hello!"), Some(5));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello!");
        assert!(seen
            .lock()
            .unwrap()
            .iter()
            .all(|(_, _, copy)| copy.is_none()));
    }

    #[test]
    fn a_body_dropped_unfinished_reports_dropped_without_a_copy() {
        let (body, seen) = observed(full("hello"), Some(5));
        drop(body);
        let dropped = BodyEnd::Dropped;
        assert_eq!(
            names(&seen),
            vec![("inner", dropped), ("outer", dropped), ("last", dropped)]
        );
        assert!(seen.lock().unwrap()[0].2.is_none());
    }

    #[test]
    fn an_empty_body_is_complete_before_it_is_polled() {
        let (body, seen) = observed(crate::body::empty(), None);
        assert_eq!(names(&seen).len(), 3);
        drop(body);
        assert_eq!(names(&seen).len(), 3, "fired once");
    }
}
