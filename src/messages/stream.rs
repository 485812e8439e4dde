//! A Chat Completions SSE stream -> Anthropic's event sequence. Pure, no I/O; fed one chat
//! event at a time, it writes Anthropic events as they become known and never holds content
//! back.
//!
//! ```text
//! first chunk        -> message_start (id, model, zero usage), ping
//! reasoning deltas   -> content_block_start {thinking} + thinking_delta ...
//! content deltas     -> content_block_start {text} + text_delta ...
//! a new tool call    -> content_block_start {tool_use id name} + input_json_delta ...
//!                       (each kind change closes the open block: content_block_stop)
//! finish_reason      -> remembered (stop_reason); usage chunk -> remembered
//! [DONE]             -> content_block_stop, message_delta {stop_reason, usage}, message_stop
//! {"error": ...}     -> one `error` event in Anthropic's shape; the stream ends
//! keep-alive comment -> ping
//! ```
//! Only the first choice is translated (a Messages request never asks for more).

use serde_json::{json, Value};

use super::error::stream_error;
use super::response::{message_id, reasoning_of};
use crate::upstream::providers::anthropic::response::{stop_reason, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    /// The chat tool-call index this block carries.
    Tool(u64),
}

#[derive(Debug, Default)]
pub struct EventTranslator {
    started: bool,
    finished: bool,
    /// The open content block and its Anthropic index.
    open: Option<(Block, u64)>,
    next_index: u64,
    /// (chat tool-call index, Anthropic block index) of each tool_use block.
    tools: Vec<(u64, u64)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    /// The model named in `message_start` (the chunks' own `model` when `None`).
    model: Option<String>,
}

/// Appends one named Anthropic event.
fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&serde_json::to_vec(data).expect("a JSON value serializes"));
    out.extend_from_slice(b"\n\n");
}

impl EventTranslator {
    pub fn new() -> Self {
        EventTranslator::default()
    }

    /// A translator whose `message_start` names `model` (the model that served, as the
    /// `x-deliberate-model` header does) instead of the upstream's name for it.
    pub fn for_model(model: String) -> Self {
        EventTranslator {
            model: Some(model),
            ..EventTranslator::default()
        }
    }

    /// True once the stream has ended (`message_stop` or `error` written).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// A keep-alive while the model is slow: Anthropic's `ping`.
    pub fn ping(&self, out: &mut Vec<u8>) {
        if !self.finished {
            event(out, "ping", &json!({"type": "ping"}));
        }
    }

    /// Translates the data of one chat SSE event.
    pub fn on_data(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if data.trim() == "[DONE]" {
            return self.finish(out);
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return self.fail(
                out,
                "api_error",
                "the upstream stream sent an invalid event",
            );
        };
        if let Some(error) = chunk.get("error") {
            let (kind, message) = stream_error(error);
            return self.fail(out, kind, &message);
        }
        if !self.started {
            self.start(&chunk, out);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk["choices"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0))
        else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(thinking) = reasoning_of(delta) {
            self.open_block(Block::Thinking, out);
            self.delta(out, json!({"type": "thinking_delta", "thinking": thinking}));
        }
        if let Some(text) = delta["content"].as_str().filter(|s| !s.is_empty()) {
            self.open_block(Block::Text, out);
            self.delta(out, json!({"type": "text_delta", "text": text}));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.tool_call(call, out);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
    }

    /// The upstream body ended; without `[DONE]` (or an error event) that is a failure.
    pub fn on_end(&mut self, out: &mut Vec<u8>) {
        if !self.finished {
            self.fail(
                out,
                "api_error",
                "the upstream stream ended before it was complete",
            );
        }
    }

    /// The chat stream failed (a body error, an unreadable event): one final `api_error`
    /// event, unless the stream already ended.
    pub fn fail_with(&mut self, out: &mut Vec<u8>, message: &str) {
        if !self.finished {
            self.fail(out, "api_error", message);
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.started = true;
        let message = json!({
            "id": message_id(chunk["id"].as_str().unwrap_or_default()),
            "type": "message",
            "role": "assistant",
            "model": self.model.as_deref().map_or_else(|| chunk["model"].clone(), Value::from),
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
        self.ping(out);
    }

    /// Makes `block` the open content block, closing another one first.
    fn open_block(&mut self, block: Block, out: &mut Vec<u8>) {
        if self.open.map(|(b, _)| b) == Some(block) {
            return;
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        let content_block = match block {
            Block::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Text => json!({"type": "text", "text": ""}),
            Block::Tool(_) => unreachable!("tool blocks are opened by tool_call"),
        };
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        );
        self.open = Some((block, index));
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Value) {
        if let Some((_, index)) = self.open {
            event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let n = call["index"].as_u64().unwrap_or(0);
        let known = self.tools.iter().find(|(t, _)| *t == n).map(|(_, b)| *b);
        let index = match known {
            Some(index) => index,
            None => {
                self.close_block(out);
                let index = self.next_index;
                self.next_index = self.next_index.saturating_add(1);
                self.tools.push((n, index));
                let block = json!({"type": "tool_use", "id": call["id"],
                    "name": call["function"]["name"], "input": {}});
                event(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": block}),
                );
                self.open = Some((Block::Tool(n), index));
                index
            }
        };
        if let Some(partial) = call["function"]["arguments"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            // Calls stream one after the other; a late piece of an earlier call still goes
            // to its own block (clients accumulate by index).
            let delta = json!({"type": "input_json_delta", "partial_json": partial});
            event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            return self.fail(
                out,
                "api_error",
                "the upstream stream ended without an answer",
            );
        }
        self.close_block(out);
        let mut usage = self
            .usage
            .as_ref()
            .map(Usage::from_openai)
            .unwrap_or_default()
            .to_anthropic();
        if self.usage.is_none() {
            usage = json!({"output_tokens": 0});
        }
        let delta = json!({
            "stop_reason": stop_reason(self.finish_reason.as_deref()),
            "stop_sequence": null,
        });
        event(
            out,
            "message_delta",
            &json!({"type": "message_delta", "delta": delta, "usage": usage}),
        );
        event(out, "message_stop", &json!({"type": "message_stop"}));
        self.finished = true;
    }

    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        event(
            out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        self.finished = true;
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
