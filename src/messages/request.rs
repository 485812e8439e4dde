//! Anthropic Messages request -> the gateway's internal Chat Completions request. Pure, no I/O.
//!
//! The classifier, the policies and every provider see a chat request; what the answer's
//! translation back needs is kept in [`MessagesContext`]. Mapping decisions that are not
//! one-to-one:
//! - `system` (a string, or text blocks) becomes one `system` message per block.
//! - A user turn's `tool_result` blocks become `tool` messages placed before the rest of the
//!   turn (OpenAI wants them right after the assistant's `tool_calls`); a result's text
//!   blocks are joined, `is_error: true` prefixes it with `Error: `, and its images move to
//!   the user message that follows (a `tool` message holds only text).
//! - Assistant `thinking` / `redacted_thinking` blocks are dropped: they are only meaningful
//!   (signed) to Anthropic, which gets the original body natively anyway.
//! - `thinking: {type: enabled, budget_tokens}` becomes a `reasoning_effort` (low below 4096
//!   tokens, medium below 16384, high above): `auto` routes it to the reasoning tier, and a
//!   reasoning model gets the effort. `type: disabled` is the default and says nothing.
//! - `tool_choice` `any` -> `required`, `tool` -> that function, `disable_parallel_tool_use`
//!   -> `parallel_tool_calls: false`; `metadata.user_id` -> `user`; `stop_sequences` -> `stop`.
//! - A stream always asks for usage (`stream_options.include_usage`): Anthropic's
//!   `message_delta` carries it.
//! - Server tools (`web_search_*`, `bash_*`, ...), `document` and other block types have no
//!   chat equivalent: 400 naming the field. Top-level fields without one (`top_k`,
//!   `service_tier`, `container`, ...) are dropped and named in [`MessagesContext::dropped`].

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::ChatRequest;
use crate::error::GatewayError;
use crate::upstream::providers::anthropic::effort_for_budget;

/// Request extension of a `/v1/messages` request: what the answer's translation needs.
#[derive(Debug, Clone)]
pub struct MessagesContext {
    /// The `model` the client sent (`auto`, a tier, or a model name).
    pub client_model: Arc<str>,
    pub stream: bool,
    /// Top-level fields with no chat equivalent, dropped on the translated path.
    pub dropped: Vec<String>,
}

/// Fields this translation reads; every other top-level field is dropped and reported.
const HANDLED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
];

fn invalid(param: impl Into<String>, message: impl std::fmt::Display) -> GatewayError {
    let param = param.into();
    GatewayError::invalid(format!("`{param}`: {message}"), Some(param))
}

fn unsupported(param: impl Into<String>, what: impl std::fmt::Display) -> GatewayError {
    let param = param.into();
    GatewayError::invalid(
        format!("`{param}`: {what} is not supported by this gateway's /v1/messages."),
        Some(param),
    )
}

