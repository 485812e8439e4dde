//! A Chat Completions answer -> an Anthropic message. Pure, no I/O.
//!
//! The first choice becomes the message: `reasoning_content` (or `reasoning`, as vLLM and
//! others name it) a `thinking` block, then the text, then one `tool_use` block per tool
//! call; `finish_reason` becomes `stop_reason`; usage becomes Anthropic's counts (input
//! without cache reads). Thinking blocks carry an empty `signature`: only Anthropic signs
//! them, and its own answers are not translated (they pass natively).

use serde_json::{json, Value};

use crate::upstream::providers::anthropic::response::{stop_reason, Usage};

/// An Anthropic message id for a chat completion id (`chatcmpl-x` -> `msg_x`; an id that
/// came from Anthropic through the chat translation gets its own id back).
pub fn message_id(chat_id: &str) -> String {
    let rest = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    if rest.starts_with("msg_") {
        rest.to_string()
    } else {
        format!("msg_{rest}")
    }
}

/// The reasoning text of a chat message or delta, under either name providers use.
pub fn reasoning_of(message: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// A tool call's arguments as the `input` object (a string that is not a JSON object
/// becomes `{}`; the model's raw text is then lost, which Anthropic's shape cannot carry).
fn tool_input(arguments: &Value) -> Value {
    match arguments {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({})),
        v @ Value::Object(_) => v.clone(),
        _ => json!({}),
    }
}

/// Translates a chat completion (JSON) into an Anthropic `message`. `None` if the answer
/// has no choice to translate.
pub fn to_message(chat: &Value) -> Option<Value> {
    let choice = chat.get("choices")?.as_array()?.first()?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(thinking) = reasoning_of(message) {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    let text = message["content"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| message["refusal"].as_str().filter(|s| !s.is_empty()));
    if let Some(text) = text {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": tool_input(&call["function"]["arguments"]),
        }));
    }
    let usage = Usage::from_openai(&chat["usage"]);
    Some(json!({
        "id": message_id(chat["id"].as_str().unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": chat["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": usage.to_anthropic(),
    }))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn recorded_chat_answers_become_messages() {
        for (chat, expected) in [
            (
                fixture!("chat_text.json"),
                fixture!("chat_text.message.json"),
            ),
            (
                fixture!("chat_tool_call.json"),
                fixture!("chat_tool_call.message.json"),
            ),
            (
                fixture!("chat_reasoning.json"),
                fixture!("chat_reasoning.message.json"),
            ),
        ] {
            let chat: Value = serde_json::from_str(chat).unwrap();
            let expected: Value = serde_json::from_str(expected).unwrap();
            assert_eq!(to_message(&chat).unwrap().to_string(), expected.to_string());
        }
    }

    #[test]
    fn finish_reasons_become_stop_reasons() {
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("content_filter", "refusal"),
        ] {
            let chat = json!({"id": "c", "model": "m", "choices": [{"message": {"content": "x"}, "finish_reason": finish}]});
            assert_eq!(to_message(&chat).unwrap()["stop_reason"], stop);
        }
    }

    #[test]
    fn ids_and_odd_answers() {
        assert_eq!(message_id("chatcmpl-abc"), "msg_abc");
        assert_eq!(message_id("chatcmpl-msg_01XY"), "msg_01XY");
        assert_eq!(message_id("abc"), "msg_abc");
        assert_eq!(to_message(&json!({"choices": []})), None);
        // Arguments that are not a JSON object, and absent usage.
        let chat = json!({"id": "c", "model": "m", "choices": [{"message": {"content": null,
            "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "not json"}}]}, "finish_reason": "tool_calls"}]});
        let m = to_message(&chat).unwrap();
        assert_eq!(m["content"][0]["input"], json!({}));
        assert_eq!(m["usage"]["input_tokens"], 0);
    }
}
