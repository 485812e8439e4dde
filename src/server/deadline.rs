//! The per-connection service wrapper: counts each request as activity on its connection
//! (see `activity.rs`), and at the shutdown deadline answers what is still unanswered
//! instead of dropping it: a request without a response head gets 503 `shutting_down`,
//! an open event stream gets one final SSE error event and ends; any other body still
//! being written ends with an error (its head is already out, nothing else can be said).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::activity::{ConnActivity, RequestActivity};
use crate::body::{sse_data, Body, BoxError};
use crate::error::GatewayError;
use crate::facts::Served;
use crate::record::CallRecord;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

#[derive(Clone)]
pub struct ConnService<S> {
    inner: S,
    activity: Arc<ConnActivity>,
    deadline: CancellationToken,
}

impl<S> ConnService<S> {
    pub fn new(inner: S, activity: Arc<ConnActivity>, deadline: CancellationToken) -> Self {
        ConnService {
            inner,
            activity,
            deadline,
        }
    }
}

impl<S, B> Service<Request<B>> for ConnService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let activity = RequestActivity::start(&self.activity);
        let deadline = self.deadline.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = tokio::select! {
                // A response that is ready wins over a deadline that fired at the same time.
                biased;
                Ok(response) = future => response,
                _ = deadline.cancelled() => {
                    // Dropping the request future cancels the upstream call with it.
                    return Ok(GatewayError::ShuttingDown.into_response());
                }
            };
            let sse = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let (parts, body) = response.into_parts();
            let call = parts.extensions.get::<Served>().map(|s| s.call.clone());
            let body = DeadlineBody {
                inner: Some(body),
                call,
                deadline: Box::pin(deadline.cancelled_owned()),
                sse,
                _activity: activity,
            };
            Ok(Response::from_parts(parts, body.boxed_unsync()))
        })
    }
}

/// A response body that the shutdown deadline ends.
struct DeadlineBody {
    /// `None` once the deadline ended it.
    inner: Option<Body>,
    /// The upstream answer's record, told when the deadline (not the client) ends it.
    call: Option<Arc<CallRecord>>,
    deadline: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    sse: bool,
    /// Until the body ends or is dropped, the connection is not idle.
    _activity: RequestActivity,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(call) = &this.call {
            call.cut_by(&GatewayError::ShuttingDown);
        }
        // Drop the inner body now: its upstream stream is cancelled and its guards fire.
        this.inner = None;
        if this.sse {
            let event =
                serde_json::to_vec(&GatewayError::ShuttingDown.to_json()).unwrap_or_default();
            Poll::Ready(Some(Ok(Frame::data(sse_data(&event)))))
        } else {
            Poll::Ready(Some(Err(
                "the shutdown deadline ended the response body".into()
            )))
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, |b| b.size_hint())
    }
}
