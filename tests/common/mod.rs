//! Test harness: starts the real gateway and scriptable mock upstreams on 127.0.0.1:0.
//!
//! `Gateway::start(config, tenants)` writes the config to a temp dir, loads it through the
//! same loader as `deliberate serve`, and runs `deliberate::run` on ephemeral ports.
//! `MockUpstream::start(handler)` answers each request with a `MockReply` chosen by the
//! test, records what it received, and notices when a client goes away mid-stream.

#![allow(dead_code)]
// The harness spawns its own mock servers; they die with the test runtime.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod certs;
mod files;
mod mock;
mod process;
mod redis_server;
#[allow(unused_imports)] // only the reload tests use it
pub use files::admin_token;
pub use mock::*;
#[allow(unused_imports)] // only the tests of the binary's logs and traces use it
pub use process::GatewayProcess;
#[allow(unused_imports)] // only the Redis tests and the cache-hit bench use it
pub use redis_server::RedisServer;

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
        Gateway::launch(config, tenants, false).await
    }

    /// Writes the files to a temp dir, loads them through the same loader as `deliberate
    /// serve`, and runs the gateway on ephemeral ports; `reload`: through
    /// `deliberate::run_with_reload`, which watches those files.
    async fn launch(config: &str, tenants: &[(&str, String)], reload: bool) -> Gateway {
        deliberate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("deliberate.toml");
        // The second stage is off unless a test asks for it (tests/second_stage.rs): with
        // the encoder fetched, a band request's tier would depend on whether the encoder
        // answered within its budget on a loaded test machine.
        let config = if config.contains("[second_stage]") {
            config.to_string()
        } else {
            format!("{config}\n[second_stage]\nenabled = false\n")
        };
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
        let task = if reload {
            let paths = deliberate::reload::ConfigPaths {
                config: config_path,
                policies,
            };
            tokio::spawn(deliberate::run_with_reload(
                api,
                admin,
                loaded.snapshot,
                paths,
                shutdown.clone(),
            ))
        } else {
            tokio::spawn(deliberate::run(
                api,
                admin,
                loaded.snapshot,
                shutdown.clone(),
            ))
        };
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

    /// Like `with_openai_upstream` (no extra config), `acme`'s policy file ending with
    /// `policy` (e.g. `"[cache]\nenabled = true\n"`).
    pub async fn with_openai_policy(upstream: &MockUpstream, policy: &str) -> Gateway {
        let tenant = tenant_toml("acme", KEY, "chat-model", "think-model", policy);
        Gateway::start(&openai_config(upstream.addr, ""), &[("acme", tenant)]).await
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
        self.post_chat(KEY, body.to_string(), headers).await
    }

    /// POSTs `body` verbatim (field order and whitespace as written) with `key`.
    pub async fn post_chat(
        &self,
        key: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body);
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

/// A response header's value, or "" if it is absent.
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
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

/// True if the exposition has any sample of `name` (a family with no series is not
/// exported at all).
pub fn has_series(metrics: &str, name: &str) -> bool {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
}

/// Sum of a metric's samples whose label set contains all `labels` (`k="v"` strings).
/// Panics if `name` has no sample at all: a misspelt or missing metric must not read as 0.
pub fn metric_value(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    assert!(
        has_series(metrics, name),
        "metric `{name}` is not exported at all:\n{metrics}"
    );
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
