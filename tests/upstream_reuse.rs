//! Provider connections are reused: sequential completions, JSON or streamed, go over one
//! kept-alive connection to an `http://` provider, and a kept connection the provider closed
//! meanwhile is not used (the request goes out on a new one and succeeds).
//!
//! The streaming provider here is a raw HTTP/1.1 server that writes each whole response in
//! one write, `[DONE]` and the chunked terminator together, as a fast provider does: the
//! gateway stops reading at `[DONE]`, and the connection must still go back to the pool.
//! The same provider shows that events that arrive together leave together: a provider that
//! sends every event as its own HTTP chunk does not cost the client one chunk per event,
//! and the output estimate still counts events, not chunks; a bad event after good ones in
//! the same read does not swallow them.

// The raw provider's tasks end with the test's runtime; no shutdown waits for them.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REQUESTS: usize = 5;

#[tokio::test]
async fn sequential_json_completions_share_one_provider_connection() {
    let upstream = MockUpstream::ok("hi").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for _ in 0..REQUESTS {
        let response = gw
            .chat(json!({"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    assert_eq!(upstream.connections.load(Ordering::Relaxed), 1);
}

/// How the raw provider treats a connection after answering.
#[derive(Clone, Copy, PartialEq)]
enum AfterAnswer {
    KeepAlive,
    /// Close without saying so (no `Connection: close`), as at a keep-alive timeout.
    Close,
}

/// Reads one request head and its `Content-Length` body; false at end of stream.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return true;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A streamed completion as one write: each event its own HTTP chunk, then the terminator.
fn streamed_answer(contents: &[String]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut events: Vec<String> = contents.iter().map(|c| data_event(&chunk(c))).collect();
    events.push("data: [DONE]\n\n".into());
    for event in events {
        body.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    out.extend_from_slice(&body);
    out
}

/// Starts the raw streaming provider; returns its address and its accepted-connection count.
async fn raw_provider(after: AfterAnswer) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    raw_provider_with(after, vec!["Hel".into(), "lo".into()]).await
}

/// The raw streaming provider, answering every request with one event per content.
async fn raw_provider_with(
    after: AfterAnswer,
    contents: Vec<String>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    raw_provider_answering(after, streamed_answer(&contents)).await
}

/// The raw provider, answering every request with `answer`'s bytes in one write.
async fn raw_provider_answering(
    after: AfterAnswer,
    answer: Vec<u8>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let answer = answer.clone();
            tokio::spawn(async move {
                while read_request(&mut stream).await {
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                    if after == AfterAnswer::Close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn stream_once(gw: &Gateway) {
    let response = gw.chat(stream_request("chat-model")).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(text.contains("Hel") && text.contains("lo"), "{text}");
}

#[tokio::test]
async fn sequential_streams_share_one_provider_connection() {
    let (addr, accepted) = raw_provider(AfterAnswer::KeepAlive).await;
    let gw = Gateway::with_openai_at(addr, "").await;
    for _ in 0..REQUESTS {
        stream_once(&gw).await;
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_kept_connection_the_provider_closed_is_not_used() {
    let (addr, accepted) = raw_provider(AfterAnswer::Close).await;
    let gw = Gateway::with_openai_at(addr, "[resilience]\nmax_retries = 0\n").await;
    for _ in 0..3 {
        stream_once(&gw).await;
        // The provider's close reaches the gateway before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 3);
}

/// Reads a chunked HTTP/1.1 response to its terminator; returns the head and the chunks.
async fn read_chunked_response(stream: &mut TcpStream) -> (String, Vec<Vec<u8>>) {
    let mut buf = Vec::new();
    let mut read = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut at = end + 4;
            let mut chunks = Vec::new();
            while let Some(line) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                let size_text = String::from_utf8_lossy(&buf[at..at + line]).into_owned();
                let size = usize::from_str_radix(size_text.trim(), 16).expect("a chunk size");
                let data_at = at + line + 2;
                if buf.len() < data_at + size + 2 {
                    break;
                }
                if size == 0 {
                    return (head, chunks);
                }
                chunks.push(buf[data_at..data_at + size].to_vec());
                at = data_at + size + 2;
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut read))
            .await
            .expect("the response ended in time")
            .unwrap();
        assert!(n > 0, "the gateway closed before the chunked terminator");
        buf.extend_from_slice(&read[..n]);
    }
}

/// `body` to the chat endpoint over a raw connection; the response head and its chunks.
async fn stream_raw(gw: &Gateway, body: &serde_json::Value) -> (String, Vec<Vec<u8>>) {
    let body = body.to_string();
    let mut client = TcpStream::connect(gw.api).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    read_chunked_response(&mut client).await
}

/// What `chat-model` was billed, once the settlement (after the response) has run.
async fn billed(gw: &Gateway) -> f64 {
    let mut cost = 0.0;
    for _ in 0..100 {
        cost = metrics_value(gw, "deliberate_cost_usd_total", &["model=\"chat-model\""]).await;
        if cost > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cost
}

#[tokio::test]
async fn events_that_arrive_together_leave_in_one_chunk() {
    const EVENTS: usize = 40;
    let contents: Vec<String> = (0..EVENTS).map(|i| format!("t{i} ")).collect();
    let (addr, _) = raw_provider_with(AfterAnswer::KeepAlive, contents.clone()).await;
    let gw = Gateway::with_openai_at(addr, "").await;
    let (head, chunks) = stream_raw(&gw, &stream_request("chat-model")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let text = String::from_utf8(chunks.concat()).unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let mut at = 0;
    for content in &contents {
        let found = text[at..]
            .find(content.as_str())
            .expect("every event, in order");
        at += found + content.len();
    }
    // One provider write of 41 HTTP chunks: the gateway reads it in one or a few reads, and
    // each read's events go out as one chunk (one per event before, 41 here).
    assert!(
        chunks.len() <= 4,
        "{} chunks for {} events",
        chunks.len(),
        EVENTS + 1
    );
    // The provider sent no usage: the bill's output estimate is one token per event
    // (41 x $0.6 per million), not one per joined chunk.
    let per_output_token = 0.6e-6;
    let cost = billed(&gw).await;
    let output_part = 41.0 * per_output_token;
    assert!(
        cost >= output_part && cost < output_part + 1e-5,
        "billed {cost}, the output estimate alone is {output_part}"
    );
}

/// Without usage from the provider, the bill's output is estimated from the events, and a
/// provider that streams past the request's `max_tokens` is not billed past it.
#[tokio::test]
async fn an_output_estimate_is_billed_no_further_than_the_request_allowed() {
    let contents: Vec<String> = (0..40).map(|i| format!("t{i} ")).collect();
    let (addr, _) = raw_provider_with(AfterAnswer::KeepAlive, contents).await;
    let gw = Gateway::with_openai_at(addr, "").await;
    let mut body = stream_request("chat-model");
    body["max_tokens"] = 5.into();
    let (head, _) = stream_raw(&gw, &body).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let cost = billed(&gw).await;
    let output_part = 5.0 * 0.6e-6;
    assert!(
        cost >= output_part && cost < output_part + 1e-5,
        "billed {cost}, 5 output tokens are {output_part}"
    );
}

#[tokio::test]
async fn good_events_before_a_bad_one_in_the_same_read_still_reach_the_client() {
    let mut answer =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    let mut events: Vec<Vec<u8>> = ["Hel", "lo"]
        .iter()
        .map(|c| data_event(&chunk(c)).into_bytes())
        .collect();
    // Not UTF-8: the event stream is broken from here on.
    events.push(b"data: \xff\xfe\n\n".to_vec());
    for event in events {
        answer.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        answer.extend_from_slice(&event);
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    let (addr, _) = raw_provider_answering(AfterAnswer::Close, answer).await;
    let gw = Gateway::with_openai_at(addr, "[resilience]\nmax_retries = 0\n").await;
    let response = gw.chat(stream_request("chat-model")).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let data = sse_data(&text);
    assert!(data.len() >= 3, "{text}");
    assert!(data[0].contains("Hel") && data[1].contains("lo"), "{text}");
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad event stream")),
        "{text}"
    );
}
