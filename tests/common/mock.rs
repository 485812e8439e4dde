//! The scriptable mock OpenAI-compatible upstream: answers each request with the
//! `MockReply` the test chooses, records what it received, and notices when a client goes
//! away mid-stream; plus reply builders and the resilience tests' helpers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------
// Mock upstream
// ---------------------------------------------------------------------------------------

/// What the mock answers.
pub enum MockReply {
    /// A whole response.
    Json { status: u16, body: String },
    /// Wait, then answer with the inner reply (response headers are held back too).
    Delay(Duration, Box<MockReply>),
    /// The inner reply with these extra response headers (e.g. `retry-after`).
    WithHeaders(Vec<(&'static str, String)>, Box<MockReply>),
    /// An SSE stream: each event is sent after its delay; then the stream ends as `end` says.
    Stream {
        events: Vec<(Duration, String)>,
        end: StreamEnd,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StreamEnd {
    /// Close the body normally.
    Close,
    /// Break the connection (an upstream crash mid-stream).
    Abort,
    /// Keep the stream open, sending nothing, until the client goes away.
    Hang,
}

impl MockReply {
    pub fn json(body: serde_json::Value) -> MockReply {
        MockReply::Json {
            status: 200,
            body: body.to_string(),
        }
    }

    pub fn error(status: u16, message: &str) -> MockReply {
        MockReply::Json {
            status,
            body: serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}).to_string(),
        }
    }

    /// OpenAI-style stream of `data:` events, `gap` apart, ending with `[DONE]`.
    pub fn sse(chunks: Vec<serde_json::Value>, gap: Duration) -> MockReply {
        let mut events: Vec<(Duration, String)> = chunks
            .into_iter()
            .map(|c| (gap, format!("data: {c}\n\n")))
            .collect();
        events.push((gap, "data: [DONE]\n\n".to_string()));
        MockReply::Stream {
            events,
            end: StreamEnd::Close,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

type Handler = Arc<dyn Fn(&Received) -> MockReply + Send + Sync>;

#[derive(Clone)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Number of streams whose client went away before the stream ended.
    pub cancelled: Arc<Mutex<usize>>,
    /// Connections accepted: how well the gateway reuses them.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl MockUpstream {
    pub async fn start(
        handler: impl Fn(&Received) -> MockReply + Send + Sync + 'static,
    ) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = MockUpstream {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            cancelled: Arc::default(),
            connections: Arc::default(),
        };
        let handler: Handler = Arc::new(handler);
        let state = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                state
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                let (handler, state) = (handler.clone(), state.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (handler, state) = (handler.clone(), state.clone());
                        async move { Ok::<_, Infallible>(state.answer(request, &handler).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        mock
    }

    /// Waits (bounded) until at least `n` requests have arrived: synchronises a test with
    /// what the gateway has sent, instead of sleeping and hoping.
    pub async fn wait_for_requests(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.requests().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the upstream got {} of {n} requests",
                self.requests().len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn cancelled_streams(&self) -> usize {
        *self.cancelled.lock().unwrap()
    }

    async fn answer(&self, request: Request<Incoming>, handler: &Handler) -> Response<MockBody> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let received = Received {
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        };
        self.received.lock().unwrap().push(received.clone());
        let mut reply = handler(&received);
        let mut extra_headers = Vec::new();
        loop {
            match reply {
                MockReply::Delay(wait, inner) => {
                    tokio::time::sleep(wait).await;
                    reply = *inner;
                }
                MockReply::WithHeaders(headers, inner) => {
                    extra_headers.extend(headers);
                    reply = *inner;
                }
                other => {
                    reply = other;
                    break;
                }
            }
        }
        let mut response = self.reply(reply);
        for (name, value) in extra_headers {
            response
                .headers_mut()
                .insert(name, http::HeaderValue::from_str(&value).unwrap());
        }
        response
    }

    fn reply(&self, reply: MockReply) -> Response<MockBody> {
        match reply {
            MockReply::Json { status, body } => Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json")
                .body(MockBody::Full(Full::new(Bytes::from(body))))
                .unwrap(),
            MockReply::Stream { events, end } => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
                let cancelled = self.cancelled.clone();
                tokio::spawn(async move {
                    for (wait, event) in events {
                        tokio::time::sleep(wait).await;
                        if tx.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                            *cancelled.lock().unwrap() += 1;
                            return;
                        }
                    }
                    match end {
                        StreamEnd::Close => {}
                        StreamEnd::Abort => {
                            // Let the last event leave the socket before the crash.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _ = tx
                                .send(Err(std::io::Error::other("mock upstream crashed")))
                                .await;
                        }
                        StreamEnd::Hang => {
                            tx.closed().await;
                            *cancelled.lock().unwrap() += 1;
                        }
                    }
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(MockBody::Stream(Box::pin(StreamBody::new(stream))))
                    .unwrap()
            }
            MockReply::Delay(..) | MockReply::WithHeaders(..) => {
                unreachable!("wrappers are unwrapped above")
            }
        }
    }
}

pub enum MockBody {
    Full(Full<Bytes>),
    Stream(std::pin::Pin<Box<dyn http_body::Body<Data = Bytes, Error = std::io::Error> + Send>>),
}

impl http_body::Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            MockBody::Full(full) => std::pin::Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            MockBody::Stream(stream) => stream.as_mut().poll_frame(cx),
        }
    }
}

/// A minimal OpenAI chat completion for mock replies.
pub fn completion(model: &str, content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

/// A streaming chunk with `content`.
pub fn chunk(content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    })
}

/// An SSE `data:` event carrying `value`, as an OpenAI-compatible upstream writes it.
pub fn data_event(value: &serde_json::Value) -> String {
    format!("data: {value}\n\n")
}

/// A streaming chat request for `model` with one user message.
pub fn stream_request(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

impl MockUpstream {
    /// A mock that answers every request with the same SSE `events`, then ends as `end` says.
    pub async fn stream(events: Vec<(Duration, String)>, end: StreamEnd) -> MockUpstream {
        MockUpstream::start(move |_| MockReply::Stream {
            events: events.clone(),
            end,
        })
        .await
    }

    /// A mock that holds its response head back for `delay`, then streams one chunk, `late`.
    pub async fn late(delay: Duration) -> MockUpstream {
        MockUpstream::start(move |_| {
            MockReply::Delay(
                delay,
                Box::new(MockReply::sse(vec![chunk("late")], Duration::ZERO)),
            )
        })
        .await
    }

    /// A mock that never answers in a test's time (a model still thinking); the `Notify`
    /// is signalled when a request reaches it, so the test knows without sleeping.
    pub async fn thinking() -> (MockUpstream, Arc<tokio::sync::Notify>) {
        let reached = Arc::new(tokio::sync::Notify::new());
        let signal = reached.clone();
        let mock = MockUpstream::start(move |_| {
            signal.notify_one();
            MockReply::Delay(
                Duration::from_secs(600),
                Box::new(MockReply::json(completion("chat-model", "too late"))),
            )
        })
        .await;
        (mock, reached)
    }

    /// Waits (polling) until at least `n` streams were cancelled by the gateway; fails with
    /// `message` if that takes longer than `within`.
    pub async fn wait_for_cancelled(&self, n: usize, within: Duration, message: &str) {
        let deadline = tokio::time::Instant::now() + within;
        while self.cancelled_streams() < n {
            assert!(tokio::time::Instant::now() < deadline, "{message}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Resilience helpers (tests/resilience.rs)
// ---------------------------------------------------------------------------------------

impl MockReply {
    /// `reply` with a `retry-after: <secs>` response header.
    pub fn retry_after(secs: u64, reply: MockReply) -> MockReply {
        MockReply::WithHeaders(vec![("retry-after", secs.to_string())], Box::new(reply))
    }
}

impl MockUpstream {
    /// A mock whose first `n` requests get `failure()`, and every later one `then()`.
    pub async fn failing_first(
        n: usize,
        failure: impl Fn() -> MockReply + Send + Sync + 'static,
        then: impl Fn() -> MockReply + Send + Sync + 'static,
    ) -> MockUpstream {
        let seen = std::sync::atomic::AtomicUsize::new(0);
        MockUpstream::start(move |_| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                failure()
            } else {
                then()
            }
        })
        .await
    }

    /// A mock answering every request with `status` (an OpenAI-shaped error).
    pub async fn always(status: u16) -> MockUpstream {
        MockUpstream::start(move |_| MockReply::error(status, "mock failure")).await
    }

    /// A mock answering every request with a completion saying `content`.
    pub async fn ok(content: &'static str) -> MockUpstream {
        MockUpstream::start(move |r| {
            MockReply::json(completion(r.body["model"].as_str().unwrap_or("m"), content))
        })
        .await
    }

    /// How many requests this mock received.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}
