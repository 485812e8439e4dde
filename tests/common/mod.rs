//! Test harness: starts the real gateway and scriptable mock upstreams on 127.0.0.1:0.
//!
//! `Gateway::start(config, tenants)` writes the config to a temp dir, loads it through the
//! same loader as `deliberate serve`, and runs `deliberate::run` on ephemeral ports.
//! `MockUpstream::start(handler)` answers each request with a `MockReply` chosen by the
//! test, records what it received, and notices when a client goes away mid-stream.

#![allow(dead_code)]
// The harness spawns its own mock servers; they die with the test runtime.
#![allow(clippy::disallowed_methods)]

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
use tokio_util::sync::CancellationToken;

mod files;
#[allow(unused_imports)] // only the reload tests use it
pub use files::admin_token;

pub const KEY: &str = "sk-test-tenant-key";
pub const OTHER_KEY: &str = "sk-test-other-key";

/// Every test is bounded: no request may take longer than this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Gateway {
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn sha256_hex(key: &str) -> String {
    hex::encode(deliberate::config::hash_api_key(key))
}

/// A tenant policy using `KEY`, with the given fast and reasoning models.
pub fn tenant_toml(name: &str, key: &str, fast: &str, reasoning: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\napi_keys = [{{ sha256 = \"{}\" }}]\nfast_model = \"{fast}\"\nreasoning_model = \"{reasoning}\"\n{extra}\n",
        sha256_hex(key)
    )
}

impl Gateway {
    /// Starts a gateway with `config` (deliberate.toml text) and tenant policy files.
    pub async fn start(config: &str, tenants: &[(&str, String)]) -> Gateway {
        deliberate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("deliberate.toml");
        std::fs::write(&config_path, config).unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        for (name, text) in tenants {
            std::fs::write(policies.join(format!("{name}.toml")), text).unwrap();
        }
        let loaded = deliberate::config::load(&config_path, &policies)
            .unwrap_or_else(|p| panic!("test config is invalid:\n{p}"));
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api_addr, admin_addr) = (api.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(deliberate::run(
            api,
            admin,
            loaded.snapshot,
            shutdown.clone(),
        ));
        Gateway {
            api: api_addr,
            admin: admin_addr,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// A gateway with `config` and one tenant, `acme` (key `KEY`), whose fast and reasoning
    /// models are `fast` and `reasoning`.
    pub async fn start_acme(config: &str, fast: &str, reasoning: &str) -> Gateway {
        Gateway::start(
            config,
            &[("acme", tenant_toml("acme", KEY, fast, reasoning, ""))],
        )
        .await
    }

    /// A gateway whose `fast`/`reasoning` models are OpenAI-compatible models at `addr`.
    pub async fn with_openai_at(addr: SocketAddr, extra_config: &str) -> Gateway {
        let config = openai_config(addr, extra_config);
        Gateway::start_acme(&config, "chat-model", "think-model").await
    }

    /// A gateway whose `fast`/`reasoning` models are OpenAI-compatible models on `upstream`.
    pub async fn with_openai_upstream(upstream: &MockUpstream, extra_config: &str) -> Gateway {
        Gateway::with_openai_at(upstream.addr, extra_config).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POSTs a chat completion as the test tenant.
    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.chat_with(body, &[]).await
    }

    pub async fn chat_with(
        &self,
        body: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        tokio::time::timeout(TEST_TIMEOUT, request.send())
            .await
            .expect("request finished in time")
            .expect("request sent")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// deliberate.toml with `chat-model` (fast) and `think-model` (reasoning, o-series style
/// capabilities) served by an OpenAI-compatible provider at `addr`.
pub fn openai_config(addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[providers.mock]
kind = "openai"
base_url = "http://{addr}/v1"

[models.chat-model]
provider = "mock"
tier = "fast"
price = {{ input_per_1m = 0.15, output_per_1m = 0.6 }}

[models.think-model]
provider = "mock"
tier = "reasoning"
upstream_model = "think-model-2025"
price = {{ input_per_1m = 1.1, output_per_1m = 4.4 }}
capabilities = {{ max_tokens_param = "max_completion_tokens", system_role = "developer", reasoning_effort = true, unsupported_params = ["temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs"], on_unsupported = "drop" }}

{extra}
"#
    )
}

/// Reads a whole SSE response body as text (bounded in time).
pub async fn read_text(response: reqwest::Response) -> String {
    tokio::time::timeout(TEST_TIMEOUT, response.text())
        .await
        .expect("body finished in time")
        .expect("body read")
}

/// The `data:` payloads of an SSE body, in order (comments skipped).
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// Sum of a metric's samples whose label set contains all `labels` (`k="v"` strings).
pub fn metric_value(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

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
        };
        let handler: Handler = Arc::new(handler);
        let state = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
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

/// Reads the body until it contains a `data:` event; returns what was read so far.
pub async fn read_until_data(response: &mut reqwest::Response) -> String {
    let mut text = String::new();
    while !text.contains("data:") {
        let next = tokio::time::timeout(TEST_TIMEOUT, response.chunk())
            .await
            .expect("chunk in time")
            .expect("body read");
        let Some(bytes) = next else {
            panic!("stream ended before any data event: {text:?}")
        };
        text.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    text
}

/// Fetches the gateway's metrics (bounded in time) and sums `name`'s samples whose label set
/// contains all `labels`.
pub async fn metrics_value(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let metrics = tokio::time::timeout(TEST_TIMEOUT, gw.metrics())
        .await
        .expect("metrics in time");
    metric_value(&metrics, name, labels)
}

/// Checks an error response: `status`, an `x-request-id` header, a JSON content type, and a
/// JSON body whose `error` has this `type` and `code`, a string `message` and a `param`.
/// Returns the whole body.
pub async fn expect_error_body(
    response: reqwest::Response,
    status: u16,
    error_type: &str,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(
        response.headers().contains_key("x-request-id"),
        "x-request-id on errors"
    );
    let content_type = response
        .headers()
        .get("content-type")
        .expect("error responses have a content type")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "content-type is JSON: {content_type}"
    );
    let text = read_text(response).await;
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body is JSON ({e}): {text}"));
    let error = &body["error"];
    assert_eq!(error["type"], error_type, "error.type in {text}");
    assert_eq!(error["code"], code, "error.code in {text}");
    assert!(error["message"].is_string(), "error.message in {text}");
    assert!(error.get("param").is_some(), "error.param in {text}");
    body
}

/// Like `expect_error_body`, but returns only the `error` object.
pub async fn expect_error(
    response: reqwest::Response,
    status: u16,
    error_type: &str,
    code: &str,
) -> serde_json::Value {
    expect_error_body(response, status, error_type, code).await["error"].clone()
}

/// Asserts that an `error` object's `message` contains `needle`.
pub fn assert_message_contains(error: &serde_json::Value, needle: &str) {
    assert!(
        error["message"].as_str().unwrap().contains(needle),
        "{error}"
    );
}

/// Asserts that the SSE `event` payload is the JSON of `expected`.
pub fn assert_event(event: &str, expected: serde_json::Value) {
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(event).unwrap(),
        expected
    );
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
