//! Parameter translation driven by the model's declared capabilities.
//!
//! A chat request written for a chat model must still work when `auto` sends it to a
//! reasoning model: `max_tokens` becomes `max_completion_tokens`, sampling parameters the
//! model refuses are dropped or rejected (the model's `on_unsupported`), `system` messages
//! take the role the model wants. No model names appear here: only `Capabilities`.
//! Every change is reported so the response can say what was done (`x-deliberate-adjusted`).

use serde_json::{Map, Value};

use crate::api::ChatRequest;
use crate::config::{MaxTokensParam, Model, OnUnsupported, ProviderKind, SystemRole};
use crate::error::GatewayError;

/// Streams from OpenAI-compatible providers report usage only when asked: the gateway
/// asks, so every stream can be billed, and remembers to hide it from a client that did not.
pub fn request_stream_usage(request: &mut ChatRequest, model: &Model) {
    if !matches!(model.provider.kind, ProviderKind::OpenAi)
        || !request.is_stream()
        || request.include_usage()
    {
        return;
    }
    let options = request
        .body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Value::Object(o) = options {
        o.insert("include_usage".into(), Value::Bool(true));
        request.usage_added = true;
    }
}

/// Rewrites `body` for `model`; returns the list of adjustments made.
pub fn adapt_request(
    body: &mut Map<String, Value>,
    model: &Model,
) -> Result<Vec<String>, GatewayError> {
    let caps = &model.capabilities;
    let mut adjusted = Vec::new();
    body.insert("model".into(), Value::String(model.upstream_model.clone()));

    for param in &caps.unsupported_params {
        if body.contains_key(param.as_str()) {
            match caps.on_unsupported {
                OnUnsupported::Reject => {
                    return Err(GatewayError::invalid(
                        format!(
                            "Model `{}` does not support the `{param}` parameter; remove it from the request.",
                            model.name
                        ),
                        Some(param.clone()),
                    ))
                }
                OnUnsupported::Drop => {
                    body.shift_remove(param.as_str());
                    adjusted.push(format!("dropped {param}"));
                }
            }
        }
    }

    if !caps.reasoning_effort && body.shift_remove("reasoning_effort").is_some() {
        // Also our routing hint, so dropping it is never an error.
        adjusted.push("dropped reasoning_effort".into());
    }

    let (from, to) = match caps.max_tokens_param {
        MaxTokensParam::MaxCompletionTokens => ("max_tokens", "max_completion_tokens"),
        MaxTokensParam::MaxTokens => ("max_completion_tokens", "max_tokens"),
    };
    if let Some(limit) = body.shift_remove(from) {
        if !body.contains_key(to) {
            body.insert(to.into(), limit);
        }
        adjusted.push(format!("{from}->{to}"));
    }
    // Past the model's declared output limit the request is clamped, not refused: `auto`
    // may have picked a model with a lower limit than the one the client wrote for.
    if let Some(limit) = caps.max_output_tokens {
        let asked = body.get(to).and_then(crate::cost::token_count);
        if asked.is_some_and(|n| n > limit) {
            body.insert(to.into(), Value::from(limit));
            adjusted.push(format!("{to} clamped to {limit}"));
        }
    }

    let wanted = match caps.system_role {
        SystemRole::System => "system",
        SystemRole::Developer => "developer",
        SystemRole::User => "user",
    };
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        let mut renamed = None;
        for message in messages.iter_mut() {
            if let Some(role) = message.get_mut("role") {
                let current = role.as_str().unwrap_or_default();
                if (current == "system" || current == "developer") && current != wanted {
                    renamed.get_or_insert_with(|| format!("{current}->{wanted}"));
                    *role = Value::String(wanted.into());
                }
            }
        }
        adjusted.extend(renamed);
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Tier;
    use crate::config::{Capabilities, Price, Provider, ProviderKind};
    use serde_json::json;
    use std::sync::Arc;

    fn reasoning_model(on_unsupported: OnUnsupported) -> Model {
        Model {
            name: "o3-mini".into(),
            upstream_model: "o3-mini-2025-01-31".into(),
            provider: Arc::new(Provider {
                name: "openai".into(),
                kind: ProviderKind::OpenAi,
                base_url: "http://127.0.0.1:1".into(),
                endpoint: None,
                auth_header: http::header::AUTHORIZATION,
                api_key: None,
                api_key_env: None,
                send_request_id: true,
                send_trace_context: true,
            }),
            deployments: Vec::new(),
            tier: Tier::Reasoning,
            kind: crate::config::ModelKind::Chat,
            price: Price::default(),
            capabilities: Capabilities {
                max_tokens_param: MaxTokensParam::MaxCompletionTokens,
                system_role: SystemRole::Developer,
                reasoning_effort: true,
                unsupported_params: vec!["temperature".into(), "top_p".into()],
                on_unsupported,
                max_output_tokens: Some(100_000),
            },
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn chat_request_becomes_reasoning_request() {
        let mut b = body(json!({
            "model": "auto", "temperature": 0.7, "max_tokens": 100, "reasoning_effort": "high",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "custom_field": {"kept": true}
        }));
        let adjusted = adapt_request(&mut b, &reasoning_model(OnUnsupported::Drop)).unwrap();
        assert_eq!(b["model"], "o3-mini-2025-01-31");
        assert!(!b.contains_key("temperature"));
        assert!(!b.contains_key("max_tokens"));
        assert_eq!(b["max_completion_tokens"], 100);
        assert_eq!(b["reasoning_effort"], "high");
        assert_eq!(b["messages"][0]["role"], "developer");
        assert_eq!(b["custom_field"]["kept"], true);
        assert_eq!(
            adjusted,
            vec![
                "dropped temperature",
                "max_tokens->max_completion_tokens",
                "system->developer"
            ]
        );
    }

    #[test]
    fn an_output_limit_above_the_models_own_is_clamped_and_reported() {
        let m = reasoning_model(OnUnsupported::Drop);
        for asked in [json!(1e17), json!(u64::MAX), json!(100_001)] {
            let mut b = body(json!({"model": "auto", "max_tokens": asked, "messages": []}));
            let adjusted = adapt_request(&mut b, &m).unwrap();
            assert_eq!(b["max_completion_tokens"], 100_000);
            assert!(adjusted.contains(&"max_completion_tokens clamped to 100000".to_string()));
        }
        let mut b = body(json!({"model": "auto", "max_completion_tokens": 99, "messages": []}));
        adapt_request(&mut b, &m).unwrap();
        assert_eq!(b["max_completion_tokens"], 99);
    }

    #[test]
    fn reject_policy_names_the_parameter() {
        let mut b = body(json!({"model": "auto", "top_p": 0.1, "messages": []}));
        let err = adapt_request(&mut b, &reasoning_model(OnUnsupported::Reject)).unwrap_err();
        assert_eq!(err.to_json()["error"]["param"], "top_p");
        assert!(err.to_string().contains("o3-mini"));
    }

    #[test]
    fn chat_model_keeps_max_tokens_and_drops_effort() {
        let mut m = reasoning_model(OnUnsupported::Drop);
        m.capabilities = Capabilities {
            max_tokens_param: MaxTokensParam::MaxTokens,
            system_role: SystemRole::System,
            reasoning_effort: false,
            unsupported_params: vec![],
            on_unsupported: OnUnsupported::Drop,
            max_output_tokens: None,
        };
        let mut b = body(
            json!({"model": "x", "max_tokens": 5, "temperature": 1, "reasoning_effort": "low",
            "messages": [{"role": "developer", "content": "x"}]}),
        );
        let adjusted = adapt_request(&mut b, &m).unwrap();
        assert_eq!(b["max_tokens"], 5);
        assert_eq!(b["temperature"], 1);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(
            adjusted,
            vec!["dropped reasoning_effort", "developer->system"]
        );
    }
}
