//! A Responses API request (`POST /v1/responses`) as the internal chat request.
//!
//! `input` (a string or items), `instructions`, function tools and their outputs,
//! `text.format`, `reasoning.effort`, `max_output_tokens` and the sampling fields map onto
//! chat fields; `reasoning.effort` becomes `reasoning_effort`, which `decide` reads as a
//! routing hint and `translate` passes on to reasoning models only. Fields that need state
//! the gateway does not keep (`previous_response_id`, `store: true`, `background`,
//! `conversation`, stored `prompt`s, `item_reference` items) are refused with a 400 that says
//! so; fields with no chat counterpart are dropped and reported (`x-deliberate-adjusted`).
//! What the answer echoes back (`instructions`, `tools`, `text`, ...) is kept in `Echo`.

use serde_json::{json, Map, Value};

use super::Echo;
use crate::error::GatewayError;

/// The translation of one request.
pub struct Translated {
    pub chat: Map<String, Value>,
    pub echo: Echo,
    pub dropped: Vec<String>,
}

fn invalid(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::invalid(message, Some(param.to_string()))
}

fn unsupported(what: &str, param: &str) -> GatewayError {
    invalid(
        format!("{what} is not supported by this gateway: it keeps no responses, so every request must carry its whole input."),
        param,
    )
}

/// Fields accepted and ignored: they change nothing a chat provider does.
const IGNORED: [&str; 6] = [
    "include",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "stream_options",
    "safety_identifier",
];

pub fn translate(body: Map<String, Value>) -> Result<Translated, GatewayError> {
    let mut chat = Map::new();
    let mut echo = Echo::new();
    let mut dropped = Vec::new();
    let mut input = None;
    let mut instructions = None;
    for (field, value) in body {
        match field.as_str() {
            "model" => match &value {
                Value::String(m) if !m.is_empty() => {
                    echo.model = m.clone();
                    chat.insert(field, value);
                }
                _ => return Err(invalid("`model` must be a non-empty string.", "model")),
            },
            "input" => input = Some(value),
            "instructions" => match value {
                Value::Null => {}
                Value::String(s) => instructions = Some(s),
                _ => return Err(invalid("`instructions` must be a string.", "instructions")),
            },
            "tools" => {
                chat.insert("tools".into(), tools(&value)?);
                echo.tools = value;
            }
            "tool_choice" => {
                chat.insert("tool_choice".into(), tool_choice(&value)?);
                echo.tool_choice = value;
            }
            "parallel_tool_calls" => {
                if !value.is_boolean() {
                    return Err(invalid(
                        "`parallel_tool_calls` must be a boolean.",
                        "parallel_tool_calls",
                    ));
                }
                echo.parallel_tool_calls = value.clone();
                chat.insert(field, value);
            }
            "text" => {
                if let Some(format) = response_format(&value, &mut dropped)? {
                    chat.insert("response_format".into(), format);
                }
                echo.text = value;
            }
            "reasoning" => {
                let effort = reasoning_effort(&value, &mut dropped)?;
                if let Some(effort) = &effort {
                    chat.insert("reasoning_effort".into(), Value::String(effort.clone()));
                }
                echo.reasoning = json!({"effort": effort, "summary": null});
            }
            "max_output_tokens" => match &value {
                Value::Null => {}
                v if v.as_u64().is_some_and(|n| n > 0) => {
                    echo.max_output_tokens = value.clone();
                    chat.insert("max_tokens".into(), value);
                }
                _ => {
                    return Err(invalid(
                        "`max_output_tokens` must be a positive integer.",
                        "max_output_tokens",
                    ))
                }
            },
            "temperature" | "top_p" => match &value {
                Value::Null => {}
                Value::Number(_) => {
                    if field == "temperature" {
                        echo.temperature = value.clone();
                    } else {
                        echo.top_p = value.clone();
                    }
                    chat.insert(field, value);
                }
                _ => return Err(invalid(format!("`{field}` must be a number."), &field)),
            },
            "stream" => match value {
                Value::Null | Value::Bool(false) => {}
                Value::Bool(true) => {
                    chat.insert("stream".into(), Value::Bool(true));
                    // The events end with the usage: always ask for it.
                    chat.insert("stream_options".into(), json!({"include_usage": true}));
                }
                _ => return Err(invalid("`stream` must be a boolean.", "stream")),
            },
            "user" => {
                echo.user = value.clone();
                chat.insert(field, value);
            }
            "metadata" => match value {
                Value::Null | Value::Object(_) => echo.metadata = value,
                _ => return Err(invalid("`metadata` must be an object.", "metadata")),
            },
            "store" => match value {
                Value::Null | Value::Bool(false) => {}
                _ => return Err(unsupported("`store: true`", "store")),
            },
            "previous_response_id" if !value.is_null() => {
                return Err(unsupported(
                    "`previous_response_id`",
                    "previous_response_id",
                ))
            }
            "conversation" if !value.is_null() => {
                return Err(unsupported("`conversation`", "conversation"))
            }
            "prompt" if !value.is_null() => return Err(unsupported("A stored `prompt`", "prompt")),
            "background" if value.as_bool() == Some(true) => {
                return Err(unsupported("`background: true`", "background"))
            }
            "previous_response_id" | "conversation" | "prompt" | "background" => {}
            f if IGNORED.contains(&f) => {}
            _ => dropped.push(field),
        }
    }
    if chat.get("model").is_none() {
        return Err(invalid("Missing required parameter: `model`.", "model"));
    }
    let Some(input) = input else {
        return Err(invalid("Missing required parameter: `input`.", "input"));
    };
    echo.instructions = instructions.clone().map_or(Value::Null, Value::String);
    let messages = messages(instructions, input, &mut dropped)?;
    chat.insert("messages".into(), Value::Array(messages));
    Ok(Translated {
        chat,
        echo,
        dropped,
    })
}

