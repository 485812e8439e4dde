//! OpenAI Chat Completions <-> Anthropic Messages API translation. Pure functions, no I/O.
//!
//! Request mapping decisions that are not one-to-one:
//! - `system`/`developer` messages, wherever they appear, are hoisted into the top-level
//!   `system` (a string, or text blocks when there are several).
//! - Consecutive messages of the same Anthropic role are merged (Anthropic requires
//!   alternation); `tool` messages become `tool_result` blocks of a user turn, placed first
//!   in that turn as Anthropic requires. Empty text is dropped (Anthropic rejects it).
//! - Assistant `reasoning_content` is dropped: Anthropic only accepts thinking blocks with
//!   their signature, which OpenAI-shaped clients do not keep.
//! - `reasoning_effort` enables extended thinking with [`thinking_budget`] tokens
//!   (minimal/low 1024, medium 4096, high 16384, xhigh 32768; `none` disables). If
//!   `max_tokens` is not above the budget it is raised to `budget + max_tokens`, so the
//!   requested amount is left for the visible answer. Anthropic forbids `temperature` and
//!   `top_p` with thinking, so those are dropped (and reported). Thinking is not enabled
//!   (and `reasoning_effort` is reported dropped) when `tool_choice` forces a tool, or when
//!   the conversation ends inside a tool loop (last turn holds `tool_result`s), because
//!   Anthropic then requires the signed thinking blocks of the previous turn.
//! - `temperature` above 1 is clamped to 1 (Anthropic's range is 0..=1).
//! - `response_format` `json_object`/`json_schema`: Anthropic has no JSON mode, so an
//!   instruction to answer with JSON only (quoting the schema) is appended to `system`.
//! - `n` > 1 is rejected. Other fields without an Anthropic equivalent (penalties,
//!   `logprobs`, `seed`, `stream_options`, `logit_bias`, ...) are dropped and their names
//!   returned in [`AnthropicRequest::dropped`] (null and `false` values are not reported).

use serde_json::{json, Map, Value};

pub use super::response::{from_anthropic_error, from_anthropic_response, StreamTranslator};

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("invalid `{param}`: {message}")]
    InvalidRequest { param: String, message: String },
    #[error("`{param}` is not supported by Anthropic models: {message}")]
    Unsupported { param: String, message: String },
    #[error("`{param}` is not a JSON object: {message}")]
    InvalidToolArguments { param: String, message: String },
    #[error("invalid response from Anthropic: {0}")]
    BadUpstream(String),
    #[error("Anthropic stream error: {0}")]
    UpstreamStreamError(String),
}

impl TranslateError {
    /// The offending request field (e.g. `messages[2].content`), for request-side errors.
    pub fn param(&self) -> Option<&str> {
        match self {
            TranslateError::InvalidRequest { param, .. }
            | TranslateError::Unsupported { param, .. }
            | TranslateError::InvalidToolArguments { param, .. } => Some(param),
            TranslateError::BadUpstream(_) | TranslateError::UpstreamStreamError(_) => None,
        }
    }

    /// True for errors caused by the upstream's response (HTTP 502), false for the
    /// client's request (HTTP 400).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            TranslateError::BadUpstream(_) | TranslateError::UpstreamStreamError(_)
        )
    }
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidRequest {
        param: param.into(),
        message: message.into(),
    }
}

fn unsupported(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported {
        param: param.into(),
        message: message.into(),
    }
}

/// A translated request: the body for `POST /v1/messages`, plus the names of top-level
/// request fields that were dropped because Anthropic has no equivalent.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicRequest {
    pub body: Value,
    pub dropped: Vec<String>,
}

/// Thinking budget (tokens) for an OpenAI `reasoning_effort`; `Ok(None)` for `"none"`.
pub fn thinking_budget(effort: &str) -> Result<Option<u32>, TranslateError> {
    Ok(Some(match effort {
        "none" => return Ok(None),
        "minimal" | "low" => 1024,
        "medium" => 4096,
        "high" => 16384,
        "xhigh" => 32768,
        other => {
            return Err(invalid(
                "reasoning_effort",
                format!(
                    "unknown value {other:?} (expected none, minimal, low, medium, high or xhigh)"
                ),
            ))
        }
    }))
}

