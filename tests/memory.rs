//! Memory per request is bounded by a small multiple of the body limit (issue 10, defect 4):
//! the real binary, as a child process, takes ten concurrent adversarial bodies near the
//! limit, and its peak RSS (`VmHWM` in /proc) grows by at most a few body limits per request.
//! Before the shape limits, ten 3.9 MB bodies with one 1.3M-element array peaked at 2.15 GB.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::time::Instant;

const BODY_LIMIT: usize = 4 * 1024 * 1024;
const CONCURRENT: usize = 10;

/// Kills the child gateway when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Peak resident set size of `pid` in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in kB");
    kb * 1024
}

/// `{"model":"fast","messages":[..],"x":[1,1,...]}` just under the limit: one huge array.
fn huge_array() -> String {
    let prefix = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"x":["#;
    let n = (BODY_LIMIT - prefix.len() - 64) / 2;
    format!("{prefix}{}1]}}", "1,".repeat(n - 1))
}

/// 100k tiny messages (the issue's second probe).
fn many_messages() -> String {
    let one = r#"{"role":"user","content":"a"},"#;
    let n = 100_000.min((BODY_LIMIT - 64) / one.len());
    let mut messages = one.repeat(n);
    messages.pop();
    format!(r#"{{"model":"fast","messages":[{messages}]}}"#)
}

/// A legitimate large body: one long user message, which is served.
fn long_text() -> String {
    let text = "lorem ipsum ".repeat((BODY_LIMIT - 200) / 12);
    format!(r#"{{"model":"fast","messages":[{{"role":"user","content":"{text}"}}]}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_stays_within_a_few_body_limits_per_concurrent_request() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc on this system: peak RSS cannot be read");
        return;
    }
    deliberate::install_crypto_provider();
    let mock = MockUpstream::ok("fine").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deliberate.toml");
    std::fs::write(
        &config,
        openai_config(
            mock.addr,
            &format!("[server]\nmax_request_body_bytes = {BODY_LIMIT}\n"),
        ),
    )
    .unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("acme.toml"),
        tenant_toml("acme", KEY, "chat-model", "think-model", ""),
    )
    .unwrap();
    let (api, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_deliberate"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--policies")
        .arg(&policies)
        .arg("--listen")
        .arg(api.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary starts");
    let gateway = Running(child);
    let pid = gateway.0.id();

    let url = format!("http://{api}/v1/chat/completions");
    let http = client();
    let post = |body: String| {
        let request = http
            .post(&url)
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send();
        async move {
            let response = tokio::time::timeout(TEST_TIMEOUT, request)
                .await
                .expect("answered in time")
                .expect("an HTTP response");
            let status = response.status().as_u16();
            let text = tokio::time::timeout(TEST_TIMEOUT, response.text())
                .await
                .expect("body in time")
                .unwrap_or_default();
            (status, text)
        }
    };
    // Up and serving (bounded polling: the child has no other way to say so).
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        if let Ok(r) = http.get(format!("http://{admin}/healthz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One ordinary request first, so lazily built state is in the baseline.
    let (status, _) = post(long_text()).await;
    assert_eq!(status, 200);
    let baseline = peak_rss(pid);

    let bodies: Vec<String> = (0..CONCURRENT)
        .map(|i| match i % 3 {
            0 => huge_array(),
            1 => many_messages(),
            _ => long_text(),
        })
        .collect();
    assert!(bodies.iter().all(|b| b.len() <= BODY_LIMIT));
    // Each request may cost its bytes a few times over (the read buffer, the parsed text,
    // the body sent upstream): allow 4 body limits per concurrent request.
    let bound = (CONCURRENT * 4 * BODY_LIMIT) as u64;
    let over = |grown: u64| {
        format!(
            "peak RSS grew by {} MB, over {} MB",
            grown >> 20,
            bound >> 20
        )
    };
    let work = futures_util::future::join_all(bodies.into_iter().map(&post));
    tokio::pin!(work);
    // Sampled while the requests run too, so a blow-up fails fast instead of timing out.
    let answers = loop {
        tokio::select! {
            answers = &mut work => break answers,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let grown = peak_rss(pid).saturating_sub(baseline);
                assert!(grown <= bound, "{}", over(grown));
            }
        }
    };
    for (i, (status, text)) in answers.iter().enumerate() {
        match i % 3 {
            0 | 1 => {
                assert_eq!(*status, 400, "an adversarial body is refused: {text}");
                let error: serde_json::Value = serde_json::from_str(text).unwrap();
                assert_eq!(error["error"]["code"], "invalid_request", "{text}");
            }
            _ => assert_eq!(*status, 200, "a long but ordinary body is served: {text}"),
        }
    }
    let grown = peak_rss(pid).saturating_sub(baseline);
    eprintln!(
        "peak RSS grew by {} MB under {CONCURRENT} concurrent bodies (bound {} MB)",
        grown >> 20,
        bound >> 20
    );
    assert!(grown <= bound, "{}", over(grown));
}

#[tokio::test]
async fn bodies_past_the_shape_limits_get_400_naming_the_limit() {
    let mock = MockUpstream::ok("fine").await;
    let gw =
        Gateway::with_openai_upstream(&mock, "[server]\nmax_messages = 3\nmax_json_depth = 8\n")
            .await;
    let message = r#"{"role":"user","content":"hi"}"#;
    let body = |messages: usize, extra: &str| {
        format!(
            r#"{{"model":"fast","messages":[{}]{extra}}}"#,
            vec![message; messages].join(",")
        )
    };

    let ok = gw.post_chat(KEY, body(3, r#","x":[[[[1]]]]"#), &[]).await;
    assert_eq!(ok.status(), 200, "at the limits is fine");

    let r = gw.post_chat(KEY, body(4, ""), &[]).await;
    let error = expect_error(r, 400, "invalid_request_error", "invalid_request").await;
    assert_eq!(error["param"], "messages");
    assert_message_contains(&error, "at most 3");

    let r = gw
        .post_chat(KEY, body(1, r#","x":[[[[[[[[1]]]]]]]]"#), &[])
        .await;
    let error = expect_error(r, 400, "invalid_request_error", "invalid_request").await;
    assert_message_contains(&error, "9 levels deep");

    // Only the accepted request reached the upstream.
    assert_eq!(mock.count(), 1);
}
