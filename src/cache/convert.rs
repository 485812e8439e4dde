//! Serving a stored answer in the other mode: a JSON completion to a streaming request
//! (as `chat.completion.chunk` events with `delta`s, then `[DONE]`), and a stored stream to
//! a non-streaming request (the deltas concatenated into one `chat.completion`).
//!
//! Only plain text answers convert; anything with tool calls, function calls or a shape we
//! do not recognise returns `None`, and the request is a miss.
//!
//! Streams are stored with OpenAI's usage-only chunk whenever the usage is known, whether or
//! not the client that filled the entry asked for it (`stream_for_storage`); each hit then
//! gets it only if its own request asked (`stream_for_client`), and a JSON answer made from
//! a stored stream has its `usage`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::body::{sse_data, SSE_DONE};

/// A stored JSON completion as SSE bytes; the usage chunk only if the client asked for it.
pub fn json_to_sse(body: &[u8], include_usage: bool) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choices = v.get("choices")?.as_array()?;
    let head = |choices: Value| {
        json!({
            "id": v.get("id").cloned().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": v.get("created").cloned().unwrap_or(Value::Null),
            "model": v.get("model").cloned().unwrap_or(Value::Null),
            "choices": choices,
        })
    };
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut finishes = Vec::new();
    for (i, choice) in choices.iter().enumerate() {
        let message = choice.get("message")?.as_object()?;
        if message.contains_key("tool_calls") && !message["tool_calls"].is_null()
            || message.contains_key("function_call") && !message["function_call"].is_null()
        {
            return None;
        }
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let role = message.get("role").cloned().unwrap_or(json!("assistant"));
        let content = match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => return None,
        };
        let chunk = head(json!([{
            "index": index, "delta": {"role": role, "content": content}, "finish_reason": null
        }]));
        out.extend_from_slice(&sse_data(&serde_json::to_vec(&chunk).ok()?));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        finishes.push(json!({"index": index, "delta": {}, "finish_reason": finish}));
    }
    for finish in finishes {
        let chunk = head(json!([finish]));
        out.extend_from_slice(&sse_data(&serde_json::to_vec(&chunk).ok()?));
    }
    if let (true, Some(usage)) = (include_usage, v.get("usage").filter(|u| !u.is_null())) {
        let mut chunk = head(json!([]));
        chunk["usage"] = usage.clone();
        out.extend_from_slice(&sse_data(&serde_json::to_vec(&chunk).ok()?));
    }
    out.extend_from_slice(SSE_DONE);
    Some(Bytes::from(out))
}

/// Each SSE event of `text` with its `data` (`None` for comments and keep-alives).
fn segments(text: &str) -> impl Iterator<Item = (&str, Option<String>)> {
    text.split_inclusive("\n\n").map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
            .collect();
        (event, (!data.is_empty()).then(|| data.join("\n")))
    })
}

/// The `data` of each SSE event in `text` (comments and keep-alives skipped).
fn events(text: &str) -> impl Iterator<Item = (&str, String)> {
    segments(text).filter_map(|(event, data)| Some((event, data?)))
}

/// OpenAI's final usage chunk: no choices, a usage object.
fn is_usage_only(data: &str) -> bool {
    data.contains("\"usage\"")
        && serde_json::from_str::<Value>(data).is_ok_and(|chunk| {
            chunk
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
                && chunk.get("usage").is_some_and(Value::is_object)
        })
}

/// A complete stream (ending in `[DONE]`) as it is stored: with a usage-only chunk before
/// `[DONE]` when it has none and `usage` is known.
pub fn stream_for_storage(body: Bytes, usage: Option<Value>) -> Bytes {
    let (Ok(text), Some(usage)) = (std::str::from_utf8(&body), usage) else {
        return body;
    };
    let Some(head) = text.strip_suffix(std::str::from_utf8(SSE_DONE).unwrap_or_default()) else {
        return body;
    };
    if events(head).any(|(_, data)| is_usage_only(&data)) {
        return body;
    }
    let first = events(head).find_map(|(_, data)| serde_json::from_str::<Value>(&data).ok());
    let field = |k: &str| first.as_ref().and_then(|f| f.get(k)).cloned();
    let chunk = json!({
        "id": field("id"), "object": "chat.completion.chunk", "created": field("created"),
        "model": field("model"), "choices": [], "usage": usage,
    });
    let mut out = Vec::with_capacity(body.len().saturating_add(256));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&sse_data(&serde_json::to_vec(&chunk).unwrap_or_default()));
    out.extend_from_slice(SSE_DONE);
    Bytes::from(out)
}

/// A stored stream as one client gets it: without the usage-only chunk unless its request
/// asked for usage.
pub fn stream_for_client(stored: &Bytes, include_usage: bool) -> Bytes {
    let text = match std::str::from_utf8(stored) {
        Ok(text) if !include_usage && text.contains("\"usage\"") => text,
        _ => return stored.clone(),
    };
    let mut out = String::with_capacity(text.len());
    for (event, data) in segments(text) {
        if !data.is_some_and(|d| is_usage_only(&d)) {
            out.push_str(event);
        }
    }
    Bytes::from(out)
}

