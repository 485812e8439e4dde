//! Connecting to a provider: a connect that does not complete within the tier's
//! `connect_timeout_ms` is a 504 naming the connect timeout (not a hang until the total
//! deadline), and a refused connect is a 502 `upstream_unavailable`.
//!
//! The provider that never completes a connect is a loopback listener whose accept backlog
//! is full: the kernel drops further SYNs, so a new connect waits.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

#[tokio::test]
async fn a_connect_that_does_not_complete_is_a_504_after_the_connect_timeout() {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the backlog (never accepted); the next connect cannot complete.
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            held.push(stream);
        }
    }
    let probe = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
    assert!(probe.is_err(), "the backlog is full: a connect now waits");

    let gw = Gateway::with_openai_at(
        addr,
        "[tiers.fast]\nconnect_timeout_ms = 300\n[resilience]\nmax_retries = 0\n",
    )
    .await;
    let started = Instant::now();
    let response = gw
        .chat(json!({"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{body}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    drop(held);
}

#[tokio::test]
async fn a_refused_connect_is_a_502_upstream_unavailable() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::with_openai_at(addr, "").await;
    let response = gw
        .chat(json!({"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
}
