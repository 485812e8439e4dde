//! Chat completion chunks -> the Responses API's typed SSE events, as a body wrapper.
//!
//! The sequence a client gets: `response.created`, `response.in_progress`; per output item
//! `response.output_item.added`, then its deltas (`response.content_part.added` +
//! `response.output_text.delta` for a message, `response.function_call_arguments.delta` for
//! a call, `response.reasoning_text.delta` for reasoning), its `.done` events and
//! `response.output_item.done`; finally `response.completed` (or `response.incomplete`)
//! with the whole response and its usage. A chat error event, a stream that ends without
//! `[DONE]`, or an unreadable chunk becomes one final `response.failed` event.
//!
//! Frames are converted as they come (never buffered); keep-alive comments pass through.
//! The item texts are kept for the `.done` events and the final response, bounded by
//! `MAX_ANSWER_BYTES` (past it the stream fails, like an upstream body over its limit).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use serde_json::{json, Value};

use super::{call_item, finish_status, message_item, output_text, reasoning_item, usage, Echo};
use crate::body::{Body, BoxError, SSE_KEEPALIVE};
use crate::endpoints::answer::MAX_ANSWER_BYTES;
use crate::endpoints::sse_event;
use crate::sse::SseParser;

/// Largest single chat chunk accepted (the relay's own bound on upstream events).
const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;

enum Kind {
    Reasoning,
    Message,
    Call {
        /// The chat `tool_calls[].index` it continues.
        index: u64,
        call_id: String,
        name: String,
    },
}

struct Item {
    id: String,
    kind: Kind,
    text: String,
    done: bool,
}

/// The event state machine, pure: chunks in, event bytes out.
pub struct EventWriter {
    echo: Arc<Echo>,
    model: String,
    sequence: u64,
    items: Vec<Item>,
    usage: Value,
    finish_reason: Option<String>,
    kept_bytes: usize,
    finished: bool,
}

impl EventWriter {
    pub fn new(echo: Arc<Echo>, model: String) -> Self {
        EventWriter {
            echo,
            model,
            sequence: 0,
            items: Vec::new(),
            usage: Value::Null,
            finish_reason: None,
            kept_bytes: 0,
            finished: false,
        }
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut event: Value) {
        event["type"] = kind.into();
        event["sequence_number"] = self.sequence.into();
        self.sequence = self.sequence.saturating_add(1);
        let json = serde_json::to_vec(&event).unwrap_or_default();
        out.extend_from_slice(&sse_event(kind, &json));
    }

    fn item_json(&self, i: usize) -> Value {
        let item = &self.items[i];
        let status = if item.done {
            "completed"
        } else {
            "in_progress"
        };
        match &item.kind {
            Kind::Reasoning => reasoning_item(item.id.clone(), &item.text),
            Kind::Message if item.done => message_item(item.id.clone(), &item.text, status),
            Kind::Message => json!({"id": item.id, "type": "message", "status": status,
                "role": "assistant", "content": []}),
            Kind::Call { call_id, name, .. } => {
                call_item(item.id.clone(), call_id, name, &item.text, status)
            }
        }
    }