/// Translates a parsed Messages request body. Errors are 400s naming the field.
pub fn to_chat(body: &Map<String, Value>) -> Result<(ChatRequest, MessagesContext), GatewayError> {
    let get = |k: &str| body.get(k).filter(|v| !v.is_null());
    let model = match get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(invalid("model", "must be a non-empty string")),
        None => return Err(invalid("model", "Field required")),
    };
    let max_tokens = match get("max_tokens") {
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("max_tokens", "must be a positive integer"))?,
        None => return Err(invalid("max_tokens", "Field required")),
    };
    let stream = match get("stream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid("stream", "must be a boolean"))?,
    };

    let mut messages = Vec::new();
    match get("system") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            for (i, block) in blocks.iter().enumerate() {
                let text = text_of(block, &format!("system[{i}]"))?;
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "must be a string or an array of text blocks",
            ))
        }
    }
    let turns = match get("messages") {
        Some(Value::Array(turns)) if !turns.is_empty() => turns,
        Some(Value::Array(_)) => return Err(invalid("messages", "must not be empty")),
        Some(_) => return Err(invalid("messages", "must be an array")),
        None => return Err(invalid("messages", "Field required")),
    };
    for (i, turn) in turns.iter().enumerate() {
        translate_turn(i, turn, &mut messages)?;
    }

    let mut chat = Map::new();
    chat.insert("model".into(), model.clone().into());
    chat.insert("messages".into(), Value::Array(messages));
    chat.insert("max_tokens".into(), max_tokens.into());
    for key in ["temperature", "top_p"] {
        if let Some(v) = get(key) {
            if !v.is_number() {
                return Err(invalid(key, "must be a number"));
            }
            chat.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = get("stop_sequences") {
        let stops = stops
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| invalid("stop_sequences", "must be an array of strings"))?;
        if !stops.is_empty() {
            chat.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    if let Some(tools) = get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| invalid("tools", "must be an array"))?;
        let tools = tools
            .iter()
            .enumerate()
            .map(|(j, t)| translate_tool(j, t))
            .collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            chat.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = get("tool_choice") {
        translate_tool_choice(choice, &mut chat)?;
    }
    if let Some(user) = get("metadata").and_then(|m| m.get("user_id")) {
        match user {
            Value::String(u) => {
                chat.insert("user".into(), u.clone().into());
            }
            Value::Null => {}
            _ => return Err(invalid("metadata.user_id", "must be a string")),
        }
    }
    if let Some(thinking) = get("thinking") {
        if let Some(effort) = thinking_effort(thinking)? {
            chat.insert("reasoning_effort".into(), effort.into());
        }
    }
    if stream {
        chat.insert("stream".into(), true.into());
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let dropped = body
        .iter()
        .filter(|(k, v)| !HANDLED.contains(&k.as_str()) && !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    let chat = ChatRequest::from_body(chat)?;
    let context = MessagesContext {
        client_model: model.into(),
        stream,
        dropped,
    };
    Ok((chat, context))
}

/// `thinking` -> `reasoning_effort`; `None` when thinking is disabled.
fn thinking_effort(thinking: &Value) -> Result<Option<&'static str>, GatewayError> {
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("thinking.budget_tokens", "must be a positive integer"))?;
            Ok(Some(effort_for_budget(budget)))
        }
        Some("disabled") => Ok(None),
        _ => Err(invalid("thinking.type", "must be `enabled` or `disabled`")),
    }
}

/// The text of a `text` block (system prompts, tool results).
fn text_of<'a>(block: &'a Value, param: &str) -> Result<&'a str, GatewayError> {
    if block.get("type").and_then(Value::as_str) != Some("text") {
        return Err(invalid(format!("{param}.type"), "must be `text`"));
    }
    block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{param}.text"), "must be a string"))
}

/// One Anthropic turn -> one or more chat messages, appended to `out`.
fn translate_turn(i: usize, turn: &Value, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let p = format!("messages[{i}]");
    let role = turn.get("role").and_then(Value::as_str);
    let content = turn.get("content").unwrap_or(&Value::Null);
    let cp = format!("{p}.content");
    let blocks = match content {
        Value::String(s) => {
            match role {
                Some("user" | "assistant") => {
                    out.push(json!({"role": role, "content": s}));
                }
                _ => {
                    return Err(invalid(
                        format!("{p}.role"),
                        "must be `user` or `assistant`",
                    ))
                }
            }
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(
                cp,
                "must be a string or an array of content blocks",
            ))
        }
    };
    match role {
        Some("user") => translate_user(&cp, blocks, out),
        Some("assistant") => translate_assistant(&cp, blocks, out),
        _ => Err(invalid(
            format!("{p}.role"),
            "must be `user` or `assistant`",
        )),
    }
}

fn translate_user(cp: &str, blocks: &[Value], out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bp = format!("{cp}[{j}]");
        match block_type(block, &bp)? {
            "text" => parts.push(json!({"type": "text", "text": text_of(block, &bp)?})),
            "image" => parts.push(image_part(block, &bp)?),
            "tool_result" => {
                let (message, images) = tool_message(block, &bp)?;
                out.push(message);
                parts.extend(images);
            }
            other => return Err(unsupported(format!("{bp}.type"), format!("`{other}`"))),
        }
    }
    push_user(parts, out);
    Ok(())
}

