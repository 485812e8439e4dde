//! Hot reload and the admin API: a real gateway started from files in a temp dir, reloaded
//! through `POST /admin/reload` and by polling; in-flight streams keep their config; the
//! admin API wants its token and never returns secrets.

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{json, Value};

/// Upper bound for a whole test.
const WHOLE_TEST: Duration = Duration::from_secs(30);

/// Answers every request with a completion naming the model it was asked for; streams
/// (`"stream": true`) get 4 chunks 150 ms apart.
async fn echo_upstream() -> MockUpstream {
    MockUpstream::start(|r| {
        let model = r.body["model"].as_str().unwrap_or("?").to_string();
        if r.body["stream"] == json!(true) {
            let chunks = (0..4).map(|i| chunk(&format!("{model}-part{i}"))).collect();
            MockReply::sse(chunks, Duration::from_millis(150))
        } else {
            MockReply::json(completion(&model, "hello"))
        }
    })
    .await
}

/// The mock's two models plus a third fast model, `chat-model-2`, and `[server]` settings.
fn config(upstream: &MockUpstream, server: &str) -> String {
    let extra = format!(
        "[models.chat-model-2]\nprovider = \"mock\"\ntier = \"fast\"\n\n[server]\n{server}\n"
    );
    openai_config(upstream.addr, &extra)
}

fn acme(fast: &str) -> String {
    tenant_toml("acme", KEY, fast, "think-model", "")
}

fn hello() -> Value {
    json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
}

async fn chat_as(gw: &Gateway, key: &str, body: Value) -> reqwest::Response {
    tokio::time::timeout(
        TEST_TIMEOUT,
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send(),
    )
    .await
    .expect("request in time")
    .expect("request sent")
}

