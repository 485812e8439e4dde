//! OpenAI Embeddings input (`POST /v1/embeddings`): the request validated into
//! [`EmbeddingsRequest`] (kept as a request extension for the provider call), its stand-in
//! chat request for the shared stack, and the answer's JSON. Pure, no I/O.
//!
//! Why a stand-in chat request: every endpoint goes down the same stack (auth, limits,
//! budgets, cache, metrics). The rate limit's token estimate and the cache key read the chat
//! request, so the stand-in carries each input as one user message and the options that
//! change the answer (`encoding_format`, `dimensions`) and `temperature: 0` (an embedding is
//! deterministic, so the cache may keep it); providers never see it (they get
//! the `EmbeddingsRequest`). Embeddings are not classified: `decide` routes them to the
//! tenant's `embedding_model` or to the model named.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::api::ChatRequest;
use crate::error::GatewayError;

/// Most inputs in one request (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;
/// Most dimensions a request may ask for.
pub const MAX_DIMENSIONS: u64 = 8192;

/// One input: text, or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Tokens(Vec<u64>),
}

impl Input {
    /// Token count: exact for token ids; for text an upper estimate without a tokenizer
    /// (about 4 bytes a token in English: bytes/3 over-counts, the safe side for budgets).
    pub fn tokens(&self) -> u64 {
        match self {
            Input::Text(s) => (s.len() as u64).div_ceil(3).max(1),
            Input::Tokens(t) => t.len() as u64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    /// Little-endian `f32`s, base64: what the OpenAI SDKs ask for by default.
    Base64,
}

/// Request extension of a `/v1/embeddings` request.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    /// The model the client named (`auto` and the tiers mean the tenant's embedding model).
    pub model: String,
    pub inputs: Vec<Input>,
    pub encoding: Encoding,
    pub dimensions: Option<u64>,
    /// The client's body, forwarded to OpenAI-compatible providers with its `model` replaced.
    pub body: Arc<Map<String, Value>>,
    /// Top-level fields with no meaning here, reported as dropped.
    pub dropped: Vec<String>,
}

impl EmbeddingsRequest {
    pub fn prompt_tokens(&self) -> u64 {
        self.inputs
            .iter()
            .fold(0u64, |sum, i| sum.saturating_add(i.tokens()))
    }
}

const HANDLED: &[&str] = &["model", "input", "encoding_format", "dimensions", "user"];

fn invalid(param: &str, message: &str) -> GatewayError {
    GatewayError::invalid(format!("`{param}`: {message}"), Some(param.to_string()))
}

fn tokens_of(v: &[Value], param: &str) -> Result<Vec<u64>, GatewayError> {
    if v.is_empty() {
        return Err(invalid(param, "must not be empty"));
    }
    v.iter()
        .map(|t| {
            t.as_u64()
                .ok_or_else(|| invalid(param, "token ids must be non-negative integers"))
        })
        .collect()
}

fn text_of(s: &str, param: &str) -> Result<Input, GatewayError> {
    if s.is_empty() {
        return Err(invalid(param, "must not be an empty string"));
    }
    Ok(Input::Text(s.to_string()))
}

/// `input`: a string, an array of strings, an array of token ids, or an array of arrays
/// of token ids.
fn inputs(input: &Value) -> Result<Vec<Input>, GatewayError> {
    let items = match input {
        Value::String(s) => return Ok(vec![text_of(s, "input")?]),
        Value::Array(items) if items.is_empty() => {
            return Err(invalid("input", "must not be empty"))
        }
        Value::Array(items) => items,
        _ => {
            return Err(invalid(
                "input",
                "must be a string, an array of strings or an array of token arrays",
            ))
        }
    };
    if items.iter().all(Value::is_number) {
        return Ok(vec![Input::Tokens(tokens_of(items, "input")?)]);
    }
    if items.len() > MAX_INPUTS {
        return Err(invalid("input", &format!("at most {MAX_INPUTS} inputs")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("input[{i}]");
            match item {
                Value::String(s) => text_of(s, &param),
                Value::Array(t) => Ok(Input::Tokens(tokens_of(t, &param)?)),
                _ => Err(invalid(&param, "must be a string or an array of token ids")),
            }
        })
        .collect()
}

/// Validates an embeddings body. Errors are 400s naming the field.
pub fn parse(body: Map<String, Value>) -> Result<EmbeddingsRequest, GatewayError> {
    let get = |k: &str| body.get(k).filter(|v| !v.is_null());
    let model = match get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(invalid("model", "must be a non-empty string")),
        None => return Err(invalid("model", "Missing required parameter")),
    };
    let inputs =
        inputs(get("input").ok_or_else(|| invalid("input", "Missing required parameter"))?)?;
    let encoding = match get("encoding_format").map(Value::as_str) {
        None | Some(Some("float")) => Encoding::Float,
        Some(Some("base64")) => Encoding::Base64,
        Some(_) => return Err(invalid("encoding_format", "must be `float` or `base64`")),
    };
    let dimensions = match get("dimensions") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
                .ok_or_else(|| {
                    invalid(
                        "dimensions",
                        &format!("must be an integer from 1 to {MAX_DIMENSIONS}"),
                    )
                })?,
        ),
    };
    if get("user").is_some_and(|u| !u.is_string()) {
        return Err(invalid("user", "must be a string"));
    }
    let dropped = body
        .iter()
        .filter(|(k, v)| !HANDLED.contains(&k.as_str()) && !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    Ok(EmbeddingsRequest {
        model,
        inputs,
        encoding,
        dimensions,
        body: Arc::new(body),
        dropped,
    })
}

