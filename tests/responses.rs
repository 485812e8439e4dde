//! `POST /v1/responses` seen from a client, against a mock OpenAI-compatible upstream: the
//! chat request the provider receives, the response object and typed events the client
//! gets back, the clear 400s for server-side state, and the same metering, budgets and
//! cache as chat completions.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn post(gw: &Gateway, body: Value) -> reqwest::Response {
    let request = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&body);
    tokio::time::timeout(TEST_TIMEOUT, request.send())
        .await
        .expect("request finished in time")
        .expect("request sent")
}

/// The (event name, payload) pairs of a Responses SSE body.
pub fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

fn completion_with_usage(model: &str, prompt: u64, completion: u64) -> Value {
    let mut c = common::completion(model, "ok");
    c["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    c
}

#[tokio::test]
async fn a_string_input_becomes_a_chat_request_and_the_answer_a_response_object() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = post(
        &gw,
        json!({"model": "fast", "instructions": "Be brief.", "input": "hi",
            "max_output_tokens": 50, "metadata": {"k": "v"}, "frobnicate": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert!(header(&r, "x-deliberate-adjusted").contains("dropped frobnicate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["model"], "chat-model");
    assert_eq!(body["instructions"], "Be brief.");
    assert_eq!(body["metadata"], json!({"k": "v"}));
    assert_eq!(body["max_output_tokens"], 50);
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(body["output"][0]["content"][0]["text"], "hello");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15})
    );

    let sent = &upstream.requests()[0];
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(sent.body["max_tokens"], 50);
    assert!(sent.body.get("frobnicate").is_none());
    assert!(sent.body.get("input").is_none());
}

#[tokio::test]
async fn reasoning_effort_routes_auto_to_reasoning_and_is_passed_on() {
    let upstream = MockUpstream::ok("thought").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = post(
        &gw,
        json!({"model": "auto", "input": "hi there", "reasoning": {"effort": "high"}, "max_output_tokens": 64}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    assert_eq!(header(&r, "x-deliberate-reason"), "reasoning_effort=high");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reasoning"]["effort"], "high");
    let sent = &upstream.requests()[0];
    assert_eq!(sent.body["model"], "think-model-2025");
    assert_eq!(sent.body["reasoning_effort"], "high");
    // The reasoning model's own token parameter.
    assert_eq!(sent.body["max_completion_tokens"], 64);

    // A chat model takes no effort: routed by it, not sent it.
    let r = post(
        &gw,
        json!({"model": "fast", "input": "hi", "reasoning": {"effort": "low"}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(upstream.requests()[1]
        .body
        .get("reasoning_effort")
        .is_none());
}

#[tokio::test]
async fn a_stream_becomes_typed_events_with_usage_in_the_completed_event() {
    let mut usage_chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
        "model": "m", "choices": []});
    usage_chunk["usage"] = json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 1}});
    let events_sent = vec![
        (Duration::ZERO, data_event(&chunk("Hel"))),
        (Duration::from_millis(5), data_event(&chunk("lo"))),
        (Duration::ZERO, data_event(&usage_chunk)),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let upstream = MockUpstream::stream(events_sent, StreamEnd::Close).await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = post(&gw, json!({"model": "fast", "input": "hi", "stream": true})).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let events = events(&read_text(r).await);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (name, payload) in &events {
        assert_eq!(payload["type"], name.as_str());
    }
    let done = &events[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["total_tokens"], 9);
    assert_eq!(
        done["usage"]["output_tokens_details"]["reasoning_tokens"],
        1
    );
    // The gateway asked for usage on the client's behalf.
    assert_eq!(
        upstream.requests()[0].body["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_one_response_failed_event() {
    let upstream = MockUpstream::stream(
        vec![(Duration::ZERO, data_event(&chunk("partial")))],
        StreamEnd::Abort,
    )
    .await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = post(&gw, json!({"model": "fast", "input": "hi", "stream": true})).await;
    assert_eq!(r.status(), 200);
    let events = events(&read_text(r).await);
    let (last, payload) = events.last().unwrap();
    assert_eq!(last, "response.failed", "{events:?}");
    assert_eq!(payload["response"]["status"], "failed");
    assert!(payload["response"]["error"]["message"].is_string());
    let failed = events
        .iter()
        .filter(|(n, _)| n == "response.failed")
        .count();
    assert_eq!(failed, 1);
    assert!(!events.iter().any(|(n, _)| n == "response.completed"));
    let outcome = metrics_value(
        &gw,
        "deliberate_requests_total",
        &["tenant=\"acme\"", "outcome=\"ok\""],
    )
    .await;
    assert_eq!(outcome, 0.0, "a broken stream is not counted as ok");
}

#[tokio::test]
async fn server_side_state_is_refused_with_a_clear_400() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for (field, value) in [
        ("previous_response_id", json!("resp_1")),
        ("store", json!(true)),
        ("background", json!(true)),
    ] {
        let mut body = json!({"model": "fast", "input": "hi"});
        body[field] = value;
        let error = expect_error(
            post(&gw, body).await,
            400,
            "invalid_request_error",
            "invalid_request",
        )
        .await;
        assert_eq!(error["param"], field);
        assert_message_contains(&error, "not supported");
    }
    let error = expect_error(
        post(&gw, json!({"model": "fast"})).await,
        400,
        "invalid_request_error",
        "invalid_request",
    )
    .await;
    assert_eq!(error["param"], "input");
    assert_eq!(upstream.count(), 0, "nothing refused reaches the provider");
    // Only POST.
    let r = client()
        .get(gw.url("/v1/responses"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "invalid_request_error", "method_not_allowed").await;
}

#[tokio::test]
async fn responses_are_metered_and_budgeted_like_chat() {
    // Each answer costs 0.00045 USD; the daily budget is 0.0005.
    let upstream = MockUpstream::start(|r| {
        let model = r.body["model"].as_str().unwrap_or_default().to_string();
        MockReply::json(completion_with_usage(&model, 1000, 500))
    })
    .await;
    let gw = Gateway::start(
        &openai_config(upstream.addr, ""),
        &[(
            "acme",
            tenant_toml(
                "acme",
                KEY,
                "chat-model",
                "think-model",
                "[budget]\ndaily_usd = 0.0005\non_limit = \"reject\"\n",
            ),
        )],
    )
    .await;
    let ask = json!({"model": "fast", "input": "name a puppy", "max_output_tokens": 100});
    let first = post(&gw, ask.clone()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-deliberate-cost-usd"), "0.000450");
    read_text(first).await;
    let second = post(&gw, ask).await;
    let body = expect_error_body(second, 429, "insufficient_quota", "budget_exceeded").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daily budget"));
    assert_eq!(upstream.count(), 1, "a refused request is never sent");
    let labels = ["tenant=\"acme\"", "model=\"chat-model\""];
    let ok = ["tenant=\"acme\"", "model=\"chat-model\"", "outcome=\"ok\""];
    assert_eq!(
        metrics_value(&gw, "deliberate_requests_total", &ok).await,
        1.0
    );
    assert!(metrics_value(&gw, "deliberate_cost_usd_total", &labels).await > 0.0);
    assert_eq!(
        metrics_value(
            &gw,
            "deliberate_requests_total",
            &["outcome=\"budget_exceeded\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_cache_hit_replays_the_responses_answer_and_is_not_shared_with_chat() {
    let upstream = MockUpstream::start(|r| match r.body["stream"].as_bool() {
        Some(true) => MockReply::sse(vec![chunk("cached words")], Duration::ZERO),
        _ => MockReply::json(completion("chat-model", "cached words")),
    })
    .await;
    let gw = Gateway::with_openai_policy(&upstream, "[cache]\nenabled = true\n").await;
    for stream in [false, true] {
        let ask = json!({"model": "fast", "input": "hi", "temperature": 0, "stream": stream});
        let first = post(&gw, ask.clone()).await;
        assert_eq!(header(&first, "x-deliberate-cache"), "miss");
        let first = read_text(first).await;
        let first_id = response_id(stream, &first);
        let mut ids = vec![first_id.clone()];
        for _ in 0..2 {
            let replay = post(&gw, ask.clone()).await;
            assert_eq!(
                header(&replay, "x-deliberate-cache"),
                "hit",
                "stream={stream}"
            );
            let replay = read_text(replay).await;
            // A fresh response id per replay (its item ids with it); otherwise the stored
            // answer, byte for byte.
            let id = response_id(stream, &replay);
            assert!(!ids.contains(&id), "stream={stream}: {id} reused");
            assert_eq!(
                replay.replace(&id[5..], &first_id[5..]),
                first,
                "stream={stream}"
            );
            if stream {
                assert_valid_sequence(&replay, &id);
            } else {
                let body: Value = serde_json::from_str(&replay).unwrap();
                assert_eq!(body["status"], "completed");
                assert_eq!(body["output"][0]["content"][0]["text"], "cached words");
                let item = body["output"][0]["id"].as_str().unwrap();
                assert_eq!(item, format!("msg_{}_0", &id[5..]));
            }
            ids.push(id);
        }
    }
    assert_eq!(
        upstream.count(),
        2,
        "the replays never reached the upstream"
    );
    // The same conversation through chat completions is its own entry.
    let chat = gw
        .chat(json!({"model": "fast", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(header(&chat, "x-deliberate-cache"), "miss");
    let chat: Value = chat.json().await.unwrap();
    assert_eq!(chat["object"], "chat.completion");
}

/// The response id of a Responses answer: the JSON's `id`, or the stream's first event's.
fn response_id(stream: bool, text: &str) -> String {
    let response = if stream {
        events(text)[0].1["response"].clone()
    } else {
        serde_json::from_str::<Value>(text).unwrap()
    };
    let id = response["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_"), "{id}");
    id
}

/// A replayed stream is a whole Responses event sequence: created, in progress, the
/// message item opened, its text, closed, completed; numbered in order, one response id.
fn assert_valid_sequence(text: &str, id: &str) {
    let events = events(text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{text}"
    );
    for (i, (name, event)) in events.iter().enumerate() {
        assert_eq!(event["type"], name.as_str());
        assert_eq!(event["sequence_number"], i as u64, "{name}");
        if let Some(response) = event.get("response") {
            assert_eq!(response["id"], id, "{name}");
        }
        if let Some(item) = event.get("item_id").or_else(|| event["item"].get("id")) {
            assert_eq!(item, &format!("msg_{}_0", &id[5..]), "{name}");
        }
    }
    assert_eq!(events[8].1["response"]["status"], "completed");
    assert_eq!(
        events[8].1["response"]["output"][0]["content"][0]["text"],
        "cached words"
    );
}
