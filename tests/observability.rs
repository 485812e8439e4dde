//! What the real `deliberate serve` process writes and exports: the JSON access log (one line
//! per request with its facts, never a key, prompt or completion) and OpenTelemetry spans
//! sent to an OTLP/HTTP receiver started here, parented on the client's `traceparent`.

// The harness spawns mock servers and the gateway process; they end with the test.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PROMPT: &str = "the-secret-prompt-words";
const ANSWER: &str = "the-private-completion-words";
/// A client's W3C trace context: trace id, then parent span id.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// An upstream answering JSON or, for `stream: true`, two chunks, a usage chunk and [DONE].
async fn upstream() -> MockUpstream {
    MockUpstream::start(|r| {
        if r.body["stream"] == true {
            let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": "m", "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}});
            MockReply::Stream {
                events: vec![
                    (Duration::ZERO, data_event(&chunk(ANSWER))),
                    (Duration::from_millis(20), data_event(&chunk("!"))),
                    (Duration::ZERO, data_event(&usage)),
                    (Duration::ZERO, "data: [DONE]\n\n".into()),
                ],
                end: StreamEnd::Close,
            }
        } else {
            MockReply::json(completion("chat-model", ANSWER))
        }
    })
    .await
}

/// chat-model on `addr`; think-model on a port where nothing listens, falling back to chat.
fn config(addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[providers.mock]
kind = "openai"
base_url = "http://{addr}/v1"

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"

[models.chat-model]
provider = "mock"
tier = "fast"
price = {{ input_per_1m = 1.0, output_per_1m = 2.0 }}

[models.think-model]
provider = "dead"
tier = "reasoning"
price = {{ input_per_1m = 10.0, output_per_1m = 20.0 }}

[resilience]
max_retries = 0

{extra}
"#
    )
}

fn tenant() -> String {
    tenant_toml(
        "acme",
        KEY,
        "chat-model",
        "think-model",
        "[fallbacks]\nreasoning = [\"chat-model\"]\n\n[cache]\nenabled = true\n",
    )
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "temperature": 0,
        "messages": [{"role": "user", "content": PROMPT}]})
}

/// POSTs a chat request with its own request id and the client's `traceparent`.
async fn post(gw: &GatewayProcess, key: &str, body: &Value) -> (String, u16, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", &id)
        .header("traceparent", traceparent())
        .json(body)
        .timeout(TEST_TIMEOUT)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("whole body");
    (id, status, text)
}

