//! OpenAI-compatible providers (OpenAI, Azure OpenAI, vLLM, Ollama, DeepSeek, Together, ...).
//!
//! The request body is forwarded as adapted; a whole response is passed through byte for
//! byte. Streams are parsed on the way (usage for metrics, `[DONE]` to tell a clean end from
//! a provider that hung up) and relayed event by event, within the event size limit.
//!
//! Real servers differ from OpenAI in small ways that break real clients; the stream is
//! brought back to OpenAI's shape where they do:
//! - the stream ends at `[DONE]`, not when the server closes its body a moment later (an SDK
//!   stops reading at `[DONE]`: its answer was complete, not cancelled);
//! - tool-call deltas carry `id`, `type` and `function.name` once per tool call (llama.cpp
//!   repeats them in every chunk, and SDK stream helpers concatenate the repeats);
//! - a client that asked for `stream_options.include_usage` from a server that ignores it
//!   gets a usage chunk built from the gateway's estimate, marked `"estimated": true`.

// Numbers here come from providers and config: no unchecked arithmetic (issue 10).
#![deny(clippy::arithmetic_side_effects)]

use crate::upstream::client;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use memchr::memmem::Finder;
use serde_json::Value;

use crate::api::ChatRequest;
use crate::body::relay::{PendingStream, StreamChunk};
use crate::error::{FailureKind, GatewayError, TimeoutKind};
use crate::sse::{SseEvent, SseParser};
use crate::upstream::{
    auth, error_chain, expect_event_stream, read_body, send_error, status_error, url, CallContext,
    Events, MAX_UPSTREAM_EVENT_BYTES,
};

fn build(
    client: &client::Client,
    ctx: &CallContext,
    request: &ChatRequest,
) -> Result<client::RequestBuilder, GatewayError> {
    let provider = &ctx.deployment.provider;
    let mut builder = client
        .post(url(provider)?)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(request.to_bytes());
    if let (true, Some(id)) = (provider.send_request_id, ctx.request_id.upstream()) {
        builder = builder.header("x-request-id", id.clone());
    }
    if provider.send_trace_context {
        for (name, value) in crate::telemetry::upstream_headers(ctx.trace.as_ref()) {
            builder = builder.header(name, value);
        }
    }
    if let Some((name, value)) = auth(provider)? {
        builder = builder.header(name, value);
    }
    Ok(builder)
}

/// The one field of a completion the gateway reads.
#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<Value>,
}

/// OpenAI's `{"error":{"message":...}}`, or the start of the raw body.
pub(in crate::upstream) fn error_message(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(300).collect();
            if text.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                text
            }
        })
}

pub(in crate::upstream) async fn complete(
    client: &client::Client,
    ctx: &CallContext,
    request: &ChatRequest,
) -> Result<Bytes, GatewayError> {
    let builder = build(client, ctx, request)?;
    let result = async {
        let response = tokio::time::timeout_at(ctx.total_deadline(), builder.send(client))
            .await
            .map_err(|_| ctx.timeout(TimeoutKind::Total, ctx.timeouts.total))?
            .map_err(|e| send_error(ctx, e))?;
        if !response.status().is_success() {
            return Err(Box::pin(status_error(ctx, response, error_message)).await);
        }
        let bytes = read_body(ctx, response).await?;
        // Checked as JSON, but only `usage` is built as a value: the answer itself passes
        // through as the provider's bytes.
        let parsed: UsageOnly =
            serde_json::from_slice(&bytes).map_err(|e| GatewayError::UpstreamInvalid {
                provider: ctx.provider(),
                message: format!("response is not JSON: {e}"),
            })?;
        if let Some(usage) = parsed.usage.filter(Value::is_object) {
            ctx.recorder.usage(&usage);
        }
        Ok(bytes)
    }
    .await;
    // Not recorded as the outcome here: the retry loop decides whether this error is final.
    result
}

