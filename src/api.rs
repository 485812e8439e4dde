//! OpenAI Chat Completions request as the gateway holds it.
//!
//! The body is parsed once into an order-preserving JSON map: fields the gateway does not
//! know (new OpenAI parameters, provider extensions) are forwarded untouched, and the few it
//! does touch (`model`, `messages`, `max_tokens`, ...) are read and rewritten in place.
//! Validation here covers what every provider needs; per-model rules live in `upstream::translate`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::classify::{Conversation, Role, Turn};
use crate::error::GatewayError;

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub body: Map<String, Value>,
    /// The gateway turned on `stream_options.include_usage` for billing; the client did
    /// not ask for it, so the usage-only chunk is taken out of its stream.
    pub usage_added: bool,
}

impl ChatRequest {
    pub fn parse(bytes: &[u8]) -> Result<ChatRequest, GatewayError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            GatewayError::invalid(format!("Request body is not valid JSON: {e}"), None)
        })?;
        let Value::Object(body) = value else {
            return Err(GatewayError::invalid(
                "Request body must be a JSON object.",
                None,
            ));
        };
        ChatRequest::from_body(body)
    }

    /// A chat request from a body another endpoint's request was translated to; validated
    /// like a client's own.
    pub fn from_body(body: Map<String, Value>) -> Result<ChatRequest, GatewayError> {
        let request = ChatRequest {
            body,
            usage_added: false,
        };
        request.validate()?;
        Ok(request)
    }

    fn validate(&self) -> Result<(), GatewayError> {
        match self.body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => {}
            Some(_) => {
                return Err(invalid_param(
                    "`model` must be a non-empty string.",
                    "model",
                ))
            }
            None => {
                return Err(invalid_param(
                    "Missing required parameter: `model`.",
                    "model",
                ))
            }
        }
        let messages = match self.body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m,
            Some(Value::Array(_)) => {
                return Err(invalid_param(
                    "`messages` must contain at least one message.",
                    "messages",
                ))
            }
            Some(_) => return Err(invalid_param("`messages` must be an array.", "messages")),
            None => {
                return Err(invalid_param(
                    "Missing required parameter: `messages`.",
                    "messages",
                ))
            }
        };
        for (i, message) in messages.iter().enumerate() {
            let role = message.get("role").and_then(Value::as_str);
            match role {
                Some("system" | "developer" | "user" | "assistant" | "tool" | "function") => {}
                Some(other) => {
                    return Err(invalid_param(
                        format!("Invalid value for `messages[{i}].role`: `{other}`."),
                        format!("messages[{i}].role"),
                    ))
                }
                None => {
                    return Err(invalid_param(
                        format!("Missing required parameter: `messages[{i}].role`."),
                        format!("messages[{i}].role"),
                    ))
                }
            }
        }
        for field in ["max_tokens", "max_completion_tokens", "n"] {
            match self.body.get(field) {
                None | Some(Value::Null) => {}
                Some(v) if v.as_u64().is_some() => {}
                Some(_) => {
                    return Err(invalid_param(
                        format!("`{field}` must be a non-negative integer."),
                        field,
                    ))
                }
            }
        }
        if let Some(stream) = self.body.get("stream") {
            if !stream.is_boolean() && !stream.is_null() {
                return Err(invalid_param("`stream` must be a boolean.", "stream"));
            }
        }
        Ok(())
    }

    pub fn model(&self) -> &str {
        self.body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn is_stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn reasoning_effort(&self) -> Option<&str> {
        self.body.get("reasoning_effort").and_then(Value::as_str)
    }

    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The conversation as the classifier sees it; borrows the message text.
    pub fn conversation(&self) -> Conversation<'_> {
        conversation_of(self.messages())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("a JSON map always serializes")
    }
}

/// OpenAI-shaped messages as the classifier sees them (text parts only, roles reduced).
pub fn conversation_of(messages: &[Value]) -> Conversation<'_> {
    let turns = messages
        .iter()
        .filter_map(|m| {
            let role = match m.get("role").and_then(Value::as_str)? {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                _ => Role::Tool,
            };
            Some(Turn {
                role,
                text: message_text(m.get("content")?),
            })
        })
        .collect();
    Conversation { turns }
}

fn invalid_param(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::invalid(message, Some(param.into()))
}

/// Text of a message's `content`: a string, or the text parts of an array joined by newlines.
fn message_text(content: &Value) -> Cow<'_, str> {
    match content {
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(parts) => {
            let mut texts = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str));
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(one), None) => Cow::Borrowed(one),
                (Some(a), Some(b)) => {
                    let mut joined = format!("{a}\n{b}");
                    for t in texts {
                        joined.push('\n');
                        joined.push_str(t);
                    }
                    Cow::Owned(joined)
                }
            }
        }
        _ => Cow::Borrowed(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> GatewayError {
        ChatRequest::parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn names_the_missing_field() {
        let e = err(r#"{"model":"auto"}"#).to_json();
        assert_eq!(e["error"]["param"], "messages");
        let e = err(r#"{"model":"auto","messages":[]}"#).to_json();
        assert_eq!(e["error"]["param"], "messages");
        let e = err(r#"{"messages":[{"role":"user","content":"hi"}]}"#).to_json();
        assert_eq!(e["error"]["param"], "model");
        let e = err(r#"{"model":"auto","messages":[{"content":"hi"}]}"#).to_json();
        assert_eq!(e["error"]["param"], "messages[0].role");
    }

    #[test]
    fn rejects_non_json() {
        assert!(err("{not json").to_string().contains("not valid JSON"));
    }

    #[test]
    fn keeps_unknown_fields_in_order() {
        let r = ChatRequest::parse(
            br#"{"zeta":1,"model":"auto","messages":[{"role":"user","content":"hi"}],"alpha":{"x":[1,2]}}"#,
        )
        .unwrap();
        let out = String::from_utf8(r.to_bytes()).unwrap();
        assert!(out.starts_with(r#"{"zeta":1,"model":"auto""#));
        assert!(out.ends_with(r#""alpha":{"x":[1,2]}}"#));
    }

    #[test]
    fn conversation_joins_text_parts() {
        let r = ChatRequest::parse(
            br#"{"model":"auto","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        let c = r.conversation();
        assert_eq!(c.turns.len(), 2);
        assert_eq!(c.turns[0].role, Role::System);
        assert_eq!(c.turns[1].text, "a\nb");
    }
}
