//! Slow clients cannot hold the gateway (issue 10, defect 1): stalled uploads hold no
//! in-flight permit and get 408, heads that never finish and idle keep-alive connections are
//! closed, the connection cap makes the next client wait, and other tenants are served while
//! all of that goes on. Real sockets on 127.0.0.1 with short configured timeouts.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Two tenants: `acme` (`KEY`) and `other` (`OTHER_KEY`), both on the mock upstream.
async fn two_tenants(mock: &MockUpstream, server: &str) -> Gateway {
    let config = openai_config(mock.addr, &format!("[server]\n{server}\n"));
    Gateway::start(
        &config,
        &[
            (
                "acme",
                tenant_toml("acme", KEY, "chat-model", "think-model", ""),
            ),
            (
                "other",
                tenant_toml("other", OTHER_KEY, "chat-model", "think-model", ""),
            ),
        ],
    )
    .await
}

fn small_body() -> String {
    json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// A raw HTTP/1.1 chat request head for `KEY` announcing `declared` body bytes.
fn chat_head(declared: usize) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    )
}

/// Sends a chat request head announcing `Content-Length: len + 10` and then only `len`
/// bytes of body: the connection is left waiting for ten bytes that never come.
async fn stalled_upload(gw: &Gateway) -> TcpStream {
    let body = small_body();
    let mut stream = TcpStream::connect(gw.api).await.unwrap();
    let head = chat_head(body.len() + 10);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream
}

/// Reads until the peer closes; returns what was read. Fails if that takes over `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the gateway kept the connection open for over {within:?}; read so far: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls /metrics until the in-flight gauge reaches `n` (bounded).
async fn wait_in_flight(gw: &Gateway, n: f64) {
    let deadline = Instant::now() + TEST_TIMEOUT;
    while metrics_value(gw, "deliberate_in_flight_requests", &[]).await < n {
        assert!(
            Instant::now() < deadline,
            "{n} requests never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stalled_uploads_hold_no_permit_and_get_408_while_other_tenants_are_served() {
    let mock = MockUpstream::ok("served").await;
    let gw = two_tenants(
        &mock,
        "max_in_flight_requests = 3\nbody_read_timeout_ms = 4000",
    )
    .await;
    // As many stalled uploads as there are permits (the 16 at 16).
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_upload(&gw).await);
    }
    // The gateway has all three requests (their heads are read, their bodies are not).
    wait_in_flight(&gw, 3.0).await;

    for key in [OTHER_KEY, KEY] {
        let response = gw.post_chat(key, small_body(), &[]).await;
        assert_eq!(
            response.status(),
            200,
            "served while 3 uploads stall at max_in_flight_requests = 3"
        );
    }
    // Served while the stalled uploads were still open and unanswered, not after them.
    for stream in &stalled {
        let mut buf = [0u8; 1];
        assert!(
            matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled upload was already answered"
        );
    }

    // Each stalled upload is answered 408 with an OpenAI-shaped body, then closed.
    for stream in &mut stalled {
        let text = read_to_close(stream, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let body = &text[text.find("\r\n\r\n").expect("a head") + 4..];
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(body["error"]["code"], "request_timeout", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    assert_eq!(mock.count(), 2, "no stalled request reached the upstream");
}

#[tokio::test]
async fn a_head_that_never_finishes_is_closed_after_the_header_timeout() {
    let mock = MockUpstream::ok("served").await;
    let gw = two_tenants(&mock, "header_read_timeout_ms = 300").await;
    // One client sends half a head, one sends nothing at all.
    let mut partial = TcpStream::connect(gw.api).await.unwrap();
    partial
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(gw.api).await.unwrap();

    // Meanwhile the gateway serves others.
    let response = gw.post_chat(OTHER_KEY, small_body(), &[]).await;
    assert_eq!(response.status(), 200);

    let started = Instant::now();
    read_to_close(&mut partial, Duration::from_secs(3)).await;
    read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mock = MockUpstream::ok("served").await;
    // The header timeout is long: only the idle timer can close this connection in time.
    let gw = two_tenants(
        &mock,
        "keep_alive_idle_timeout_ms = 300\nheader_read_timeout_ms = 20000",
    )
    .await;
    let mut stream = TcpStream::connect(gw.api).await.unwrap();
    let body = small_body();
    let request = chat_head(body.len()) + &body;
    stream.write_all(request.as_bytes()).await.unwrap();
    let answered = Instant::now();
    // The response arrives, the connection stays open for keep-alive, then idles out.
    let text = read_to_close(&mut stream, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("served"), "{text}");
    let elapsed = answered.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "kept alive for the idle timeout first: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_request_in_progress_is_not_idle() {
    // The upstream takes longer than the idle timeout to answer: the connection must wait.
    let mock = MockUpstream::start(|_| {
        MockReply::Delay(
            Duration::from_millis(600),
            Box::new(MockReply::json(completion("chat-model", "slow"))),
        )
    })
    .await;
    let gw = two_tenants(
        &mock,
        "keep_alive_idle_timeout_ms = 200\nheader_read_timeout_ms = 200",
    )
    .await;
    let response = gw.post_chat(KEY, small_body(), &[]).await;
    assert_eq!(response.status(), 200);
    assert!(read_text(response).await.contains("slow"));
}

#[tokio::test]
async fn at_max_connections_the_next_client_waits_for_a_free_slot() {
    let mock = MockUpstream::ok("served").await;
    let gw = two_tenants(&mock, "max_connections = 1\nheader_read_timeout_ms = 20000").await;
    let holder = TcpStream::connect(gw.api).await.unwrap();
    // The holder is accepted (it has the only slot) once a request on it is answered.
    let mut holder = holder;
    let body = small_body();
    let request = chat_head(body.len()) + &body;
    holder.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(TEST_TIMEOUT, holder.read_exact(&mut buf))
        .await
        .expect("holder answered in time")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");

    let waiting = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(OTHER_KEY)
        .header("content-type", "application/json")
        .body(small_body())
        .send();
    tokio::pin!(waiting);
    // Not served while the only slot is taken (a bounded negative check)...
    tokio::select! {
        r = &mut waiting => panic!("a second connection was served: {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(400)) => {}
    }
    assert_eq!(mock.count(), 1);
    // ...and served as soon as the holder goes.
    drop(holder);
    let response = tokio::time::timeout(TEST_TIMEOUT, waiting)
        .await
        .expect("served after the slot was freed")
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_dropped() {
    let mock = MockUpstream::ok("served").await;
    // The idle timer is long: only the PING timeout can close this connection in time.
    let gw = two_tenants(
        &mock,
        "http2_keep_alive_interval_ms = 200\nhttp2_keep_alive_timeout_ms = 200\nkeep_alive_idle_timeout_ms = 20000",
    )
    .await;
    let mut stream = TcpStream::connect(gw.api).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame; then the peer goes silent.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let started = Instant::now();
    let seen = read_to_close(&mut stream, Duration::from_secs(5)).await;
    // The gateway spoke HTTP/2 (its SETTINGS frame, type 4) before giving up on us.
    assert!(seen.len() >= 9 && seen.as_bytes()[3] == 4, "{seen:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}