/// A user message of `parts`: plain text when it is one text part, else the parts.
fn push_user(mut parts: Vec<Value>, out: &mut Vec<Value>) {
    let content = match parts.len() {
        0 => return,
        1 if parts[0]["type"] == "text" => parts[0]["text"].take(),
        _ => Value::Array(parts),
    };
    out.push(json!({"role": "user", "content": content}));
}

/// A `tool_result` block -> a `tool` message, and the images it held (for the next user
/// message: a tool message carries text only).
fn tool_message(block: &Value, bp: &str) -> Result<(Value, Vec<Value>), GatewayError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{bp}.tool_use_id"), "must be a string"))?;
    let mut images = Vec::new();
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(inner)) => {
            let mut texts = Vec::new();
            for (k, b) in inner.iter().enumerate() {
                let ip = format!("{bp}.content[{k}]");
                match block_type(b, &ip)? {
                    "text" => texts.push(text_of(b, &ip)?),
                    "image" => images.push(image_part(b, &ip)?),
                    other => return Err(unsupported(format!("{ip}.type"), format!("`{other}`"))),
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(invalid(
                format!("{bp}.content"),
                "must be a string or blocks",
            ))
        }
    };
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok((
        json!({"role": "tool", "tool_call_id": id, "content": text}),
        images,
    ))
}

fn translate_assistant(
    cp: &str,
    blocks: &[Value],
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bp = format!("{cp}[{j}]");
        match block_type(block, &bp)? {
            "text" => text.push_str(text_of(block, &bp)?),
            "thinking" | "redacted_thinking" => {}
            "tool_use" => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("{bp}.{name}"), "must be a string"))
                };
                let input = match block.get("input") {
                    None | Some(Value::Null) => json!({}),
                    Some(v @ Value::Object(_)) => v.clone(),
                    Some(_) => return Err(invalid(format!("{bp}.input"), "must be an object")),
                };
                calls.push(json!({
                    "id": field("id")?,
                    "type": "function",
                    "function": {"name": field("name")?, "arguments": input.to_string()},
                }));
            }
            other => return Err(unsupported(format!("{bp}.type"), format!("`{other}`"))),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    out.push(message);
    Ok(())
}

fn block_type<'a>(block: &'a Value, bp: &str) -> Result<&'a str, GatewayError> {
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{bp}.type"), "Field required"))
}

/// An `image` block -> an `image_url` part (a data URL for base64 sources).
fn image_part(block: &Value, bp: &str) -> Result<Value, GatewayError> {
    let source = &block["source"];
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source["media_type"]
                .as_str()
                .filter(|m| m.starts_with("image/"))
                .ok_or_else(|| invalid(format!("{bp}.source.media_type"), "must be image/*"))?;
            let data = source["data"]
                .as_str()
                .ok_or_else(|| invalid(format!("{bp}.source.data"), "must be a string"))?;
            format!("data:{media};base64,{data}")
        }
        Some("url") => source["url"]
            .as_str()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| invalid(format!("{bp}.source.url"), "must be an http(s) URL"))?
            .to_string(),
        _ => {
            return Err(invalid(
                format!("{bp}.source.type"),
                "must be `base64` or `url`",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn translate_tool(j: usize, tool: &Value) -> Result<Value, GatewayError> {
    let p = format!("tools[{j}]");
    match tool.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(other) => {
            return Err(unsupported(
                format!("{p}.type"),
                format!("the server tool `{other}`"),
            ))
        }
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{p}.name"), "must be a string"))?;
    let schema = match tool.get("input_schema") {
        Some(s @ Value::Object(_)) => s.clone(),
        _ => return Err(invalid(format!("{p}.input_schema"), "must be an object")),
    };
    let mut function = json!({"name": name, "parameters": schema});
    if let Some(d) = tool.get("description").and_then(Value::as_str) {
        function["description"] = d.into();
    }
    Ok(json!({"type": "function", "function": function}))
}

fn translate_tool_choice(
    choice: &Value,
    chat: &mut Map<String, Value>,
) -> Result<(), GatewayError> {
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.name", "must be a string"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(invalid(
                "tool_choice.type",
                "must be `auto`, `any`, `tool` or `none`",
            ))
        }
    };
    chat.insert("tool_choice".into(), mapped);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        chat.insert("parallel_tool_calls".into(), false.into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
