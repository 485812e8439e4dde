//! Tests of `request.rs`.

use super::*;

fn translated(v: Value) -> Result<Translated, GatewayError> {
    match v {
        Value::Object(m) => translate(m),
        _ => unreachable!(),
    }
}

fn param(e: GatewayError) -> String {
    e.to_json()["error"]["param"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_string_input_with_instructions_becomes_system_and_user() {
    let t = translated(
        json!({"model": "auto", "instructions": "be brief", "input": "hi",
        "max_output_tokens": 50, "reasoning": {"effort": "high"}, "stream": true}),
    )
    .unwrap();
    assert_eq!(
        t.chat["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(t.chat["max_tokens"], 50);
    assert_eq!(t.chat["reasoning_effort"], "high");
    assert_eq!(t.chat["stream_options"], json!({"include_usage": true}));
    assert_eq!(t.echo.instructions, "be brief");
}

#[test]
fn a_function_call_round_trip_becomes_tool_calls_and_a_tool_message() {
    let t = translated(json!({"model": "auto", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": "noon"}
    ], "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
       "tool_choice": {"type": "function", "name": "get_weather"}}))
    .unwrap();
    let m = t.chat["messages"].as_array().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m[0]["content"], "weather?");
    assert_eq!(m[1]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(m[1]["tool_calls"][1]["function"]["name"], "get_time");
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    );
    assert_eq!(t.chat["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        t.chat["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
}

#[test]
fn a_json_schema_format_becomes_response_format() {
    let t = translated(json!({"model": "auto", "input": "x", "text": {"format":
        {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": true}}}))
    .unwrap();
    assert_eq!(
        t.chat["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}})
    );
}

#[test]
fn stateful_fields_are_refused_by_name() {
    let e = translated(json!({"model": "auto", "input": "x", "previous_response_id": "resp_1"}));
    assert_eq!(param(e.err().unwrap()), "previous_response_id");
    let e = translated(json!({"model": "auto", "input": "x", "store": true}));
    assert_eq!(param(e.err().unwrap()), "store");
    assert!(translated(json!({"model": "auto", "input": "x", "store": false})).is_ok());
    let e = translated(json!({"model": "auto", "input": [{"type": "item_reference", "id": "x"}]}));
    assert_eq!(param(e.err().unwrap()), "input[0]");
}

#[test]
fn bad_input_names_the_field() {
    let e = translated(json!({"model": "auto"}));
    assert_eq!(param(e.err().unwrap()), "input");
    let e = translated(json!({"model": "auto", "input": 3}));
    assert_eq!(param(e.err().unwrap()), "input");
    let e = translated(json!({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}));
    assert_eq!(param(e.err().unwrap()), "tools[0].type");
    let e = translated(json!({"model": "auto", "input": "x", "max_output_tokens": -1}));
    assert_eq!(param(e.err().unwrap()), "max_output_tokens");
    let e = translated(json!({"model": "auto", "input": [{"type": "function_call_output"}]}));
    assert_eq!(param(e.err().unwrap()), "input[0].call_id");
}

#[test]
fn unknown_fields_are_dropped_and_reported() {
    let t = translated(
        json!({"model": "auto", "input": "x", "frobnicate": 1, "include": [],
        "reasoning": {"effort": "low", "summary": "auto"}}),
    )
    .unwrap();
    assert_eq!(t.dropped, ["frobnicate", "reasoning.summary"]);
    assert!(t.chat.get("frobnicate").is_none());
}
