//! Provider error text as the client and the operator see it: the provider's own key and
//! anything credential-shaped never reach the client's error body or a WARN log line; a
//! server's tracebacks and file paths are withheld; an upstream 400 keeps its `param`.
//!
//! Its own test binary: it installs a global `tracing` subscriber that captures every log
//! line, so the log assertions see exactly what `deliberate serve` would print.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The provider key the gateway sends; the mocks below echo it back.
const PROVIDER_KEY: &str = "sk-live-Zq81mYx3Wv7BnT4kRp0sLd";
const KEY_ENV: &str = "DELIBERATE_TEST_REDACTION_PROVIDER_KEY";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, from the first call on.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        captured
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

fn hi() -> Value {
    json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
}

/// A gateway whose provider `mock` (at `upstream`) is called with `PROVIDER_KEY`.
async fn gateway(upstream: &MockUpstream) -> Gateway {
    logs();
    std::env::set_var(KEY_ENV, PROVIDER_KEY);
    let config = openai_config(upstream.addr, "").replace(
        "kind = \"openai\"\n",
        &format!("kind = \"openai\"\napi_key_env = \"{KEY_ENV}\"\n"),
    );
    Gateway::start_acme(&config, "chat-model", "think-model").await
}

/// Waits until a WARN line mentioning `needle` was logged (the log is written after the
/// response, so poll briefly rather than race it).
async fn warn_line_with(needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = log_text()
            .lines()
            .find(|l| l.contains("WARN") && l.contains(needle))
            .map(str::to_string);
        if let Some(line) = found {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no WARN line with {needle:?} in:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The 502 message a client gets from a provider answering every request with `reply`;
/// checked to still carry the provider's `marker` text (the message is passed on).
async fn client_message(
    reply: impl Fn(&Received) -> MockReply + Send + Sync + 'static,
    marker: &str,
) -> String {
    let upstream = MockUpstream::start(reply).await;
    let gw = gateway(&upstream).await;
    let response = gw.chat(hi()).await;
    let error = expect_error(response, 502, "upstream_error", "upstream_status").await;
    let message = error["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(marker),
        "the message is passed on: {message}"
    );
    message
}

#[tokio::test]
async fn a_provider_echoing_the_authorization_header_never_leaks_the_key() {
    let message = client_message(
        |r| {
            let echoed = r.headers["authorization"].to_str().unwrap().to_string();
            assert!(echoed.contains(PROVIDER_KEY), "the mock sees the real key");
            let text = format!("invalid credentials; headers: Authorization: {echoed}; mark-401");
            MockReply::Json {
                status: 401,
                body: json!({"error": {"message": text, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}).to_string(),
            }
        },
        "mark-401",
    )
    .await;
    assert!(
        !message.contains("Zq81mYx3"),
        "the key leaked to the client: {message}"
    );
    assert!(message.contains("[redacted]"), "{message}");
    let line = warn_line_with("mark-401").await;
    assert!(
        !line.contains("Zq81mYx3"),
        "the key leaked to the log: {line}"
    );
    assert!(
        !log_text().contains(PROVIDER_KEY),
        "the key is somewhere in the log"
    );
}

#[tokio::test]
async fn credential_shaped_text_from_a_provider_is_redacted() {
    // Not our key, but in a key's shape: someone else's credential or a proxy's token.
    let text =
        "mark-503 proxy rejected Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc and key sk-other-9aF3kLm2Qx7";
    let message = client_message(move |_| MockReply::error(503, text), "mark-503").await;
    for secret in ["eyJhbGciOiJIUzI1NiJ9", "sk-other-9aF3kLm2Qx7"] {
        assert!(
            !message.contains(secret),
            "{secret} reached the client: {message}"
        );
    }
    let line = warn_line_with("mark-503").await;
    assert!(!line.contains("sk-other-9aF3kLm2Qx7"), "{line}");
}

#[tokio::test]
async fn a_servers_traceback_and_file_paths_are_not_passed_through() {
    let traceback = "mark-500 Internal Server Error\nTraceback (most recent call last):\n  File \"/opt/llm/server/app.py\", line 88, in handle\n    raise KeyError('secret_table')\nKeyError: 'secret_table'";
    let reply = move |_: &Received| MockReply::Json {
        status: 500,
        body: traceback.into(),
    };
    let message = client_message(reply, "mark-500").await;
    assert!(
        !message.contains("/opt/llm"),
        "a server path reached the client: {message}"
    );
    assert!(
        !message.contains("secret_table"),
        "the traceback reached the client: {message}"
    );
    let path = "mark-path failed at /srv/app/engine/worker.py:42";
    let message = client_message(move |_| MockReply::error(500, path), "mark-path").await;
    assert!(!message.contains("worker.py"), "{message}");
}

#[tokio::test]
async fn an_upstream_400_keeps_its_param() {
    let upstream = MockUpstream::start(|_| MockReply::Json {
        status: 400,
        body: json!({"error": {
            "message": "Unsupported value: 'temperature' does not support 3 with this model.",
            "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"
        }})
        .to_string(),
    })
    .await;
    let gw = gateway(&upstream).await;
    let error = expect_error(
        gw.chat(hi()).await,
        400,
        "invalid_request_error",
        "upstream_status",
    )
    .await;
    assert_eq!(error["param"], "temperature", "{error}");
    assert_message_contains(&error, "does not support 3 with this model");
}