    fn response(&self, status: &str) -> Value {
        let output = (0..self.items.len()).map(|i| self.item_json(i)).collect();
        let usage = match status {
            "in_progress" => Value::Null,
            _ => usage(&self.usage),
        };
        self.echo.response(&self.model, status, output, usage)
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        let response = self.response("in_progress");
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn open(&mut self, out: &mut Vec<u8>, kind: Kind, prefix: &str) -> usize {
        self.close_open(out);
        let i = self.items.len();
        let id = self.echo.item_id(prefix, i);
        let is_message = matches!(kind, Kind::Message);
        self.items.push(Item {
            id,
            kind,
            text: String::new(),
            done: false,
        });
        let item = match &self.items[i].kind {
            Kind::Reasoning => {
                json!({"id": self.items[i].id, "type": "reasoning", "summary": [], "content": []})
            }
            _ => self.item_json(i),
        };
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": i, "item": item}),
        );
        if is_message {
            let id = self.items[i].id.clone();
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": i, "content_index": 0, "part": output_text("")}),
            );
        }
        i
    }

    /// Closes the item still open, if any (items are produced one after another).
    fn close_open(&mut self, out: &mut Vec<u8>) {
        let Some(i) = self.items.iter().position(|item| !item.done) else {
            return;
        };
        self.items[i].done = true;
        let id = self.items[i].id.clone();
        let text = self.items[i].text.clone();
        let call_name = match &self.items[i].kind {
            Kind::Call { name, .. } => Some(name.clone()),
            Kind::Reasoning | Kind::Message => None,
        };
        let is_message = matches!(self.items[i].kind, Kind::Message);
        match call_name {
            Some(name) => self.emit(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": i, "name": name, "arguments": text}),
            ),
            None if is_message => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "part": output_text(&text)}),
                );
            }
            None => self.emit(
                out,
                "response.reasoning_text.done",
                json!({"item_id": id, "output_index": i, "content_index": 0, "text": text}),
            ),
        }
        let item = self.item_json(i);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
        );
    }

    /// The open item of this kind, opening one if needed.
    fn current(&mut self, out: &mut Vec<u8>, want: &Kind) -> usize {
        let open = self.items.iter().position(|item| !item.done);
        let same = |i: usize| match (&self.items[i].kind, want) {
            (Kind::Reasoning, Kind::Reasoning) | (Kind::Message, Kind::Message) => true,
            (Kind::Call { index: a, .. }, Kind::Call { index: b, .. }) => a == b,
            _ => false,
        };
        match open {
            Some(i) if same(i) => i,
            _ => {
                let (kind, prefix) = match want {
                    Kind::Reasoning => (Kind::Reasoning, "rs"),
                    Kind::Message => (Kind::Message, "msg"),
                    Kind::Call {
                        index,
                        call_id,
                        name,
                    } => (
                        Kind::Call {
                            index: *index,
                            call_id: call_id.clone(),
                            name: name.clone(),
                        },
                        "fc",
                    ),
                };
                self.open(out, kind, prefix)
            }
        }
    }

    /// Appends `delta` to item `i` and emits its delta event; false past the memory bound.
    fn delta(&mut self, out: &mut Vec<u8>, i: usize, delta: &str) -> bool {
        self.kept_bytes = self.kept_bytes.saturating_add(delta.len());
        if self.kept_bytes > MAX_ANSWER_BYTES {
            return false;
        }
        self.items[i].text.push_str(delta);
        let id = self.items[i].id.clone();
        let (kind, event) = match self.items[i].kind {
            Kind::Reasoning => (
                "response.reasoning_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": 0, "delta": delta}),
            ),
            Kind::Message => (
                "response.output_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": 0, "delta": delta, "logprobs": []}),
            ),
            Kind::Call { .. } => (
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": i, "delta": delta}),
            ),
        };
        self.emit(out, kind, event);
        true
    }

    /// One chat SSE event's data.
    pub fn on_data(&mut self, out: &mut Vec<u8>, data: &str) {
        if self.finished {
            return;
        }
        if data == "[DONE]" {
            return self.complete(out);
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return self.fail(
                out,
                "upstream_invalid",
                "The provider sent an unreadable event.",
            );
        };
        if let Some(error) = chunk.get("error") {
            let code = error["code"]
                .as_str()
                .unwrap_or("upstream_error")
                .to_string();
            let message = error["message"].as_str().unwrap_or("The stream failed.");
            return self.fail(out, &code, message);
        }
        if chunk["usage"].is_object() {
            self.usage = chunk["usage"].clone();
        }
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        let mut within = true;
        if let Some(text) = delta["reasoning_content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            let i = self.current(out, &Kind::Reasoning);
            within &= self.delta(out, i, text);
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let i = self.current(out, &Kind::Message);
            within &= self.delta(out, i, text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let want = Kind::Call {
                index: call["index"].as_u64().unwrap_or(0),
                call_id: call["id"].as_str().unwrap_or("").to_string(),
                name: call["function"]["name"].as_str().unwrap_or("").to_string(),
            };
            let i = self.current(out, &want);
            if let Some(arguments) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                within &= self.delta(out, i, arguments);
            }
        }
        if !within {
            self.fail(
                out,
                "upstream_invalid",
                "The answer is larger than this gateway relays.",
            );
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.close_open(out);
        let (status, incomplete) = finish_status(self.finish_reason.as_deref());
        let mut response = self.response(status);
        response["incomplete_details"] = incomplete;
        let kind = match status {
            "completed" => "response.completed",
            _ => "response.incomplete",
        };
        self.emit(out, kind, json!({"response": response}));
        self.finished = true;
    }

    /// Ends the stream with one `response.failed` event.
    pub fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if self.finished {
            return;
        }
        let mut response = self.response("failed");
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": response}));
        self.finished = true;
    }
}

/// The body wrapper: the chat SSE body in, Responses events out.
pub struct ResponsesEvents {
    inner: Option<Body>,
    parser: SseParser,
    writer: EventWriter,
    start: Option<Bytes>,
}

impl ResponsesEvents {
    pub fn new(inner: Body, echo: Arc<Echo>, model: String) -> Self {
        let mut writer = EventWriter::new(echo, model);
        let mut start = Vec::new();
        writer.start(&mut start);
        ResponsesEvents {
            inner: Some(inner),
            parser: SseParser::new(MAX_CHUNK_BYTES),
            writer,
            start: Some(Bytes::from(start)),
        }
    }

    /// Converts the events parsed so far.
    fn drain(&mut self, out: &mut Vec<u8>) {
        loop {
            match self.parser.next_event() {
                Ok(Some(event)) => self.writer.on_data(out, &event.data),
                Ok(None) => return,
                Err(e) => return self.writer.fail(out, "upstream_invalid", &e.to_string()),
            }
        }
    }
}

impl HttpBody for ResponsesEvents {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(start) = this.start.take() {
            return Poll::Ready(Some(Ok(Frame::data(start))));
        }
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let mut out = Vec::new();
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.as_ref() == SSE_KEEPALIVE {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    this.parser.push(&data);
                    this.drain(&mut out);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.writer.fail(&mut out, "body_error", &e.to_string());
                }
                Poll::Ready(None) => {
                    this.drain(&mut out);
                    this.writer.fail(
                        &mut out,
                        "upstream_unavailable",
                        "The stream ended before the answer was complete.",
                    );
                }
            }
            if this.writer.finished() {
                // Nothing after the final event: the chat stream is let go.
                this.inner = None;
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.start.is_none() && self.inner.is_none()
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
