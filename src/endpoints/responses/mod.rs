//! `POST /v1/responses`: the OpenAI Responses API on top of the chat stack.
//!
//! - `request`: the Responses body -> the internal chat request, and the `Echo` of what the
//!   answer repeats back;
//! - here: a chat completion -> a `response` object (output items: reasoning, message,
//!   function calls; usage with reasoning tokens);
//! - `stream`: chat chunks -> the typed Responses events, as a body wrapper.
//!
//! - `replay`: a cache hit's stored answer with a fresh response id.
//!
//! Nothing is stored: `previous_response_id` and `store: true` are refused (see `request`).

mod replay;
mod request;
mod stream;

use std::sync::Arc;

use http::{Extensions, Response};
use serde_json::{json, Value};

pub use self::replay::with_fresh_id;
use super::{answer, DroppedFields};
use crate::api::ChatRequest;
use crate::body::Body;
use crate::error::GatewayError;

/// Request extension: what a Responses answer repeats back from its request, and its id.
#[derive(Debug, Clone)]
pub struct Echo {
    pub id: String,
    pub created_at: u64,
    /// The model the client named (the answer names the model that served).
    pub model: String,
    pub instructions: Value,
    pub max_output_tokens: Value,
    pub tools: Value,
    pub tool_choice: Value,
    pub parallel_tool_calls: Value,
    pub text: Value,
    pub reasoning: Value,
    pub temperature: Value,
    pub top_p: Value,
    pub user: Value,
    pub metadata: Value,
}

impl Echo {
    fn new() -> Echo {
        Echo {
            id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
            created_at: unix_now(),
            model: String::new(),
            instructions: Value::Null,
            max_output_tokens: Value::Null,
            tools: json!([]),
            tool_choice: json!("auto"),
            parallel_tool_calls: json!(true),
            text: json!({"format": {"type": "text"}}),
            reasoning: json!({"effort": null, "summary": null}),
            temperature: Value::Null,
            top_p: Value::Null,
            user: Value::Null,
            metadata: json!({}),
        }
    }

    /// An item id unique within this response (`kind` is `msg`, `fc` or `rs`).
    fn item_id(&self, kind: &str, index: usize) -> String {
        format!("{kind}_{}_{index}", self.id.trim_start_matches("resp_"))
    }

    /// The `response` object in `status` with `output`, as every event and the JSON answer
    /// carry it.
    fn response(&self, model: &str, status: &str, output: Vec<Value>, usage: Value) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": model,
            "output": output,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": null,
            "reasoning": self.reasoning,
            "store": false,
            "temperature": self.temperature,
            "text": self.text,
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_p": self.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": self.user,
            "metadata": self.metadata,
        })
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses a Responses request into the chat request; the `Echo` and the dropped fields go
/// into `extensions`.
pub fn parse(bytes: &[u8], extensions: &mut Extensions) -> Result<ChatRequest, GatewayError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("Request body is not valid JSON: {e}"), None))?;
    let Value::Object(body) = value else {
        return Err(GatewayError::invalid(
            "Request body must be a JSON object.",
            None,
        ));
    };
    let translated = request::translate(body)?;
    let chat = ChatRequest::from_body(translated.chat)?;
    extensions.insert(Arc::new(translated.echo));
    if !translated.dropped.is_empty() {
        extensions.insert(DroppedFields(translated.dropped));
    }
    Ok(chat)
}

/// Responses usage from chat usage (`null` stays `null`); numbers saturate, never wrap.
fn usage(chat: &Value) -> Value {
    if !chat.is_object() {
        return Value::Null;
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let input = n(&chat["prompt_tokens"]);
    let output = n(&chat["completion_tokens"]);
    let total = chat["total_tokens"]
        .as_u64()
        .unwrap_or(input.saturating_add(output));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": n(&chat["prompt_tokens_details"]["cached_tokens"])},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n(&chat["completion_tokens_details"]["reasoning_tokens"])},
        "total_tokens": total,
    })
}

/// The status of a finished answer, and why it is incomplete if it is.
fn finish_status(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn message_item(id: String, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [output_text(text)]})
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn reasoning_item(id: String, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "summary": [],
        "content": [{"type": "reasoning_text", "text": text}]})
}

fn call_item(id: String, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments})
}

/// A chat completion as a `response` object.
fn from_completion(echo: &Echo, model: &str, completion: &Value) -> Value {
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let mut output = Vec::new();
    if let Some(text) = message["reasoning_content"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        output.push(reasoning_item(echo.item_id("rs", output.len()), text));
    }
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(
            echo.item_id("msg", output.len()),
            text,
            "completed",
        ));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let function = &call["function"];
        output.push(call_item(
            echo.item_id("fc", output.len()),
            call["id"].as_str().unwrap_or(""),
            function["name"].as_str().unwrap_or(""),
            function["arguments"].as_str().unwrap_or(""),
            "completed",
        ));
    }
    let (status, incomplete) = finish_status(choice["finish_reason"].as_str());
    let mut response = echo.response(model, status, output, usage(&completion["usage"]));
    response["incomplete_details"] = incomplete;
    response
}

/// The chat answer as the Responses answer: a 200 JSON completion converted whole, a 200
/// stream wrapped in the event writer; anything else passes unchanged.
pub async fn adapt(
    echo: Arc<Echo>,
    response: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    let default_model = echo.model.clone();
    let for_stream = echo.clone();
    answer::adapt_answer(
        response,
        || default_model,
        |body, model| Body::new(stream::ResponsesEvents::new(body, for_stream, model)),
        |completion, model| Ok(from_completion(&echo, &model, completion)),
    )
    .await
}

/// True for a complete answer: a stream that reached `response.completed`, JSON whose
/// status is `completed`.
pub fn clean_answer(stream: bool, bytes: &[u8]) -> bool {
    answer::clean_answer(
        stream,
        bytes,
        "response.completed",
        "response.failed",
        |v| v["status"] == "completed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_with_reasoning_text_and_a_call_becomes_three_items() {
        let echo = Echo::new();
        let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "let me check", "reasoning_content": "think",
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 7,
                "completion_tokens_details": {"reasoning_tokens": 3}}});
        let r = from_completion(&echo, "demo-reasoning", &completion);
        let types: Vec<_> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["reasoning", "message", "function_call"]);
        assert_eq!(r["output"][2]["call_id"], "call_1");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["model"], "demo-reasoning");
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 17})
        );
    }

    #[test]
    fn a_length_stop_is_incomplete() {
        let completion = json!({"choices": [{"finish_reason": "length",
            "message": {"role": "assistant", "content": "abc"}}], "usage": null});
        let r = from_completion(&Echo::new(), "m", &completion);
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert!(!clean_answer(false, &serde_json::to_vec(&r).unwrap()));
    }

    #[test]
    fn usage_saturates_instead_of_wrapping() {
        let u = usage(&json!({"prompt_tokens": u64::MAX, "completion_tokens": 5}));
        assert_eq!(u["total_tokens"], u64::MAX);
    }
}
