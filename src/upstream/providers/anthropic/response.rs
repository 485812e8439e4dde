//! Anthropic Messages API responses -> OpenAI Chat Completions responses: whole messages
//! ([`from_anthropic_response`]), error bodies ([`from_anthropic_error`]) and SSE streams
//! ([`StreamTranslator`]). Pure functions, no I/O. Re-exported by `upstream::anthropic`.

use serde_json::{json, Value};

use super::request::TranslateError;
use crate::sse::SseEvent;

/// Token usage as Anthropic reports it; `update` takes whichever fields a usage object has
/// (`message_start` carries input counts, `message_delta` cumulative output counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

impl Usage {
    pub fn update(&mut self, u: &Value) {
        let fields = [
            ("input_tokens", &mut self.input),
            ("output_tokens", &mut self.output),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("cache_creation_input_tokens", &mut self.cache_creation),
        ];
        for (key, slot) in fields {
            if let Some(n) = u.get(key).and_then(Value::as_u64) {
                *slot = n;
            }
        }
    }

    /// The counts of an OpenAI `usage` object (cached prompt tokens are cache reads).
    pub fn from_openai(usage: &Value) -> Usage {
        let u = crate::cost::Usage::from_openai(usage);
        Usage {
            input: u.prompt.saturating_sub(u.cached_prompt),
            output: u.completion,
            cache_read: u.cached_prompt,
            cache_creation: 0,
        }
    }

    /// Anthropic's `usage` object (input tokens exclude cache reads, as Anthropic counts).
    pub fn to_anthropic(self) -> Value {
        json!({
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
        })
    }