/// A stored SSE stream as one JSON completion.
pub fn sse_to_json(body: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let mut first: Option<Value> = None;
    let mut usage = Value::Null;
    // index -> (role, content, finish_reason)
    let mut choices: BTreeMap<u64, (Value, String, Value)> = BTreeMap::new();
    for (_, data) in events(text) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).ok()?;
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = u.clone();
        }
        for choice in chunk.get("choices")?.as_array()? {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let slot = choices
                .entry(index)
                .or_insert_with(|| (json!("assistant"), String::new(), Value::Null));
            if let Some(delta) = choice.get("delta").and_then(Value::as_object) {
                if ["tool_calls", "function_call"]
                    .iter()
                    .any(|k| delta.get(*k).is_some_and(|v| !v.is_null()))
                {
                    return None;
                }
                if let Some(role) = delta.get("role").filter(|r| r.is_string()) {
                    slot.0 = role.clone();
                }
                match delta.get("content") {
                    Some(Value::String(s)) => slot.1.push_str(s),
                    None | Some(Value::Null) => {}
                    Some(_) => return None,
                }
            }
            if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
                slot.2 = f.clone();
            }
        }
        first.get_or_insert(chunk);
    }
    let first = first?;
    let mut out = Map::new();
    for field in ["id", "created", "model"] {
        out.insert(
            field.into(),
            first.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    out.insert("object".into(), json!("chat.completion"));
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, (role, content, finish))| {
            json!({"index": index, "message": {"role": role, "content": content}, "finish_reason": finish})
        })
        .collect();
    out.insert("choices".into(), Value::Array(choices));
    if !usage.is_null() {
        out.insert("usage".into(), usage);
    }
    serde_json::to_vec(&Value::Object(out))
        .ok()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

    #[test]
    fn round_trips_a_text_answer() {
        let sse = json_to_sse(COMPLETION.as_bytes(), true).unwrap();
        let text = std::str::from_utf8(&sse).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(
            text.contains(r#""delta":{"content":"Hello","role":"assistant"}"#)
                || text.contains(r#""delta":{"role":"assistant","content":"Hello"}"#),
            "{text}"
        );
        let back: Value = serde_json::from_slice(&sse_to_json(&sse).unwrap()).unwrap();
        let want: Value = serde_json::from_str(COMPLETION).unwrap();
        assert_eq!(back, want);
        let no_usage = json_to_sse(COMPLETION.as_bytes(), false).unwrap();
        assert!(!std::str::from_utf8(&no_usage).unwrap().contains("usage"));
    }

    const STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n: keep-alive\n\ndata: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    fn usage() -> Value {
        json!({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    }

    #[test]
    fn a_stream_is_stored_with_its_usage_and_replayed_with_it_only_when_asked() {
        let stored = stream_for_storage(Bytes::from_static(STREAM.as_bytes()), Some(usage()));
        let text = std::str::from_utf8(&stored).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let usage_chunks: Vec<Value> = events(text)
            .filter(|(_, d)| is_usage_only(d))
            .map(|(_, d)| serde_json::from_str(&d).unwrap())
            .collect();
        assert_eq!(usage_chunks.len(), 1, "{text}");
        assert_eq!(usage_chunks[0]["usage"], usage());
        assert_eq!(usage_chunks[0]["id"], "c1");
        // Storing again does not add a second one.
        assert_eq!(stream_for_storage(stored.clone(), Some(usage())), stored);

        assert_eq!(stream_for_client(&stored, true), stored);
        let without = stream_for_client(&stored, false);
        assert_eq!(std::str::from_utf8(&without).unwrap(), STREAM);
        // A JSON answer made from the stored stream has the usage.
        let json: Value = serde_json::from_slice(&sse_to_json(&stored).unwrap()).unwrap();
        assert_eq!(json["usage"], usage());
        assert_eq!(json["choices"][0]["message"]["content"], "Hello");
    }

    #[test]
    fn a_stream_without_known_usage_or_end_is_stored_as_it_came() {
        let body = Bytes::from_static(STREAM.as_bytes());
        assert_eq!(stream_for_storage(body.clone(), None), body);
        let cut = Bytes::from_static(&STREAM.as_bytes()[..40]);
        assert_eq!(stream_for_storage(cut.clone(), Some(usage())), cut);
    }

    #[test]
    fn tool_calls_do_not_convert() {
        let tools = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t"}]},"finish_reason":"tool_calls"}]}"#;
        assert!(json_to_sse(tools.as_bytes(), false).is_none());
        let sse = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\ndata: [DONE]\n\n";
        assert!(sse_to_json(sse).is_none());
    }
}
