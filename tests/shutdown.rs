//! Graceful shutdown: open streams finish while new connections are turned away, readiness
//! goes false, and at the hard deadline a stream that will not end gets one final SSE error
//! event and a request still unanswered gets 503. The upstreams are gated by the test (a
//! `Notify`), never paced by sleeps.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A one-connection SSE upstream on raw TCP: sends the first event, then the rest and
/// `[DONE]` only once `release` is notified, then closes. Returns the listener's address and
/// the future that serves it (run it alongside the test).
async fn gated_upstream(
    events: Vec<String>,
    release: Arc<Notify>,
) -> (SocketAddr, impl std::future::Future<Output = TcpListener>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed before sending its request");
            head.extend_from_slice(&buf[..n]);
        }
        let (first, rest) = events.split_first().unwrap();
        let start = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{first}");
        stream.write_all(start.as_bytes()).await.unwrap();
        tokio::time::timeout(TEST_TIMEOUT, release.notified())
            .await
            .expect("the test released the stream");
        for event in rest {
            stream.write_all(event.as_bytes()).await.unwrap();
        }
        stream.write_all(b"data: [DONE]\n\n").await.unwrap();
        stream.shutdown().await.unwrap();
        listener
    };
    (addr, serve)
}

#[tokio::test]
async fn graceful_shutdown_lets_an_open_stream_finish() {
    let chunks: Vec<Value> = (0..5).map(|i| chunk(&format!("part{i}"))).collect();
    let events = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    let release = Arc::new(Notify::new());
    let (addr, upstream) = gated_upstream(events, release.clone()).await;
    let mut gw = Gateway::with_openai_at(addr, "").await;
    let test = async {
        let mut response = gw.chat(stream_request("fast")).await;
        assert_eq!(response.status(), 200);
        let head = read_until_data(&mut response).await;

        gw.shutdown.cancel();

        // Readiness turns false at once, while the admin listener still answers.
        let ready = tokio::time::timeout(
            TEST_TIMEOUT,
            client().get(format!("http://{}/readyz", gw.admin)).send(),
        )
        .await
        .expect("readyz in time")
        .expect("admin still answers during the drain");
        assert_eq!(ready.status(), 503);

        // A new connection is turned away: refused, cut, or answered 503.
        let fresh = tokio::time::timeout(
            Duration::from_secs(5),
            client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(
                    json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
                        .to_string(),
                )
                .send(),
        )
        .await
        .expect("a new request is turned away promptly, not left hanging");
        match fresh {
            Err(_) => {}
            Ok(r) => assert_eq!(
                r.status(),
                503,
                "a request after shutdown began must not be served"
            ),
        }
        assert!(
            !gw.task.is_finished(),
            "the gateway waits for the open stream"
        );

        // Now the upstream goes on: the open stream still gets every chunk and its [DONE].
        release.notify_one();
        let text = head + &read_text(response).await;
        let events = sse_data(&text);
        assert_eq!(events.len(), chunks.len() + 1, "{text:?}");
        for (event, expected) in events.iter().zip(&chunks) {
            assert_eq!(&serde_json::from_str::<Value>(event).unwrap(), expected);
        }
        assert_eq!(events.last().unwrap(), "[DONE]");
    };
    let (listener, ()) = tokio::join!(upstream, test);
    assert!(
        tokio::time::timeout(Duration::ZERO, listener.accept())
            .await
            .is_err(),
        "no new request reached the upstream"
    );

    // Then the gateway stops on its own.
    tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("gateway stopped after the stream ended")
        .expect("gateway task did not panic");
}

#[tokio::test]
async fn shutdown_cuts_a_hanging_stream_at_the_grace_deadline() {
    let mock = MockUpstream::start(|_| MockReply::Stream {
        events: vec![],
        end: StreamEnd::Hang,
    })
    .await;
    let config = "[server]\nshutdown_grace_ms = 300\n\n[tiers.fast]\nkeepalive_interval_ms = 100\nfirst_token_timeout_ms = 30000\n";
    let mut gw = Gateway::with_openai_upstream(&mock, config).await;
    let response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);

    let started = Instant::now();
    gw.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), &mut gw.task)
        .await
        .expect("gateway stopped within 2 s of the shutdown signal")
        .expect("gateway task did not panic");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "the grace period was honoured: {elapsed:?}"
    );

    // The client sees one final error event saying why, and no clean end.
    let text = read_text(response).await;
    assert!(
        !text.contains("[DONE]"),
        "a cut stream has no [DONE]: {text:?}"
    );
    let events = sse_data(&text);
    assert_eq!(events.len(), 1, "exactly one final event: {text:?}");
    let event: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(event["error"]["code"], "shutting_down", "{text:?}");
    assert_eq!(event["error"]["type"], "overloaded_error", "{text:?}");
    // And the upstream call was cancelled, not leaked.
    mock.wait_for_cancelled(
        1,
        Duration::from_secs(2),
        "upstream stream still open after shutdown",
    )
    .await;
}

#[tokio::test]
async fn a_request_unanswered_at_the_grace_deadline_gets_503() {
    // The upstream never answers; the request reaching it is the test's signal.
    let (mock, reached) = MockUpstream::thinking().await;
    let config = "[server]\nshutdown_grace_ms = 300\n";
    let mut gw = Gateway::with_openai_upstream(&mock, config).await;
    let pending = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send();
    tokio::pin!(pending);
    tokio::select! {
        _ = &mut pending => panic!("the upstream never answers, so neither does the gateway"),
        reached = tokio::time::timeout(TEST_TIMEOUT, reached.notified()) => {
            reached.expect("the request reached the upstream");
        }
    }
    gw.shutdown.cancel();

    let response = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("answered within the grace period and a moment")
        .expect("an HTTP response, not a dropped connection");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = serde_json::from_str(&read_text(response).await).unwrap();
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("gateway stopped")
        .expect("gateway task did not panic");
}