fn assert_number(line: &Value, field: &str) -> f64 {
    line[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is a number in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_json_access_line_with_its_facts_and_no_secrets() {
    let mock = upstream().await;
    let gw = GatewayProcess::spawn(&config(mock.addr, ""), &[("acme", tenant())], &[]);

    // A JSON answer, routed by the named tier; stored in the cache.
    let (id, status, text) = post(&gw, KEY, &body("fast", false)).await;
    assert_eq!(status, 200, "{text}");
    let line = gw.access_line(&id);
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["tenant"], "acme");
    assert_eq!(line["endpoint"], "/v1/chat/completions");
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "ok");
    assert_eq!(line["tier"], "fast");
    assert_eq!(line["model"], "chat-model");
    assert_eq!(line["reason"].as_str().map(str::is_empty), Some(false));
    assert_eq!(line["prompt_tokens"], 10);
    assert_eq!(line["completion_tokens"], 5);
    assert_eq!(line["tokens_estimated"], false);
    // 10 input tokens at $1/M and 5 output at $2/M.
    assert!(
        (assert_number(&line, "cost_usd") - 0.00002).abs() < 1e-9,
        "{line}"
    );
    assert_eq!(line["cache"], "miss");
    assert_eq!(line["fallbacks"], 0);
    assert_eq!(line["trace_id"], TRACE_ID, "the client's trace id");
    assert!(assert_number(&line, "latency_ms") > 0.0);

    // The same request again: a cache hit, billed nothing.
    let (id, status, _) = post(&gw, KEY, &body("fast", false)).await;
    assert_eq!(status, 200);
    let line = gw.access_line(&id);
    assert_eq!(line["cache"], "hit");
    assert_eq!(line["outcome"], "ok");
    assert_eq!(line["model"], "chat-model");
    assert_eq!(assert_number(&line, "cost_usd"), 0.0);

    // A stream (another prompt, or the cache would answer it from the stored JSON answer):
    // logged at its end, with time to first token and the stream's usage.
    let mut stream = body("fast", true);
    stream["messages"][0]["content"] = json!(format!("{PROMPT} as a stream"));
    let (id, status, text) = post(&gw, KEY, &stream).await;
    assert_eq!(status, 200);
    assert!(text.contains("[DONE]"));
    let line = gw.access_line(&id);
    assert_eq!(line["outcome"], "ok");
    assert_eq!(line["status"], 200);
    assert_eq!(line["cache"], "miss", "{line}");
    assert_eq!(line["prompt_tokens"], 12, "{line}");
    assert_eq!(line["completion_tokens"], 2);
    assert!(assert_number(&line, "ttft_ms") > 0.0);
    assert!(assert_number(&line, "latency_ms") >= assert_number(&line, "ttft_ms"));
    assert!(assert_number(&line, "cost_usd") > 0.0);
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.body["stream"] != true || r.headers.get("traceparent").is_some()));

    // The reasoning model's only deployment is down: served by the fallback, priced there.
    let (id, status, text) = post(&gw, KEY, &body("reasoning", false)).await;
    assert_eq!(status, 200, "{text}");
    let line = gw.access_line(&id);
    assert_eq!(line["fallbacks"], 1);
    assert_eq!(line["routed_model"], "think-model");
    assert_eq!(line["model"], "chat-model");
    assert_eq!(line["tier"], "fast");
    assert!(line["fallback_reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("fallback: think-model failed")));
    assert!(
        (assert_number(&line, "cost_usd") - 0.00002).abs() < 1e-9,
        "{line}"
    );

    // A wrong key: logged too, with no tenant.
    let (id, status, _) = post(&gw, "sk-wrong-key-words", &body("fast", false)).await;
    assert_eq!(status, 401);
    let line = gw.access_line(&id);
    assert_eq!(line["status"], 401);
    assert_eq!(line["outcome"], "invalid_api_key");
    assert!(line.get("tenant").is_none(), "{line}");

    let log = gw.raw_lines().join("\n");
    for secret in [KEY, "sk-wrong-key-words", PROMPT, ANSWER] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1:0 keeping every decoded span.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use http_body_util::BodyExt;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<_>>> = Arc::default();
        let sink = spans.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let sink = sink.clone();
                            async move {
                                assert_eq!(request.uri().path(), "/v1/traces");
                                let bytes = request.into_body().collect().await?.to_bytes();
                                let export = ExportTraceServiceRequest::decode(bytes)
                                    .expect("OTLP protobuf");
                                for resource in export.resource_spans {
                                    for scope in resource.scope_spans {
                                        sink.lock().unwrap().extend(scope.spans);
                                    }
                                }
                                Ok::<_, hyper::Error>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::new()),
                                ))
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Receiver { addr, spans }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_parented_on_the_clients_traceparent() {
    let mock = upstream().await;
    let receiver = Receiver::start().await;
    let endpoint = format!("http://{}", receiver.addr);
    let mut gw = GatewayProcess::spawn(
        &config(
            mock.addr,
            &format!("[tracing]\notlp_endpoint = \"{endpoint}\"\n"),
        ),
        &[("acme", tenant())],
        &[],
    );
    let (id, status, _) = post(&gw, KEY, &body("fast", true)).await;
    assert_eq!(status, 200);
    let line = gw.access_line(&id);
    assert_eq!(line["trace_id"], TRACE_ID);
    let (_, status, _) = post(&gw, KEY, &body("reasoning", false)).await;
    assert_eq!(status, 200);
    // Shutdown flushes the spans still buffered.
    gw.terminate();

    let spans = receiver.spans.lock().unwrap().clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "request",
        "classify",
        "admission",
        "cache",
        "upstream",
        "upstream_attempt",
        "stream",
    ] {
        assert!(names.contains(&name), "no `{name}` span in {names:?}");
    }
    let requests: Vec<_> = spans.iter().filter(|s| s.name == "request").collect();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(hex::encode(&request.trace_id), TRACE_ID);
        assert_eq!(hex::encode(&request.parent_span_id), PARENT_ID);
    }
    // Every span is in the client's trace.
    assert!(spans.iter().all(|s| hex::encode(&s.trace_id) == TRACE_ID));
    // The failed attempt on the dead deployment and the fallback's are both there.
    let attempts = spans
        .iter()
        .filter(|s| s.name == "upstream_attempt")
        .count();
    assert_eq!(attempts, 3, "stream, dead deployment, fallback: {names:?}");

    // The upstream got the trace, with the attempt's span as its parent.
    let sent = mock.requests()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID);
    let attempt_ids: Vec<String> = spans
        .iter()
        .filter(|s| s.name == "upstream_attempt")
        .map(|s| hex::encode(&s.span_id))
        .collect();
    assert!(attempt_ids.contains(&parts[2].to_string()), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_the_clients_trace_context_goes_upstream_unchanged() {
    let mock = upstream().await;
    let gw = GatewayProcess::spawn(&config(mock.addr, ""), &[("acme", tenant())], &[]);
    let (_, status, _) = post(&gw, KEY, &body("fast", false)).await;
    assert_eq!(status, 200);
    let sent = &mock.requests()[0].headers;
    assert_eq!(sent["traceparent"].to_str().unwrap(), traceparent());
}

/// A stream still open when the shutdown grace runs out: the client gets one final error
/// event, and the access log still has the request's line, not counted as a clean answer.
#[tokio::test]
async fn a_stream_cut_at_the_shutdown_deadline_has_its_access_line() {
    let mock = MockUpstream::start(|_| MockReply::Stream {
        events: vec![(Duration::ZERO, data_event(&chunk(ANSWER)))],
        end: StreamEnd::Hang,
    })
    .await;
    let config = config(mock.addr, "[server]\nshutdown_grace_ms = 300\n");
    let mut gw = GatewayProcess::spawn(&config, &[("acme", tenant())], &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let mut stream = body("fast", true);
    stream["messages"][0]["content"] = json!("a stream the shutdown will cut");
    let mut response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", &id)
        .json(&stream)
        .timeout(TEST_TIMEOUT)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 200);
    let mut text = read_until_data(&mut response).await;

    // SIGTERM; the process exits once the 300 ms grace has run out.
    gw.terminate();
    while let Ok(Some(chunk)) = response.chunk().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !text.contains("[DONE]"),
        "a cut stream has no clean end: {text}"
    );
    let last: Value = serde_json::from_str(sse_data(&text).last().expect("events")).unwrap();
    assert_eq!(last["error"]["code"], "shutting_down", "{text}");

    let line = gw.access_line(&id);
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["tenant"], "acme");
    assert_eq!(line["model"], "chat-model");
    assert_eq!(line["outcome"], "shutting_down", "{line}");
}

/// `deliberate serve` answers on one API thread per core, each with its own runtime (so a
/// request and its provider connection stay on one core), and every thread answers.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_binary_serves_the_api_from_one_thread_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(api_threads_of_a_gateway_with("").await, cores);
    // `server.api_threads` sets it.
    assert_eq!(
        api_threads_of_a_gateway_with("[server]\napi_threads = 3\n").await,
        3
    );
}

/// Starts the binary with `extra` config, checks that 16 requests are answered, and counts
/// its API threads.
#[cfg(target_os = "linux")]
async fn api_threads_of_a_gateway_with(extra: &str) -> usize {
    let mock = MockUpstream::ok("fine").await;
    let config = config(mock.addr, extra);
    let gw = GatewayProcess::spawn(&config, &[("acme", tenant())], &[]);
    // Many connections: the kernel hands them to the threads in turn; all are answered.
    let mut answered = 0;
    for _ in 0..16 {
        let (_, status, _) = post(&gw, KEY, &body("fast", false)).await;
        answered += usize::from(status == 200);
    }
    assert_eq!(answered, 16);
    // Thread names are cut to 15 bytes in /proc: `deliberate-api-`.
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    names
        .iter()
        .filter(|n| n.starts_with("deliberate-api"))
        .count()
}
