use serde_json::{json, Map, Value};

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/messages/",
            $name
        ))
    };
}

fn body(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

fn translate(v: Value) -> (ChatRequest, MessagesContext) {
    to_chat(&body(v)).expect("translates")
}

/// The 400's message and param.
fn refused(v: Value) -> (String, Value) {
    let e = to_chat(&body(v)).expect_err("refused").to_json();
    (
        e["error"]["message"].as_str().unwrap().to_string(),
        e["error"]["param"].clone(),
    )
}

fn minimal(extra: Value) -> Value {
    let mut v = json!({"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn every_feature_of_a_messages_request_maps_to_chat() {
    let request: Value = serde_json::from_str(fixture!("request_full.json")).unwrap();
    let expected: Value = serde_json::from_str(fixture!("request_full.expected.json")).unwrap();
    let (chat, ctx) = translate(request);
    // Key order included: the translated body is what providers receive.
    assert_eq!(
        Value::Object(chat.body.clone()).to_string(),
        expected.to_string()
    );
    assert_eq!(&*ctx.client_model, "auto");
    assert!(ctx.stream);
    assert_eq!(ctx.dropped, ["top_k", "service_tier"]);
    // The classifier sees the user's words, system prompt included.
    let conversation = chat.conversation();
    assert!(conversation
        .turns
        .iter()
        .any(|t| t.text.contains("weather in Paris")));
}

#[test]
fn a_minimal_request_is_plain_chat() {
    let (chat, ctx) = translate(minimal(json!({})));
    assert_eq!(
        Value::Object(chat.body).to_string(),
        json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})
            .to_string()
    );
    assert!(!ctx.stream && ctx.dropped.is_empty());
}

#[test]
fn thinking_budgets_become_reasoning_efforts() {
    for (budget, effort) in [
        (1024, "low"),
        (4095, "low"),
        (4096, "medium"),
        (16384, "high"),
        (64000, "high"),
    ] {
        let (chat, _) = translate(minimal(
            json!({"thinking": {"type": "enabled", "budget_tokens": budget}}),
        ));
        assert_eq!(chat.reasoning_effort(), Some(effort), "{budget}");
    }
    let (chat, _) = translate(minimal(json!({"thinking": {"type": "disabled"}})));
    assert_eq!(chat.reasoning_effort(), None);
    let (message, param) = refused(minimal(json!({"thinking": {"type": "enabled"}})));
    assert_eq!(param, "thinking.budget_tokens", "{message}");
    let (_, param) = refused(minimal(json!({"thinking": {"type": "sometimes"}})));
    assert_eq!(param, "thinking.type");
}

#[test]
fn tool_choices_map_to_their_chat_equivalents() {
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    for (choice, expected) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "none"}), json!("none")),
        (json!({"type": "any"}), json!("required")),
        (
            json!({"type": "tool", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ] {
        let (chat, _) = translate(minimal(json!({"tools": tools, "tool_choice": choice})));
        assert_eq!(chat.body["tool_choice"], expected);
        assert!(!chat.body.contains_key("parallel_tool_calls"));
    }
    let (_, param) = refused(minimal(
        json!({"tools": tools, "tool_choice": {"type": "tool"}}),
    ));
    assert_eq!(param, "tool_choice.name");
}

#[test]
fn required_fields_are_named_when_missing_or_wrong() {
    let cases = [
        (
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "auto", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "auto", "max_tokens": -5, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (json!({"model": "auto", "max_tokens": 1}), "messages"),
        (
            json!({"model": "auto", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (
            minimal(json!({"messages": [{"role": "system", "content": "x"}]})),
            "messages[0].role",
        ),
        (
            minimal(json!({"messages": [{"role": "user", "content": 7}]})),
            "messages[0].content",
        ),
        (
            minimal(json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})),
            "messages[0].content[0].type",
        ),
        (minimal(json!({"stream": "yes"})), "stream"),
        (minimal(json!({"temperature": "hot"})), "temperature"),
        (minimal(json!({"stop_sequences": "END"})), "stop_sequences"),
        (
            minimal(json!({"metadata": {"user_id": 5}})),
            "metadata.user_id",
        ),
        (minimal(json!({"system": 3})), "system"),
        (
            minimal(json!({"system": [{"type": "image"}]})),
            "system[0].type",
        ),
        (
            minimal(json!({"tools": [{"name": "f"}]})),
            "tools[0].input_schema",
        ),
    ];
    for (request, param) in cases {
        let (message, got) = refused(request.clone());
        assert_eq!(got, param, "{request}: {message}");
        assert!(message.contains(param), "{message}");
    }
}

#[test]
fn what_chat_cannot_express_is_refused_by_name() {
    let (message, param) = refused(minimal(
        json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    ));
    assert_eq!(param, "tools[0].type");
    assert!(
        message.contains("web_search_20250305") && message.contains("not supported"),
        "{message}"
    );
    let doc = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}});
    let (message, param) = refused(minimal(
        json!({"messages": [{"role": "user", "content": [doc]}]}),
    ));
    assert_eq!(param, "messages[0].content[0].type");
    assert!(message.contains("`document`"), "{message}");
    let image = json!({"type": "image", "source": {"type": "file", "file_id": "f"}});
    let (_, param) = refused(minimal(
        json!({"messages": [{"role": "user", "content": [image]}]}),
    ));
    assert_eq!(param, "messages[0].content[0].source.type");
    let image = json!({"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}});
    let (_, param) = refused(minimal(
        json!({"messages": [{"role": "user", "content": [image]}]}),
    ));
    assert_eq!(param, "messages[0].content[0].source.url");
}

#[test]
fn an_assistant_turn_of_only_thinking_leaves_no_empty_message() {
    let (chat, _) = translate(minimal(json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xyz"}]},
        {"role": "user", "content": "again"},
    ]})));
    let roles: Vec<_> = chat.messages().iter().map(|m| m["role"].clone()).collect();
    assert_eq!(roles, [json!("user"), json!("user")]);
}

#[test]
fn a_tool_use_without_input_sends_empty_arguments_object() {
    let (chat, _) = translate(minimal(json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "now"}]},
    ]})));
    let call = &chat.messages()[1]["tool_calls"][0];
    assert_eq!(call["function"]["arguments"], "{}");
    assert_eq!(chat.messages()[1]["content"], Value::Null);
}