pub(in crate::upstream) fn stream(
    client: client::Client,
    ctx: &CallContext,
    request: &ChatRequest,
) -> PendingStream {
    let builder = build(&client, ctx, request);
    let ctx = ctx.clone();
    let strip_usage = request.usage_added;
    // The client's own request for usage: the gateway must deliver it even if the server
    // sends none (the prompt estimate is only needed then).
    let estimate_usage = (request.include_usage() && !request.usage_added)
        .then(|| crate::cost::estimate_prompt_tokens(request));
    // The output estimate counts data events, role and finish chunks included: never more
    // than the client allowed.
    let max_output = crate::cost::requested_max_output(request).ok().flatten();
    Box::pin(async move {
        let response = builder?
            .send(&client)
            .await
            .map_err(|e| send_error(&ctx, e))?;
        if !response.status().is_success() {
            return Err(Box::pin(status_error(&ctx, response, error_message)).await);
        }
        expect_event_stream(&ctx, &response)?;
        let events: Events = Box::pin(InspectedStream {
            inner: Box::pin(response.bytes_stream()),
            parser: SseParser::new(MAX_UPSTREAM_EVENT_BYTES),
            saw_done: false,
            ended: false,
            strip_usage,
            estimate_usage,
            saw_usage: false,
            content_events: 0,
            first_chunk: None,
            tool_calls_seen: Vec::new(),
            max_output,
            failed_after: None,
            ctx,
        });
        Ok(events)
    })
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, client::Error>> + Send>>;

/// Relays the provider's SSE events while reading usage and `[DONE]`.
///
/// Only complete events leave: each is framed again (`event:`/`data:` lines, blank line),
/// which for an OpenAI-shaped stream is the provider's own bytes. An event larger than
/// `MAX_UPSTREAM_EVENT_BYTES`, or bytes that are not an event stream at all, end the stream
/// with an error instead of reaching the client half-framed; the parser holds at most one
/// event's worth of bytes, so memory stays bounded whatever the provider sends. (Upstream
/// SSE comments are not relayed: the relay sends its own keep-alives.)
struct InspectedStream {
    inner: ByteStream,
    parser: SseParser,
    saw_done: bool,
    ended: bool,
    /// Whether the usage-only chunk must be hidden (the gateway asked for it, not the client).
    strip_usage: bool,
    /// The prompt-token estimate, when the client asked for usage itself.
    estimate_usage: Option<u64>,
    saw_usage: bool,
    /// Data events other than `[DONE]`: the output estimate when the server reports none.
    content_events: u64,
    /// `id`, `created` and `model` of the first chunk, for a usage chunk the gateway adds.
    first_chunk: Option<Value>,
    /// (choice index, tool-call index) pairs whose `id`/`type`/`name` went out already.
    tool_calls_seen: Vec<(u64, u64)>,
    /// The client's output-token limit, which the output estimate never exceeds.
    max_output: Option<u64>,
    /// A bad event that came after good ones in the same read: the good ones go out
    /// first, then this ends the stream.
    failed_after: Option<GatewayError>,
    ctx: CallContext,
}

/// OpenAI's final usage chunk: no choices, a usage object.
fn is_usage_only(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(Value::is_object)
}

/// Appends `event` as SSE bytes (multi-line data becomes several `data:` lines).
fn frame(event: &SseEvent, out: &mut Vec<u8>) {
    if let Some(name) = &event.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    // memchr's vectorised search: this runs for every relayed event.
    let mut rest = event.data.as_bytes();
    loop {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], rest.get(end.saturating_add(1)..)),
            None => (rest, None),
        };
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    out.push(b'\n');
}

/// The keys that make an event worth parsing, searched in every relayed event; built once.
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("\"usage\""));
static TOOL_CALLS_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("\"tool_calls\""));

impl InspectedStream {
    /// Reads one event on its way (usage, the first chunk's identity) and normalises its
    /// tool-call deltas; false if it must not reach the client. Parses JSON only for the
    /// first event and events that mention usage or tool calls.
    fn inspect_event(&mut self, event: &mut SseEvent) -> bool {
        self.content_events = self.content_events.saturating_add(1);
        let has_usage = USAGE_KEY.find(event.data.as_bytes()).is_some();
        let has_tools = TOOL_CALLS_KEY.find(event.data.as_bytes()).is_some();
        let wants_first = self.estimate_usage.is_some() && self.first_chunk.is_none();
        if !(has_usage || has_tools || wants_first) {
            return true;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&event.data) else {
            return true;
        };
        if wants_first {
            let field = |k: &str| chunk.get(k).cloned().unwrap_or(Value::Null);
            self.first_chunk = Some(serde_json::json!({
                "id": field("id"), "created": field("created"), "model": field("model"),
            }));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.saw_usage = true;
            self.ctx.recorder.usage(usage);
            if self.strip_usage && is_usage_only(&chunk) {
                return false;
            }
        }
        if has_tools && dedupe_tool_call_fields(&mut chunk, &mut self.tool_calls_seen) {
            event.data = chunk.to_string();
        }
        true
    }