/// `instructions` and `input` as chat messages.
fn messages(
    instructions: Option<String>,
    input: Value,
    dropped: &mut Vec<String>,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    if let Some(text) = instructions {
        out.push(json!({"role": "system", "content": text}));
    }
    match input {
        Value::String(text) => out.push(json!({"role": "user", "content": text})),
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                item_messages(i, item, &mut out, dropped)?;
            }
        }
        _ => {
            return Err(invalid(
                "`input` must be a string or an array of items.",
                "input",
            ))
        }
    }
    if out.is_empty() {
        return Err(invalid("`input` must contain at least one item.", "input"));
    }
    Ok(out)
}

fn str_field<'a>(item: &'a Value, field: &str, param: &str) -> Result<&'a str, GatewayError> {
    item.get(field).and_then(Value::as_str).ok_or_else(|| {
        invalid(
            format!("Missing required parameter: `{param}.{field}` (a string)."),
            &format!("{param}.{field}"),
        )
    })
}

/// One input item appended to `out` as chat messages.
fn item_messages(
    i: usize,
    item: Value,
    out: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), GatewayError> {
    let param = format!("input[{i}]");
    let kind = match item.get("type") {
        None if item.get("role").is_some() => "message",
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(invalid(format!("`{param}.type` is missing."), &param)),
    };
    match kind {
        "message" => {
            let role = str_field(&item, "role", &param)?;
            if !matches!(role, "user" | "system" | "developer" | "assistant") {
                return Err(invalid(
                    format!("Invalid value for `{param}.role`: `{role}`."),
                    &format!("{param}.role"),
                ));
            }
            let content = content(&param, role, item.get("content"))?;
            out.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": str_field(&item, "call_id", &param)?,
                "type": "function",
                "function": {
                    "name": str_field(&item, "name", &param)?,
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or(""),
                },
            });
            // Calls made in one assistant turn are one chat message with several calls.
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => last["tool_calls"] = json!([call]),
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let call_id = str_field(&item, "call_id", &param)?;
            let output = match item.get("output") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(_)) => content(&param, "tool", item.get("output"))?,
                _ => {
                    return Err(invalid(
                        format!("`{param}.output` must be a string or an array of parts."),
                        &format!("{param}.output"),
                    ))
                }
            };
            out.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // A reasoning model's earlier reasoning: chat providers take none back.
        "reasoning" => dropped.push(format!("{param} (reasoning)")),
        "item_reference" => return Err(unsupported("An `item_reference` input item", &param)),
        other => {
            return Err(invalid(
                format!("Input items of type `{other}` are not supported by this gateway; use messages, `function_call` and `function_call_output`."),
                &format!("{param}.type"),
            ))
        }
    }
    Ok(())
}