/// The `reasoning_effort` for an Anthropic thinking budget: the inverse of
/// [`thinking_budget`] on its own values (1024 -> low, 4096 -> medium, 16384 -> high), and
/// the nearest effort below for budgets in between. (`xhigh` is not returned: few models
/// other than Anthropic's accept it.)
pub fn effort_for_budget(budget_tokens: u64) -> &'static str {
    match budget_tokens {
        0..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    }
}

/// Fields consumed by the translation; every other non-null field is reported as dropped.
const HANDLED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "reasoning_effort",
    "response_format",
    "n",
];

pub fn to_anthropic_request(
    req: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u32,
) -> Result<AnthropicRequest, TranslateError> {
    let get = |k: &str| req.get(k).filter(|v| !v.is_null());
    let mut dropped: Vec<String> = req
        .iter()
        .filter(|(k, v)| !HANDLED.contains(&k.as_str()) && !v.is_null() && **v != json!(false))
        .map(|(k, _)| k.clone())
        .collect();

    if let Some(n) = get("n") {
        match n.as_u64() {
            Some(0) | None => return Err(invalid("n", "must be a positive integer")),
            Some(1) => {}
            Some(_) => return Err(unsupported("n", "only one choice (n = 1) can be generated")),
        }
    }

    let msgs = get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages", "must be an array of messages"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        translate_message(i, m, &mut system, &mut turns)?;
    }
    if turns.is_empty() {
        return Err(invalid(
            "messages",
            "must contain at least one non-empty user or assistant message",
        ));
    }

    let (max_key, max_val) = match get("max_completion_tokens") {
        Some(v) => ("max_completion_tokens", Some(v)),
        None => ("max_tokens", get("max_tokens")),
    };
    let mut max_tokens = match max_val {
        None => u64::from(default_max_tokens.max(1)),
        Some(v) => crate::cost::token_count(v)
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid(max_key, "must be a positive integer"))?,
    };

    let mut tools = Vec::new();
    if let Some(t) = get("tools") {
        let arr = t
            .as_array()
            .ok_or_else(|| invalid("tools", "must be an array"))?;
        for (j, tool) in arr.iter().enumerate() {
            tools.push(translate_tool(j, tool)?);
        }
    }
    let mut tool_choice = match get("tool_choice") {
        None => None,
        Some(tc) => translate_tool_choice(tc, &tools)?,
    };
    if get("parallel_tool_calls") == Some(&Value::Bool(false)) && !tools.is_empty() {
        let tc = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if tc["type"] != "none" {
            tc["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }

    let mut thinking = None;
    if let Some(effort) = get("reasoning_effort") {
        let effort = effort
            .as_str()
            .ok_or_else(|| invalid("reasoning_effort", "must be a string"))?;
        let forced = tool_choice
            .as_ref()
            .is_some_and(|tc| tc["type"] == "any" || tc["type"] == "tool");
        let in_tool_loop = turns.last().is_some_and(|(role, blocks)| {
            *role == "user" && blocks.iter().any(|b| b["type"] == "tool_result")
        });
        match thinking_budget(effort)? {
            Some(_) if forced || in_tool_loop => dropped.push("reasoning_effort".into()),
            Some(budget) => {
                let budget = u64::from(budget);
                if max_tokens <= budget {
                    max_tokens = max_tokens.saturating_add(budget);
                }
                thinking = Some(json!({"type": "enabled", "budget_tokens": budget}));
            }
            None => {}
        }
    }

    if let Some(rf) = get("response_format") {
        if let Some(text) = response_format_instruction(rf)? {
            system.push(json!({"type": "text", "text": text}));
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    body.insert("max_tokens".into(), max_tokens.into());
    match system.len() {
        0 => {}
        1 if system[0].get("cache_control").is_none() => {
            body.insert("system".into(), system[0]["text"].clone());
        }
        _ => {
            body.insert("system".into(), Value::Array(system));
        }
    }
    let messages = turns.into_iter().map(|(role, mut blocks)| {
        if role == "user" {
            // Stable partition: tool results must come first in a user turn.
            blocks.sort_by_key(|b| b["type"] != "tool_result");
        }
        let single_text = blocks.len() == 1
            && blocks[0]["type"] == "text"
            && blocks[0].as_object().is_some_and(|o| o.len() == 2);
        let content = if single_text {
            blocks[0]["text"].take()
        } else {
            Value::Array(blocks)
        };
        json!({"role": role, "content": content})
    });
    body.insert("messages".into(), messages.collect());
    if let Some(t) = thinking {
        body.insert("thinking".into(), t);
    }
    for key in ["temperature", "top_p"] {
        let Some(v) = get(key) else { continue };
        let x = v.as_f64().ok_or_else(|| invalid(key, "must be a number"))?;
        if body.contains_key("thinking") {
            dropped.push(key.into());
        } else if key == "temperature" && x > 1.0 {
            body.insert(key.into(), json!(1.0));
        } else {
            body.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = get("stop") {
        let seqs: Vec<Value> = match stop {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a
                .iter()
                .map(|s| {
                    s.as_str()
                        .ok_or_else(|| invalid("stop", "must contain strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(invalid("stop", "must be a string or an array of strings")),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(Value::from)
        .collect();
        if !seqs.is_empty() {
            body.insert("stop_sequences".into(), Value::Array(seqs));
        }
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = tool_choice {
        body.insert("tool_choice".into(), tc);
    }
    if let Some(user) = get("user") {
        let user = user
            .as_str()
            .ok_or_else(|| invalid("user", "must be a string"))?;
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(stream) = get("stream") {
        let s = stream
            .as_bool()
            .ok_or_else(|| invalid("stream", "must be a boolean"))?;
        body.insert("stream".into(), s.into());
    }
    Ok(AnthropicRequest {
        body: Value::Object(body),
        dropped,
    })
}

fn translate_message(
    i: usize,
    m: &Value,
    system: &mut Vec<Value>,
    turns: &mut Vec<(&'static str, Vec<Value>)>,
) -> Result<(), TranslateError> {
    let p = format!("messages[{i}]");
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{p}.role"), "must be a string"))?;
    let content = m.get("content").unwrap_or(&Value::Null);
    let cp = format!("{p}.content");
    let (role, blocks) = match role {
        "system" | "developer" => {
            system.extend(content_blocks(content, &cp, false)?);
            return Ok(());
        }
        "user" => ("user", content_blocks(content, &cp, true)?),
        "assistant" => {
            let mut blocks = content_blocks(content, &cp, false)?;
            if let Some(calls) = m.get("tool_calls").filter(|v| !v.is_null()) {
                let calls = calls
                    .as_array()
                    .ok_or_else(|| invalid(format!("{p}.tool_calls"), "must be an array"))?;
                for (j, call) in calls.iter().enumerate() {
                    blocks.push(tool_use_block(&format!("{p}.tool_calls[{j}]"), call)?);
                }
            }
            if m.get("function_call").is_some_and(|v| !v.is_null()) {
                return Err(unsupported(
                    format!("{p}.function_call"),
                    "use tool_calls instead of the legacy function_call",
                ));
            }
            ("assistant", blocks)
        }
        "tool" => {
            let id = m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{p}.tool_call_id"), "must be a string"))?;
            let mut block = json!({"type": "tool_result", "tool_use_id": id});
            match content {
                Value::String(s) if !s.is_empty() => block["content"] = content.clone(),
                Value::String(_) | Value::Null => {}
                _ => block["content"] = Value::Array(content_blocks(content, &cp, true)?),
            }
            ("user", vec![block])
        }
        other => {
            return Err(invalid(
                format!("{p}.role"),
                format!("unknown role {other:?}"),
            ))
        }
    };
    if blocks.is_empty() {
        return Ok(());
    }
    match turns.last_mut() {
        Some((last, prev)) if *last == role => prev.extend(blocks),
        _ => turns.push((role, blocks)),
    }
    Ok(())
}

/// OpenAI message content (string, array of parts, or null) -> Anthropic content blocks.
fn content_blocks(content: &Value, p: &str, images: bool) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        Value::String(s) => return Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts,
        _ => return Err(invalid(p, "must be a string or an array of content parts")),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}[{j}]");
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let mut block = match kind {
            "text" | "refusal" => {
                let text = part
                    .get(kind)
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("{pp}.{kind}"), "must be a string"))?;
                if text.is_empty() {
                    continue;
                }
                json!({"type": "text", "text": text})
            }
            "image_url" if images => image_block(&pp, part)?,
            _ => return Err(unsupported(pp, format!("content part type {kind:?}"))),
        };
        if let Some(cc) = part.get("cache_control").filter(|v| v.is_object()) {
            block["cache_control"] = cc.clone();
        }
        blocks.push(block);
    }
    Ok(blocks)
}

fn image_block(pp: &str, part: &Value) -> Result<Value, TranslateError> {
    let url = match &part["image_url"] {
        Value::String(s) => s.as_str(),
        v => v["url"].as_str().unwrap_or(""),
    };
    let param = format!("{pp}.image_url.url");
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid(&param, "malformed data URL"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .filter(|m| m.starts_with("image/"))
            .ok_or_else(|| invalid(&param, "data URL must be a base64-encoded image"))?;
        Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        )
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(invalid(
            param,
            "must be an http(s) URL or a base64 data URL",
        ))
    }
}

fn tool_use_block(p: &str, call: &Value) -> Result<Value, TranslateError> {
    let id = call["id"]
        .as_str()
        .ok_or_else(|| invalid(format!("{p}.id"), "must be a string"))?;
    if call.get("type").is_some_and(|t| t != "function") {
        return Err(unsupported(format!("{p}.type"), "only function tool calls"));
    }
    let name = call["function"]["name"]
        .as_str()
        .ok_or_else(|| invalid(format!("{p}.function.name"), "must be a string"))?;
    let ap = format!("{p}.function.arguments");
    let input = match &call["function"]["arguments"] {
        Value::String(s) if s.trim().is_empty() => json!({}),
        Value::String(s) => {
            serde_json::from_str(s).map_err(|e| TranslateError::InvalidToolArguments {
                param: ap.clone(),
                message: e.to_string(),
            })?
        }
        Value::Null => json!({}),
        other => other.clone(),
    };
    if !input.is_object() {
        return Err(TranslateError::InvalidToolArguments {
            param: ap,
            message: "tool arguments must encode a JSON object".into(),
        });
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn translate_tool(j: usize, tool: &Value) -> Result<Value, TranslateError> {
    let p = format!("tools[{j}]");
    if tool.get("type").is_some_and(|t| t != "function") {
        return Err(unsupported(format!("{p}.type"), "only function tools"));
    }
    let f = &tool["function"];
    let name = f["name"]
        .as_str()
        .ok_or_else(|| invalid(format!("{p}.function.name"), "must be a string"))?;
    let mut out = json!({"name": name});
    if let Some(d) = f["description"].as_str() {
        out["description"] = d.into();
    }
    out["input_schema"] = match &f["parameters"] {
        Value::Null => json!({"type": "object", "properties": {}}),
        Value::Object(_) => f["parameters"].clone(),
        _ => {
            return Err(invalid(
                format!("{p}.function.parameters"),
                "must be an object",
            ))
        }
    };
    Ok(out)
}

fn translate_tool_choice(tc: &Value, tools: &[Value]) -> Result<Option<Value>, TranslateError> {
    let need_tools = |choice: Value| {
        if tools.is_empty() {
            Err(invalid("tool_choice", "requires a non-empty `tools` array"))
        } else {
            Ok(Some(choice))
        }
    };
    match tc {
        Value::String(s) => match s.as_str() {
            "auto" | "none" if tools.is_empty() => Ok(None),
            "auto" | "none" => Ok(Some(json!({"type": s}))),
            "required" => need_tools(json!({"type": "any"})),
            other => Err(invalid("tool_choice", format!("unknown value {other:?}"))),
        },
        Value::Object(o) if o.get("type").is_some_and(|t| t == "function") => {
            let name = tc["function"]["name"]
                .as_str()
                .ok_or_else(|| invalid("tool_choice.function.name", "must be a string"))?;
            if !tools.iter().any(|t| t["name"] == name) {
                return Err(invalid(
                    "tool_choice.function.name",
                    format!("no tool named {name:?} in `tools`"),
                ));
            }
            need_tools(json!({"type": "tool", "name": name}))
        }
        _ => Err(invalid(
            "tool_choice",
            "must be auto, none, required or a function",
        )),
    }
}

fn response_format_instruction(rf: &Value) -> Result<Option<String>, TranslateError> {
    match rf["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(
            "Respond only with a single valid JSON object. Do not write anything before or \
             after it, and do not wrap it in a code block."
                .into(),
        )),
        Some("json_schema") => {
            let js = &rf["json_schema"];
            let schema = js.get("schema").filter(|s| s.is_object()).ok_or_else(|| {
                invalid("response_format.json_schema.schema", "must be an object")
            })?;
            let name = js["name"].as_str().unwrap_or("response");
            Ok(Some(format!(
                "Respond only with a single valid JSON value that conforms to the JSON Schema \
                 named {name:?} below. Do not write anything before or after it, and do not \
                 wrap it in a code block.\n\nJSON Schema:\n{schema}"
            )))
        }
        _ => Err(invalid(
            "response_format.type",
            "must be text, json_object or json_schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn translate(v: Value) -> AnthropicRequest {
        to_anthropic_request(&req(v), "claude-up", 1024).unwrap()
    }

    fn translate_err(v: Value) -> TranslateError {
        to_anthropic_request(&req(v), "claude-up", 1024).unwrap_err()
    }

    #[test]
    fn minimal_request_and_defaults() {
        let out = translate(json!({
            "model": "fast", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 1.7, "top_p": 0.9, "stream": true, "user": "u-42",
            "presence_penalty": 0.5, "seed": 7, "logprobs": false, "stream_options": {"include_usage": true},
            "frequency_penalty": null,
        }));
        assert_eq!(
            out.body.to_string(),
            json!({
                "model": "claude-up", "max_tokens": 1024,
                "messages": [{"role": "user", "content": "hi"}],
                "temperature": 1.0, "top_p": 0.9, "metadata": {"user_id": "u-42"}, "stream": true,
            })
            .to_string()
        );
        assert_eq!(out.dropped, ["presence_penalty", "seed", "stream_options"]);
        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "max_tokens": 50, "max_completion_tokens": 77}));
        assert_eq!(out.body["max_tokens"], 77);
        let err =
            translate_err(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}));
        assert_eq!(err.param(), Some("max_tokens"));
    }

    #[test]
    fn system_and_developer_messages_are_hoisted() {
        let out = translate(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]}));
        assert_eq!(out.body["system"], "Be brief.");
        let out = translate(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "hi"},
        ]}));
        assert_eq!(
            out.body["system"],
            json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}])
        );
        let err = translate_err(json!({"messages": [{"role": "system", "content": "only"}]}));
        assert_eq!(err.param(), Some("messages"));
    }

    #[test]
    fn consecutive_roles_are_merged() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"},
        ]}));
        assert_eq!(
            out.body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
                {"role": "user", "content": "e"},
            ])
        );
    }

    #[test]
    fn tool_round_trip() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": null, "reasoning_content": "thinking...", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "25C"}]},
            {"role": "user", "content": "Thanks"},
        ]}));
        assert_eq!(
            out.body["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Tokyo?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "25C"}]},
                    {"type": "text", "text": "Thanks"},
                ]},
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_are_rejected() {
        let call = |args: &str| {
            json!({"messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": args}}]},
            ]})
        };
        for args in ["{\"a\": ", "[1, 2]"] {
            let err = translate_err(call(args));
            assert!(
                matches!(err, TranslateError::InvalidToolArguments { .. }),
                "{err}"
            );
            assert_eq!(
                err.param(),
                Some("messages[1].tool_calls[0].function.arguments")
            );
            assert!(!err.is_upstream());
        }
    }

    #[test]
    fn tools_and_tool_choice() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
            {"type": "function", "function": {"name": "now"}},
        ]);
        let with = |tc: Value, parallel: Value| {
            translate(json!({
                "messages": [{"role": "user", "content": "x"}],
                "tools": tools, "tool_choice": tc, "parallel_tool_calls": parallel,
            }))
            .body
        };
        let body = with(Value::Null, Value::Null);
        assert_eq!(
            body["tools"],
            json!([
                {"name": "get_weather", "description": "Weather",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert!(body.get("tool_choice").is_none());
        assert_eq!(
            with(json!("auto"), Value::Null)["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            with(json!("required"), Value::Null)["tool_choice"],
            json!({"type": "any"})
        );
        assert_eq!(
            with(json!("none"), json!(false))["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            with(
                json!({"type": "function", "function": {"name": "now"}}),
                json!(false)
            )["tool_choice"],
            json!({"type": "tool", "name": "now", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            with(Value::Null, json!(false))["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let err = translate_err(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "missing"}}}),
        );
        assert_eq!(err.param(), Some("tool_choice.function.name"));
        let err = translate_err(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
        );
        assert_eq!(err.param(), Some("tool_choice"));
    }

    #[test]
    fn stop_sequences() {
        let stop = |s: Value| {
            translate(json!({"messages": [{"role": "user", "content": "x"}], "stop": s})).body
        };
        assert_eq!(stop(json!("END"))["stop_sequences"], json!(["END"]));
        assert_eq!(stop(json!(["a", "b"]))["stop_sequences"], json!(["a", "b"]));
        assert!(stop(json!([])).get("stop_sequences").is_none());
        assert_eq!(
            translate_err(json!({"messages": [{"role": "user", "content": "x"}], "stop": 3}))
                .param(),
            Some("stop")
        );
    }

    #[test]
    fn reasoning_effort_enables_thinking() {
        let base = |effort: &str, extra: Value| {
            let mut r = json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort, "temperature": 0.2});
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            translate(r)
        };
        let out = base("high", json!({}));
        assert_eq!(
            out.body["thinking"],
            json!({"type": "enabled", "budget_tokens": 16384})
        );
        assert_eq!(out.body["max_tokens"], 16384 + 1024);
        assert!(out.body.get("temperature").is_none());
        assert_eq!(out.dropped, ["temperature"]);
        let out = base("low", json!({"max_completion_tokens": 8000}));
        assert_eq!(out.body["thinking"]["budget_tokens"], 1024);
        assert_eq!(out.body["max_tokens"], 8000);
        let out = base("none", json!({}));
        assert!(out.body.get("thinking").is_none());
        assert_eq!(out.body["temperature"], 0.2);
        // A forced tool choice is incompatible with thinking: thinking is left off.
        let out = base(
            "medium",
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
        );
        assert!(out.body.get("thinking").is_none());
        assert_eq!(out.dropped, ["reasoning_effort"]);
        // So is a conversation that ends inside a tool loop (no signed thinking to replay).
        let out = base(
            "medium",
            json!({"messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            ]}),
        );
        assert!(out.body.get("thinking").is_none());
        assert_eq!(out.body["temperature"], 0.2);
        assert_eq!(out.dropped, ["reasoning_effort"]);
        assert_eq!(
            translate_err(
                json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"})
            )
            .param(),
            Some("reasoning_effort")
        );
    }

    #[test]
    fn image_parts() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}));
        assert_eq!(
            out.body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ])
        );
        let bad = |url: &str| {
            translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]}))
        };
        assert_eq!(
            bad("ftp://x/y.png").param(),
            Some("messages[0].content[0].image_url.url")
        );
        assert_eq!(
            bad("data:text/plain,hello").param(),
            Some("messages[0].content[0].image_url.url")
        );
        let err = translate_err(
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
        );
        assert!(matches!(err, TranslateError::Unsupported { .. }));
    }

    #[test]
    fn n_greater_than_one_is_unsupported() {
        let err = translate_err(json!({"messages": [{"role": "user", "content": "x"}], "n": 2}));
        assert!(matches!(err, TranslateError::Unsupported { .. }));
        assert_eq!(err.param(), Some("n"));
        assert!(
            translate(json!({"messages": [{"role": "user", "content": "x"}], "n": 1}))
                .dropped
                .is_empty()
        );
    }

    #[test]
    fn response_format_becomes_a_system_instruction() {
        let out = translate(
            json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}}),
        );
        let system = out.body["system"].as_array().unwrap();
        assert_eq!(system[0]["text"], "S");
        let instruction = system[1]["text"].as_str().unwrap();
        assert!(instruction.contains("\"answer\"") && instruction.contains(r#"{"type":"object""#));
        let out = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
        );
        assert!(out.body["system"].as_str().unwrap().contains("JSON object"));
    }
}