    pub fn to_openai(self) -> Value {
        // Counts from the provider: saturate, never wrap.
        let prompt = self
            .input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation);
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt.saturating_add(self.output),
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
        })
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn, unknown
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`: the inverse of [`finish_reason`].
/// A stop sequence cannot be told from a natural end in OpenAI's answer: both are `end_turn`.
pub(crate) fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

pub fn from_anthropic_response(
    resp: &Value,
    client_model: &str,
    created_unix: u64,
) -> Result<Value, TranslateError> {
    if resp["type"] == "error" {
        return Err(TranslateError::BadUpstream(error_text(&resp["error"])));
    }
    let id = resp["id"]
        .as_str()
        .ok_or_else(|| TranslateError::BadUpstream("message has no `id`".into()))?;
    let blocks = resp["content"]
        .as_array()
        .ok_or_else(|| TranslateError::BadUpstream("message has no `content` array".into()))?;
    let (mut text, mut thinking, mut tool_calls) = (None::<String>, None::<String>, Vec::new());
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text
                .get_or_insert_default()
                .push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => thinking
                .get_or_insert_default()
                .push_str(b["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => {
                let arguments = serde_json::to_string(&b["input"])
                    .map_err(|e| TranslateError::BadUpstream(e.to_string()))?;
                tool_calls.push(json!({
                    "id": b["id"],
                    "type": "function",
                    "function": {"name": b["name"], "arguments": arguments},
                }));
            }
            _ => {} // redacted_thinking, server tool blocks: nothing to map
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(t) = thinking {
        message["reasoning_content"] = t.into();
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let mut usage = Usage::default();
    usage.update(&resp["usage"]);
    Ok(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created_unix,
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(resp["stop_reason"].as_str()),
        }],
        "usage": usage.to_openai(),
    }))
}

/// `"<type>: <message>"` from an Anthropic error object (`{"type", "message"}`).
pub(crate) fn error_text(err: &Value) -> String {
    let msg = err["message"].as_str().unwrap_or("unknown error");
    let text = match err["type"].as_str() {
        Some(t) => format!("{t}: {msg}"),
        None => msg.to_owned(),
    };
    truncate(&text, 500)
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max_chars - 3).collect();
    out.push_str("...");
    out
}

/// Readable message from an Anthropic error response body
/// (`{"type":"error","error":{"type","message"}}`), e.g. `overloaded_error: Overloaded`.
/// Falls back to the raw body (at most 500 characters) prefixed with the HTTP status.
pub fn from_anthropic_error(status: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v["error"]["message"].is_string() {
            return error_text(&v["error"]);
        }
    }
    let raw = String::from_utf8_lossy(body);
    let raw = raw.trim();
    if raw.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        truncate(&format!("HTTP {status}: {raw}"), 500)
    }
}

/// Translates one Anthropic SSE stream into OpenAI `chat.completion.chunk` objects.
/// Feed it every parsed event in order; it holds no I/O and never buffers content.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
    finish_sent: bool,
    finished: bool,
    /// (Anthropic content block index, OpenAI tool call index) of each tool_use block.
    tool_blocks: Vec<(u64, usize)>,
}

impl StreamTranslator {
    /// `include_usage` mirrors the client's `stream_options.include_usage`: every chunk then
    /// carries `"usage": null` and a final chunk with `choices: []` carries the usage.
    pub fn new(client_model: &str, created_unix: u64, include_usage: bool) -> Self {
        StreamTranslator {
            id: String::new(),
            created: created_unix,
            model: client_model.to_owned(),
            include_usage,
            usage: None,
            finish_sent: false,
            finished: false,
            tool_blocks: Vec::new(),
        }
    }

    /// OpenAI-shaped usage seen so far (`None` before `message_start`).
    pub fn usage(&self) -> Option<Value> {
        self.usage.map(Usage::to_openai)
    }

    /// True once `message_stop` was seen: the stream completed normally.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Translates one event into zero or more chunks. Errors: an `error` event
    /// (`UpstreamStreamError`), or a malformed / out-of-order event (`BadUpstream`).
    pub fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Value>, TranslateError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            TranslateError::BadUpstream(format!("stream event data is not JSON: {e}"))
        })?;
        let kind = data["type"]
            .as_str()
            .or(event.event.as_deref())
            .unwrap_or_default();
        if kind == "error" {
            return Err(TranslateError::UpstreamStreamError(error_text(
                &data["error"],
            )));
        }
        let known = [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ];
        if self.finished || !known.contains(&kind) {
            return Ok(Vec::new()); // ping, and event types added to the API later
        }
        let started = self.usage.is_some();
        if started == (kind == "message_start") {
            // A second message_start, or content before the first one.
            return Err(bad(format!("unexpected `{kind}` event")));
        }
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let msg = &data["message"];
                let id = msg["id"]
                    .as_str()
                    .ok_or_else(|| bad("message_start without message id"))?;
                self.id = format!("chatcmpl-{id}");
                let mut usage = Usage::default();
                usage.update(&msg["usage"]);
                self.usage = Some(usage);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let index = block_index(&data)?;
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let n = self.tool_blocks.len();
                        self.tool_blocks.push((index, n));
                        let call = json!({
                            "index": n,
                            "id": block["id"],
                            "type": "function",
                            "function": {"name": block["name"], "arguments": ""},
                        });
                        out.push(self.chunk(json!({"tool_calls": [call]}), None));
                    }
                    Some("text") => out.extend(self.text_chunk("content", &block["text"])),
                    Some("thinking") => {
                        out.extend(self.text_chunk("reasoning_content", &block["thinking"]))
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = block_index(&data)?;
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => out.extend(self.text_chunk("content", &delta["text"])),
                    Some("thinking_delta") => {
                        out.extend(self.text_chunk("reasoning_content", &delta["thinking"]))
                    }
                    Some("input_json_delta") => {
                        let partial = delta["partial_json"].as_str().unwrap_or_default();
                        let tool = self.tool_blocks.iter().find(|(b, _)| *b == index);
                        if let (Some(&(_, n)), false) = (tool, partial.is_empty()) {
                            let call = json!({"index": n, "function": {"arguments": partial}});
                            out.push(self.chunk(json!({"tool_calls": [call]}), None));
                        }
                    }
                    _ => {} // signature_delta, citations_delta, ...
                }
            }
            "message_delta" => {
                if let Some(u) = self.usage.as_mut() {
                    u.update(&data["usage"]);
                }
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.finish_sent = true;
                    out.push(self.chunk(json!({}), Some(finish_reason(Some(reason)))));
                }
            }
            "message_stop" => {
                self.finished = true;
                if !self.finish_sent {
                    self.finish_sent = true;
                    out.push(self.chunk(json!({}), Some("stop")));
                }
                if let (true, Some(usage)) = (self.include_usage, self.usage()) {
                    out.push(json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }));
                }
            }
            _ => {} // content_block_stop
        }
        Ok(out)
    }

    fn text_chunk(&self, field: &str, text: &Value) -> Option<Value> {
        let text = text.as_str().filter(|t| !t.is_empty())?;
        Some(self.chunk(json!({ field: text }), None))
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }
}

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::BadUpstream(msg.into())
}

fn block_index(data: &Value) -> Result<u64, TranslateError> {
    data["index"]
        .as_u64()
        .ok_or_else(|| bad("content block event without index"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    const CREATED: u64 = 1_700_000_000;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/anthropic/",
                $name
            ))
        };
    }

    /// Runs a recorded stream through `SseParser` (in awkward 7-byte chunks) and the
    /// translator; returns the chunks produced before the end or the first error.
    fn run(sse: &str, include_usage: bool) -> (Vec<Value>, Option<TranslateError>) {
        let mut parser = SseParser::new(64 * 1024);
        let mut tr = StreamTranslator::new("claude-sonnet", CREATED, include_usage);
        let mut out = Vec::new();
        for piece in sse.as_bytes().chunks(7) {
            parser.push(piece);
            while let Some(event) = parser.next_event().unwrap() {
                match tr.on_event(&event) {
                    Ok(chunks) => out.extend(chunks),
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        assert_eq!(parser.finish(), None, "stream ends with a blank line");
        assert!(tr.finished());
        (out, None)
    }

    /// Exact comparison, key order included.
    fn assert_same(actual: &[Value], expected_jsonl: &str) {
        let expected: Vec<String> = expected_jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
            .collect();
        let actual: Vec<String> = actual.iter().map(Value::to_string).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn text_stream_fixture() {
        let (chunks, err) = run(fixture!("text_stream.sse"), true);
        assert!(err.is_none());
        assert_same(&chunks, fixture!("text_stream.expected.jsonl"));
    }

    #[test]
    fn tool_use_stream_fixture() {
        let (chunks, err) = run(fixture!("tool_use_stream.sse"), false);
        assert!(err.is_none());
        assert_same(&chunks, fixture!("tool_use_stream.expected.jsonl"));
    }

    #[test]
    fn thinking_stream_fixture() {
        let (chunks, err) = run(fixture!("thinking_stream.sse"), true);
        assert!(err.is_none());
        assert_same(&chunks, fixture!("thinking_stream.expected.jsonl"));
    }

    #[test]
    fn error_event_mid_stream() {
        let (chunks, err) = run(fixture!("error_stream.sse"), false);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Once upon");
        let err = err.expect("error event");
        assert!(err.is_upstream() && err.param().is_none());
        assert!(
            matches!(&err, TranslateError::UpstreamStreamError(m) if m == "overloaded_error: Overloaded")
        );
    }

    #[test]
    fn usage_and_finished_track_the_stream() {
        let mut tr = StreamTranslator::new("m", CREATED, false);
        assert_eq!(tr.usage(), None);
        let ev = |data: &str| SseEvent {
            event: None,
            data: data.to_owned(),
        };
        tr.on_event(&ev(r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#)).unwrap();
        assert_eq!(tr.usage().unwrap()["prompt_tokens"], 15);
        assert!(!tr.finished());
        tr.on_event(&ev(
            r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":7}}"#,
        ))
        .unwrap();
        assert_eq!(tr.usage().unwrap()["completion_tokens"], 7);
        // message_stop without a stop_reason still finishes the choice.
        let last = tr.on_event(&ev(r#"{"type":"message_stop"}"#)).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0]["choices"][0]["finish_reason"], "stop");
        assert!(tr.finished());
        assert_eq!(tr.usage().unwrap()["total_tokens"], 22);
    }

    #[test]
    fn malformed_streams_are_upstream_errors() {
        let ev = |data: &str| SseEvent {
            event: Some("x".into()),
            data: data.to_owned(),
        };
        let mut tr = StreamTranslator::new("m", CREATED, false);
        assert!(tr.on_event(&ev("not json")).unwrap_err().is_upstream());
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#;
        assert!(matches!(
            tr.on_event(&ev(delta)),
            Err(TranslateError::BadUpstream(_))
        ));
        // Pings and unknown event types are ignored.
        assert!(tr.on_event(&ev(r#"{"type":"ping"}"#)).unwrap().is_empty());
        assert!(tr
            .on_event(&ev(r#"{"type":"future_event"}"#))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn non_streaming_fixtures() {
        for (resp, expected) in [
            (
                fixture!("text_response.json"),
                fixture!("text_response.expected.json"),
            ),
            (
                fixture!("tool_use_response.json"),
                fixture!("tool_use_response.expected.json"),
            ),
        ] {
            let resp: Value = serde_json::from_str(resp).unwrap();
            let got = from_anthropic_response(&resp, "claude-sonnet", CREATED).unwrap();
            let expected: Value = serde_json::from_str(expected).unwrap();
            assert_eq!(got.to_string(), expected.to_string());
        }
    }

    #[test]
    fn response_edge_cases() {
        let resp = json!({"id": "msg_2", "type": "message", "content": [], "stop_reason": "refusal", "usage": {"input_tokens": 3, "output_tokens": 0}});
        let got = from_anthropic_response(&resp, "m", CREATED).unwrap();
        assert_eq!(
            got["choices"][0]["message"],
            json!({"role": "assistant", "content": null})
        );
        assert_eq!(got["choices"][0]["finish_reason"], "content_filter");
        for (stop, reason) in [
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
        ] {
            assert_eq!(finish_reason(Some(stop)), reason);
        }
        let err = from_anthropic_response(&json!({"type": "message"}), "m", CREATED).unwrap_err();
        assert!(err.is_upstream());
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        assert_eq!(
            from_anthropic_error(429, body),
            "rate_limit_error: Number of request tokens has exceeded your per-minute rate limit"
        );
        assert_eq!(
            from_anthropic_error(502, b"<html>Bad Gateway</html>"),
            "HTTP 502: <html>Bad Gateway</html>"
        );
        assert_eq!(
            from_anthropic_error(503, b"  "),
            "HTTP 503 with an empty body"
        );
        let long = "é".repeat(2000);
        let msg = from_anthropic_error(500, long.as_bytes());
        assert_eq!(msg.chars().count(), 500);
        assert!(msg.ends_with("..."));
    }
}