fn model_header(r: &reqwest::Response) -> String {
    r.headers()["x-deliberate-model"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn reload_applies_a_changed_model_and_a_new_tenant() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let (var, token) = admin_token("success");
        let server = format!("admin_token_env = \"{var}\"\nreload_poll_ms = 0");
        let gw =
            Gateway::start_reloadable(&config(&upstream, &server), &[("acme", acme("chat-model"))])
                .await;

        let before = gw.admin_config(&token).await;
        assert_eq!(before["generation"], 1);
        let r = gw.chat(hello()).await;
        assert_eq!(model_header(&r), "chat-model");
        assert_eq!(chat_as(&gw, OTHER_KEY, hello()).await.status(), 401);

        gw.write_policy("acme", &acme("chat-model-2"));
        gw.write_policy(
            "beta",
            &tenant_toml("beta", OTHER_KEY, "chat-model", "think-model", ""),
        );
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["generation"], 2);

        let r = gw.chat(hello()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(model_header(&r), "chat-model-2", "acme's new fast model");
        assert_eq!(
            upstream.requests().last().unwrap().body["model"],
            "chat-model-2"
        );
        let r = chat_as(&gw, OTHER_KEY, hello()).await;
        assert_eq!(r.status(), 200, "the new tenant's key works");

        let after = gw.admin_config(&token).await;
        assert_eq!(after["generation"], 2);
        assert_ne!(after["hash"], before["hash"]);
        assert_eq!(after["tenants"], json!(["acme", "beta"]));
        assert_eq!(
            metrics_value(
                &gw,
                "deliberate_config_reloads_total",
                &["result=\"success\""]
            )
            .await,
            1.0
        );
        assert_eq!(
            metrics_value(
                &gw,
                "deliberate_config_reloads_total",
                &["result=\"failure\""]
            )
            .await,
            0.0
        );
        assert_eq!(
            metrics_value(&gw, "deliberate_config_generation", &[]).await,
            2.0
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn an_invalid_file_keeps_the_old_config_and_reports_where() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let (var, token) = admin_token("failure");
        let server = format!("admin_token_env = \"{var}\"\nreload_poll_ms = 0");
        let gw =
            Gateway::start_reloadable(&config(&upstream, &server), &[("acme", acme("chat-model"))])
                .await;
        let hash = gw.admin_config(&token).await["hash"].clone();

        // Line 3 of acme.toml (`fast_model = "..."`, value at column 14) names a model
        // that does not exist.
        gw.write_policy("acme", &acme("no-such-model"));
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_config");
        assert_eq!(body["generation"], 1);
        let problems = body["problems"].as_array().unwrap();
        let expected = format!("{}:3:14: ", gw.policies_dir().join("acme.toml").display());
        assert!(
            problems.iter().any(|p| {
                let p = p.as_str().unwrap();
                p.starts_with(&expected) && p.contains("no-such-model")
            }),
            "a `{expected}` problem naming the model: {problems:?}"
        );

        // The old config keeps serving.
        let r = gw.chat(hello()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(model_header(&r), "chat-model");
        let live = gw.admin_config(&token).await;
        assert_eq!(live["generation"], 1);
        assert_eq!(live["hash"], hash);
        assert_eq!(
            metrics_value(
                &gw,
                "deliberate_config_reloads_total",
                &["result=\"failure\""]
            )
            .await,
            1.0
        );
        assert_eq!(
            metrics_value(&gw, "deliberate_config_generation", &[]).await,
            1.0
        );

        // A broken TOML file is reported too, and fixing it makes the next reload work.
        gw.write_config("[server\n");
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["problems"][0]
                .as_str()
                .unwrap()
                .contains("deliberate.toml:1:"),
            "{body}"
        );
        gw.write_config(&config(&upstream, &server));
        gw.write_policy("acme", &acme("chat-model-2"));
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(
            (status, body["generation"].clone()),
            (200, json!(2)),
            "{body}"
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn a_file_change_is_picked_up_by_polling() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let (var, token) = admin_token("poll");
        let server = format!("admin_token_env = \"{var}\"\nreload_poll_ms = 100");
        let gw =
            Gateway::start_reloadable(&config(&upstream, &server), &[("acme", acme("chat-model"))])
                .await;

        // Unchanged files are not reloaded.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(gw.admin_config(&token).await["generation"], 1);

        gw.write_policy(
            "beta",
            &tenant_toml("beta", OTHER_KEY, "chat-model-2", "think-model", ""),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while gw.admin_config(&token).await["generation"] != 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reload after a file change"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = chat_as(&gw, OTHER_KEY, hello()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(model_header(&r), "chat-model-2");

        // An invalid edit is counted once (not once per poll) and changes nothing.
        gw.write_policy("beta", "name = \"beta\"\nfast_model = 3\n");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metrics_value(
            &gw,
            "deliberate_config_reloads_total",
            &["result=\"failure\""],
        )
        .await
            < 1.0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no failed reload counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            metrics_value(
                &gw,
                "deliberate_config_reloads_total",
                &["result=\"failure\""]
            )
            .await,
            1.0
        );
        assert_eq!(gw.admin_config(&token).await["generation"], 2);
        assert_eq!(chat_as(&gw, OTHER_KEY, hello()).await.status(), 200);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn an_open_stream_finishes_under_the_config_it_started_with() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let (var, token) = admin_token("stream");
        let server = format!("admin_token_env = \"{var}\"\nreload_poll_ms = 0");
        let gw =
            Gateway::start_reloadable(&config(&upstream, &server), &[("acme", acme("chat-model"))])
                .await;

        let mut response = gw.chat(stream_request("fast")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(model_header(&response), "chat-model");
        let head = read_until_data(&mut response).await;

        // Mid-stream: acme is removed and its key given to another tenant with another model.
        gw.remove_policy("acme");
        gw.write_policy(
            "beta",
            &tenant_toml("beta", KEY, "chat-model-2", "think-model", ""),
        );
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(status, 200, "{body}");

        let rest = read_text(response).await;
        assert!(
            rest.contains("chat-model-part"),
            "chunks arrived after the reload, so the stream was open across it: {rest:?}"
        );
        let text = head + &rest;
        let data = sse_data(&text);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
        let contents: Vec<String> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(
            contents,
            (0..4)
                .map(|i| format!("chat-model-part{i}"))
                .collect::<Vec<_>>(),
            "every chunk of the original model's stream"
        );
        assert_eq!(
            metrics_value(
                &gw,
                "deliberate_requests_total",
                &["tenant=\"acme\"", "outcome=\"ok\""]
            )
            .await,
            1.0
        );

        // New requests see the new config.
        let r = gw.chat(hello()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(model_header(&r), "chat-model-2");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn a_changed_listen_address_is_not_rebound() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let (var, token) = admin_token("listen");
        let server = format!("admin_token_env = \"{var}\"\nreload_poll_ms = 0");
        let gw =
            Gateway::start_reloadable(&config(&upstream, &server), &[("acme", acme("chat-model"))])
                .await;
        let moved = format!("{server}\nlisten = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"");
        gw.write_config(&config(&upstream, &moved));
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(
            (status, body["generation"].clone()),
            (200, json!(2)),
            "{body}"
        );
        assert_eq!(
            gw.chat(hello()).await.status(),
            200,
            "still serving on the old address"
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn the_admin_api_is_disabled_without_a_token() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let gw = Gateway::start_reloadable(
            &config(&upstream, "reload_poll_ms = 0"),
            &[("acme", acme("chat-model"))],
        )
        .await;
        for (method, path) in [
            (Method::GET, "/admin/config"),
            (Method::POST, "/admin/reload"),
        ] {
            let r = gw.admin_request(method, path, Some("anything")).await;
            assert_eq!(r.status(), 401);
            let body: Value = serde_json::from_str(&read_text(r).await).unwrap();
            assert_eq!(body["error"]["type"], "authentication_error");
            assert_eq!(body["error"]["code"], "admin_api_disabled");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("disabled"),
                "{body}"
            );
        }
        // The unauthenticated endpoints stay open.
        for path in ["/metrics", "/healthz", "/readyz"] {
            assert_eq!(
                gw.admin_request(Method::GET, path, None).await.status(),
                200,
                "{path}"
            );
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn the_admin_api_wants_the_right_token_and_returns_no_secrets() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = echo_upstream().await;
        let (var, token) = admin_token("auth");
        let server = format!("admin_token_env = \"{var}\"\nreload_poll_ms = 0");
        let budget = "[budget]\ndaily_usd = 5.0\n\n[rate_limits]\nrequests_per_minute = 60\n";
        let gw = Gateway::start_reloadable(
            &config(&upstream, &server),
            &[(
                "acme",
                tenant_toml("acme", KEY, "chat-model", "think-model", budget),
            )],
        )
        .await;

        for bad in [None, Some("wrong-token"), Some("")] {
            let r = gw.admin_request(Method::GET, "/admin/config", bad).await;
            assert_eq!(r.status(), 401, "token {bad:?}");
            let body: Value = serde_json::from_str(&read_text(r).await).unwrap();
            assert_eq!(body["error"]["code"], "invalid_admin_token");
        }
        let r = gw
            .admin_request(Method::POST, "/admin/reload", Some("wrong-token"))
            .await;
        assert_eq!(r.status(), 401);

        let r = gw
            .admin_request(Method::GET, "/admin/config", Some(&token))
            .await;
        assert_eq!(r.status(), 200);
        let text = read_text(r).await;
        let config: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(config["generation"], 1);
        assert_eq!(config["hash"].as_str().unwrap().len(), 64);
        assert!(config["loaded_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(config["tenants"], json!(["acme"]));
        assert_eq!(
            config["models"],
            json!(["chat-model", "chat-model-2", "think-model"])
        );
        assert_eq!(config["sources"].as_array().unwrap().len(), 2);

        let r = gw
            .admin_request(Method::GET, "/admin/tenants/acme", Some(&token))
            .await;
        assert_eq!(r.status(), 200);
        let tenant_text = read_text(r).await;
        let tenant: Value = serde_json::from_str(&tenant_text).unwrap();
        assert_eq!(tenant["budget"]["daily_usd"], 5.0);
        assert_eq!(tenant["rate_limits"]["requests_per_minute"], 60);
        assert_eq!(tenant["fast_model"], "chat-model");
        assert_eq!(tenant["live"]["spend"]["today_usd"], 0.0);

        // Live state follows traffic: one completion (10 + 5 tokens at chat-model prices).
        let r = gw
            .chat(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(r.status(), 200);
        read_text(r).await;
        let r = gw
            .admin_request(Method::GET, "/admin/tenants/acme", Some(&token))
            .await;
        let live: Value = serde_json::from_str(&read_text(r).await).unwrap();
        let live = &live["live"];
        let spent = live["spend"]["today_usd"].as_f64().unwrap();
        assert!(spent > 0.0, "{live}");
        let remaining = live["budget"]["remaining_today_usd"].as_f64().unwrap();
        assert!((remaining - (5.0 - spent)).abs() < 1e-9, "{live}");
        assert_eq!(live["spend"]["requests_in_flight"], 0);
        assert_eq!(live["rate_limits"]["requests_per_minute"]["limit"], 60);
        assert_eq!(live["rate_limits"]["requests_per_minute"]["remaining"], 59);
        let r = gw
            .admin_request(Method::GET, "/admin/tenants/nobody", Some(&token))
            .await;
        assert_eq!(r.status(), 404);
        let r = gw
            .admin_request(Method::GET, "/admin/reload", Some(&token))
            .await;
        assert_eq!(r.status(), 405);

        let key_hash = hex::encode(deliberate::config::hash_api_key(KEY));
        let token_hash = hex::encode(deliberate::config::hash_api_key(&token));
        for body in [&text, &tenant_text] {
            for secret in [KEY, key_hash.as_str(), token.as_str(), token_hash.as_str()] {
                assert!(
                    !body.contains(secret),
                    "admin response leaks a secret: {body}"
                );
            }
        }
    })
    .await
    .expect("test finished in time");
}