    /// OpenAI's usage-only chunk with the gateway's estimate (prompt from the request, one
    /// output token per data event, at most the client's output limit), marked as estimated.
    fn estimated_usage_chunk(&self, prompt: u64) -> Value {
        let completion = self
            .max_output
            .map_or(self.content_events, |cap| self.content_events.min(cap));
        let mut chunk = self
            .first_chunk
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        chunk["object"] = "chat.completion.chunk".into();
        chunk["choices"] = Value::Array(Vec::new());
        chunk["usage"] = serde_json::json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt.saturating_add(completion),
            "estimated": true,
        });
        chunk
    }

    /// The client bytes of the events this chunk completes, and how many provider events
    /// they are (the gateway's own usage chunk not counted).
    fn inspect(&mut self, bytes: &[u8]) -> Result<StreamChunk, GatewayError> {
        self.parser.push(bytes);
        // The events go out about as large as they came in: one allocation, no regrowing.
        let mut out = Vec::with_capacity(bytes.len().saturating_add(64));
        let mut events = 0u64;
        loop {
            let mut event = match self.parser.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    let error = GatewayError::UpstreamInvalid {
                        provider: self.ctx.provider(),
                        message: format!("bad event stream: {e}"),
                    };
                    if out.is_empty() {
                        return Err(error);
                    }
                    self.failed_after = Some(error);
                    break;
                }
            };
            if event.data == "[DONE]" {
                self.saw_done = true;
                if let (Some(prompt), false) = (self.estimate_usage, self.saw_usage) {
                    let chunk = self.estimated_usage_chunk(prompt);
                    let usage = SseEvent {
                        event: None,
                        data: chunk.to_string(),
                    };
                    frame(&usage, &mut out);
                }
                frame(&event, &mut out);
                events = events.saturating_add(1);
                // Whatever the server sends after `[DONE]` is not part of the answer.
                break;
            }
            if self.inspect_event(&mut event) {
                frame(&event, &mut out);
                events = events.saturating_add(1);
            }
        }
        Ok(StreamChunk::events(Bytes::from(out), events))
    }
}

const MAX_TRACKED_TOOL_CALLS: usize = 128;

/// Removes `id`, `type` and `function.name` from tool-call deltas whose tool call already
/// had them (OpenAI sends them once, in the first delta of each call); true if it changed
/// anything.
fn dedupe_tool_call_fields(chunk: &mut Value, seen: &mut Vec<(u64, u64)>) -> bool {
    let mut changed = false;
    let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
        return false;
    };
    for choice in choices {
        let choice_index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(calls) = choice
            .get_mut("delta")
            .and_then(|d| d.get_mut("tool_calls"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for call in calls {
            let Some(call) = call.as_object_mut() else {
                continue;
            };
            let key = (
                choice_index,
                call.get("index").and_then(Value::as_u64).unwrap_or(0),
            );
            if !seen.contains(&key) {
                // A real answer has a handful of tool calls; past that many, stop tracking
                // rather than let a hostile stream grow this list (and its scans).
                if seen.len() < MAX_TRACKED_TOOL_CALLS {
                    seen.push(key);
                }
                continue;
            }
            changed |= call.remove("id").is_some();
            changed |= call.remove("type").is_some();
            if let Some(function) = call.get_mut("function").and_then(Value::as_object_mut) {
                changed |= function.remove("name").is_some();
            }
        }
    }
    changed
}

impl Stream for InspectedStream {
    type Item = Result<StreamChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(error) = this.failed_after.take() {
            this.ended = true;
            return Poll::Ready(Some(Err(error)));
        }
        // `[DONE]` ends the answer: a server that keeps its body open a moment longer (or
        // forever) does not hold the client, and the stream counts as complete.
        if this.ended || this.saw_done {
            this.ended = true;
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let chunk = this.inspect(&bytes);
                this.ended = chunk.is_err();
                Poll::Ready(Some(chunk))
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                Poll::Ready(Some(Err(GatewayError::UpstreamUnavailable {
                    provider: this.ctx.provider(),
                    kind: FailureKind::Stream,
                    message: format!("stream broke: {}", error_chain(&e)),
                })))
            }
            Poll::Ready(None) => {
                this.ended = true;
                if this.saw_done {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(GatewayError::UpstreamUnavailable {
                        provider: this.ctx.provider(),
                        kind: FailureKind::Stream,
                        message: "stream ended before `data: [DONE]`".into(),
                    })))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(event: Option<&str>, data: &str) -> String {
        let mut out = Vec::new();
        let event = SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        };
        frame(&event, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events_are_framed_as_the_provider_sent_them() {
        assert_eq!(framed(None, "{\"a\":1}"), "data: {\"a\":1}\n\n");
        assert_eq!(framed(None, "[DONE]"), "data: [DONE]\n\n");
        // Multi-line data stays multi-line; a named event keeps its name.
        assert_eq!(
            framed(Some("x"), "one\ntwo"),
            "event: x\ndata: one\ndata: two\n\n"
        );
        // Empty data, and empty first and last lines, are lines too.
        assert_eq!(framed(None, ""), "data: \n\n");
        assert_eq!(framed(None, "\nmid\n"), "data: \ndata: mid\ndata: \n\n");
        // Re-parsing the framed bytes gives the same event back.
        let mut parser = SseParser::new(1024);
        parser.push(framed(Some("x"), "one\n\ntwo").as_bytes());
        let event = parser.next_event().unwrap().unwrap();
        assert_eq!(
            (event.event.as_deref(), event.data.as_str()),
            (Some("x"), "one\n\ntwo")
        );
    }
}