/// The stand-in chat request (see the module doc): one user message per input. Token ids
/// are a content part of their own, never text: the text `"[1, 2]"` and the token ids
/// `[1, 2]` are different inputs and must not share a cache key.
pub fn stand_in_chat(request: &EmbeddingsRequest) -> Result<ChatRequest, GatewayError> {
    let messages: Vec<Value> = request
        .inputs
        .iter()
        .map(|input| {
            let content = match input {
                Input::Text(s) => Value::String(s.clone()),
                Input::Tokens(t) => json!([{"type": "tokens", "tokens": t}]),
            };
            json!({"role": "user", "content": content})
        })
        .collect();
    let mut chat = Map::new();
    chat.insert("model".into(), request.model.clone().into());
    chat.insert("messages".into(), Value::Array(messages));
    let encoding = match request.encoding {
        Encoding::Float => "float",
        Encoding::Base64 => "base64",
    };
    chat.insert("encoding_format".into(), encoding.into());
    // An embedding is a function of its input: the cache may keep it like a
    // `temperature: 0` completion (its own deterministic rule).
    chat.insert("temperature".into(), 0.into());
    if let Some(d) = request.dimensions {
        chat.insert("dimensions".into(), d.into());
    }
    ChatRequest::from_body(chat)
}

/// Parses an embeddings body: the stand-in chat request for the stack, with the
/// [`EmbeddingsRequest`] (and the dropped fields, if any) put in `extensions`.
pub fn parse_request(
    bytes: &[u8],
    extensions: &mut http::Extensions,
) -> Result<ChatRequest, GatewayError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("Request body is not valid JSON: {e}"), None))?;
    let Value::Object(body) = value else {
        return Err(GatewayError::invalid(
            "Request body must be a JSON object.",
            None,
        ));
    };
    let request = parse(body)?;
    let chat = stand_in_chat(&request)?;
    if !request.dropped.is_empty() {
        extensions.insert(crate::endpoints::DroppedFields(request.dropped.clone()));
    }
    extensions.insert(Arc::new(request));
    Ok(chat)
}

/// True for a complete answer worth caching: a JSON list of embeddings.
pub fn clean_answer(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .is_ok_and(|v| v["object"] == "list" && v["data"].is_array())
}

/// One vector as the answer carries it.
fn encode(vector: &[f32], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => Value::Array(vector.iter().map(|x| json!(f64::from(*x))).collect()),
        Encoding::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into()
        }
    }
}

