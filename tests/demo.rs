//! `serve --demo` shows the product: the guide it prints (`deliberate::demo`) is followed
//! step by step against a real demo gateway, in order, and each step must show what the
//! guide says (routing, a cache hit, a budget refusal, a rate limit). The binary itself
//! must print the guide with both keys.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use deliberate::demo::{self, Expect};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn every_step_of_the_demo_guide_shows_what_it_says() {
    tokio::time::timeout(Duration::from_secs(60), async {
        deliberate::install_crypto_provider();
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api_addr, admin_addr) = (api.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        // Ends with the test's runtime; awaited below after the shutdown.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(deliberate::run(
            api,
            admin,
            deliberate::config::demo().snapshot,
            shutdown.clone(),
        ));

        let mut trial_successes = 0;
        for step in demo::steps() {
            let mut answers: Vec<(u16, reqwest::header::HeaderMap, Value)> = Vec::new();
            for _ in 0..step.times {
                let r = tokio::time::timeout(
                    TEST_TIMEOUT,
                    client()
                        .post(format!("http://{api_addr}/v1/chat/completions"))
                        .bearer_auth(step.key)
                        .header("content-type", "application/json")
                        .body(step.body)
                        .send(),
                )
                .await
                .expect("answer in time")
                .expect("request sent");
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let body: Value = r.json().await.expect("a JSON answer");
                answers.push((status, headers, body));
            }
            let (status, headers, body) = answers.last().expect("the step sends a request");
            match step.expect {
                Expect::Header(name, value) => {
                    assert_eq!(*status, 200, "{}: {body}", step.title);
                    assert_eq!(
                        headers.get(name).map(|v| v.to_str().unwrap()),
                        Some(value),
                        "{}",
                        step.title
                    );
                }
                Expect::Error(want_status, code) => {
                    assert_eq!(*status, want_status, "{}: {body}", step.title);
                    assert_eq!(body["error"]["code"], code, "{}: {body}", step.title);
                }
            }
            // The answers before the last: successes until the limit the step shows is hit
            // (the guide sends one more than the limit, in case a token came back meanwhile).
            // Every success carries its tenant's rate-limit headers.
            let limit = if step.key == deliberate::config::DEMO_TRIAL_API_KEY {
                "5"
            } else {
                "600"
            };
            for (status, headers, body) in &answers {
                if *status == 200 {
                    assert_eq!(
                        headers
                            .get("x-ratelimit-limit-requests")
                            .map(|v| v.to_str().unwrap()),
                        Some(limit),
                        "{}",
                        step.title
                    );
                    trial_successes += usize::from(step.key == deliberate::config::DEMO_TRIAL_API_KEY);
                } else {
                    assert!(
                        matches!(step.expect, Expect::Error(s, c) if s == *status && body["error"]["code"] == c),
                        "{}: {status} {body}",
                        step.title
                    );
                }
            }
        }
        // The second tenant's key works: its first greetings were answered.
        assert!(trial_successes >= 3, "trial answered {trial_successes} times");

        // The metrics line the guide points to counts what the steps did.
        let metrics = client()
            .get(format!("http://{admin_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric_value(
                &metrics,
                "deliberate_cache_requests_total",
                &["tenant=\"demo\"", "result=\"hit\""]
            ),
            1.0
        );
        assert_eq!(
            metric_value(
                &metrics,
                "deliberate_budget_actions_total",
                &["tenant=\"trial\"", "action=\"reject\""]
            ),
            1.0
        );
        assert!(
            metric_value(
                &metrics,
                "deliberate_rate_limited_total",
                &["tenant=\"trial\"", "limit=\"requests\""]
            ) >= 1.0
        );

        shutdown.cancel();
        server.await.unwrap();
    })
    .await
    .expect("test finished in time");
}

#[test]
fn serve_demo_prints_the_guide_with_both_keys() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deliberate"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("DELIBERATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    // Reads until the guide's last line, on a thread so a hang is bounded by the timeout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("/metrics");
            text.push_str(&line);
            text.push('\n');
            if done {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(Duration::from_secs(20));
    child.kill().expect("the demo is stopped");
    child.wait().unwrap();
    let text = text.expect("the guide is printed within 20 s");
    for needle in [
        "deliberate-demo",
        "deliberate-trial",
        "x-deliberate-cache: hit",
        "budget_exceeded",
        "rate_limit_exceeded",
        "x-deliberate-tier: reasoning",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