/// A message's content: a string stays one; parts become chat parts, and text-only parts
/// one string (what every chat provider takes for every role).
fn content(param: &str, role: &str, content: Option<&Value>) -> Result<Value, GatewayError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(invalid(
                format!("`{param}.content` must be a string or an array of parts."),
                &format!("{param}.content"),
            ))
        }
    };
    let mut chat_parts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{param}.content[{j}]");
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "input_text" | "output_text" | "text" => {
                chat_parts.push(json!({"type": "text", "text": str_field(part, "text", &at)?}))
            }
            "refusal" => {
                chat_parts.push(json!({"type": "text", "text": str_field(part, "refusal", &at)?}))
            }
            "input_image" if role == "user" => {
                let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                    return Err(invalid(
                        "Images must be given by `image_url` (a URL or data URL); file ids need stored files.",
                        &format!("{at}.image_url"),
                    ));
                };
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                    image["detail"] = detail.clone();
                }
                chat_parts.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(invalid(
                    format!(
                        "Content parts of type `{other}` are not supported here by this gateway."
                    ),
                    &format!("{at}.type"),
                ))
            }
        }
    }
    if chat_parts.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = chat_parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect();
        return Ok(Value::String(texts.join("\n")));
    }
    Ok(Value::Array(chat_parts))
}

/// Responses function tools as chat tools; other tool types are refused.
fn tools(value: &Value) -> Result<Value, GatewayError> {
    let Value::Array(tools) = value else {
        return Err(invalid("`tools` must be an array.", "tools"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut function = Map::new();
                function.insert("name".into(), str_field(tool, "name", &param)?.into());
                for field in ["description", "parameters", "strict"] {
                    if let Some(v) = tool.get(field).filter(|v| !v.is_null()) {
                        function.insert(field.into(), v.clone());
                    }
                }
                out.push(json!({"type": "function", "function": function}));
            }
            other => {
                return Err(invalid(
                    format!(
                        "Tools of type `{}` are not supported by this gateway; only `function` tools are.",
                        other.unwrap_or("(none)")
                    ),
                    &format!("{param}.type"),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

fn tool_choice(value: &Value) -> Result<Value, GatewayError> {
    match value {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(value.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = str_field(value, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(invalid(
            "`tool_choice` must be `auto`, `none`, `required` or {\"type\": \"function\", \"name\": ...}.",
            "tool_choice",
        )),
    }
}

/// `text.format` as a chat `response_format` (`None` for plain text).
fn response_format(text: &Value, dropped: &mut Vec<String>) -> Result<Option<Value>, GatewayError> {
    let Value::Object(text) = text else {
        return Err(invalid("`text` must be an object.", "text"));
    };
    for key in text.keys().filter(|k| *k != "format") {
        dropped.push(format!("text.{key}"));
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = str_field(format, "name", "text.format")?;
            let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                return Err(invalid(
                    "Missing required parameter: `text.format.schema` (an object).",
                    "text.format.schema",
                ));
            };
            let mut json_schema = json!({"name": name, "schema": schema});
            for field in ["strict", "description"] {
                if let Some(v) = format.get(field).filter(|v| !v.is_null()) {
                    json_schema[field] = v.clone();
                }
            }
            Ok(Some(
                json!({"type": "json_schema", "json_schema": json_schema}),
            ))
        }
        _ => Err(invalid(
            "`text.format.type` must be `text`, `json_object` or `json_schema`.",
            "text.format.type",
        )),
    }
}

fn reasoning_effort(
    reasoning: &Value,
    dropped: &mut Vec<String>,
) -> Result<Option<String>, GatewayError> {
    let Value::Object(reasoning) = reasoning else {
        return match reasoning {
            Value::Null => Ok(None),
            _ => Err(invalid("`reasoning` must be an object.", "reasoning")),
        };
    };
    for (key, value) in reasoning {
        if key != "effort" && !value.is_null() {
            dropped.push(format!("reasoning.{key}"));
        }
    }
    match reasoning.get("effort") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(e)) => Ok(Some(e.clone())),
        Some(_) => Err(invalid(
            "`reasoning.effort` must be a string.",
            "reasoning.effort",
        )),
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