/// The embeddings answer: one `embedding` object per vector, in input order.
pub fn answer(model: &str, vectors: &[Vec<f32>], encoding: Encoding, prompt_tokens: u64) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| json!({"object": "embedding", "index": index, "embedding": encode(v, encoding)}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: Value) -> Result<EmbeddingsRequest, GatewayError> {
        parse(v.as_object().unwrap().clone())
    }

    fn param_of(v: Value) -> String {
        let e = parsed(v).expect_err("refused").to_json();
        e["error"]["param"].as_str().unwrap().to_string()
    }

    #[test]
    fn every_input_shape_is_accepted() {
        let r = parsed(json!({"model": "m", "input": "hello"})).unwrap();
        assert_eq!(r.inputs, [Input::Text("hello".into())]);
        assert_eq!(r.encoding, Encoding::Float);
        let r = parsed(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}))
            .unwrap();
        assert_eq!(r.inputs.len(), 2);
        assert_eq!(r.encoding, Encoding::Base64);
        let r = parsed(json!({"model": "m", "input": [1, 2, 3]})).unwrap();
        assert_eq!(r.inputs, [Input::Tokens(vec![1, 2, 3])]);
        assert_eq!(r.prompt_tokens(), 3);
        let r = parsed(json!({"model": "m", "input": [[1, 2], [3]], "dimensions": 64})).unwrap();
        assert_eq!(r.inputs.len(), 2);
        assert_eq!(r.dimensions, Some(64));
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (body, param) in [
            (json!({"input": "x"}), "model"),
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": ""}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": 5}), "input"),
            (json!({"model": "m", "input": [-1]}), "input"),
            (json!({"model": "m", "input": ["a", 5]}), "input[1]"),
            (json!({"model": "m", "input": ["a", ""]}), "input[1]"),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 1_000_000}),
                "dimensions",
            ),
            (json!({"model": "m", "input": "x", "user": 3}), "user"),
        ] {
            assert_eq!(param_of(body.clone()), param, "{body}");
        }
        let many = vec![json!("x"); MAX_INPUTS + 1];
        assert_eq!(param_of(json!({"model": "m", "input": many})), "input");
    }

    #[test]
    fn the_stand_in_chat_request_carries_what_changes_the_answer() {
        let r =
            parsed(json!({"model": "auto", "input": ["a", [1, 2]], "dimensions": 8, "extra": 1}))
                .unwrap();
        assert_eq!(r.dropped, ["extra"]);
        let chat = stand_in_chat(&r).unwrap();
        assert_eq!(
            Value::Object(chat.body),
            json!({"model": "auto", "messages": [{"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "tokens", "tokens": [1, 2]}]}],
                "encoding_format": "float", "temperature": 0, "dimensions": 8})
        );
    }

    #[test]
    fn token_ids_and_the_text_that_spells_them_are_different_requests() {
        let tokens = stand_in_chat(&parsed(json!({"model": "m", "input": [1, 2]})).unwrap());
        let text = stand_in_chat(&parsed(json!({"model": "m", "input": "[1, 2]"})).unwrap());
        assert_ne!(tokens.unwrap().body, text.unwrap().body);
    }

    #[test]
    fn the_token_estimate_of_token_ids_is_never_below_their_count() {
        let ids: Vec<u64> = (0..1000).collect();
        let request = parsed(json!({"model": "m", "input": ids})).unwrap();
        let chat = stand_in_chat(&request).unwrap();
        assert!(crate::cost::estimate_prompt_tokens(&chat) >= 1000);
    }

    #[test]
    fn answers_are_floats_or_little_endian_base64() {
        let vectors = [vec![1.0f32, -0.5]];
        let a = answer("m", &vectors, Encoding::Float, 7);
        assert_eq!(a["data"][0]["embedding"], json!([1.0, -0.5]));
        assert_eq!(a["usage"], json!({"prompt_tokens": 7, "total_tokens": 7}));
        let a = answer("m", &vectors, Encoding::Base64, 7);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-0.5f32).to_le_bytes()].concat()
        );
    }
}
