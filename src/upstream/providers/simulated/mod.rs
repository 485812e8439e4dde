//! The built-in `simulated` provider: deterministic answers with realistic timing.
//!
//! For demos, tests and benchmarks without keys or network. The same request always gets
//! the same text; time to first token and tokens per second come from the provider config;
//! reasoning-tier models report reasoning tokens (more for a higher `reasoning_effort`).
//! Every answer says it is simulated: text starts with `[simulated]` and
//! `system_fingerprint` is `deliberate-simulated`. Requests with tools get a tool call and
//! requests with a `response_format` get JSON of the asked shape (`answer.rs`).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

mod answer;
pub mod embed;

use crate::api::ChatRequest;
use crate::body::relay::StreamChunk;
use crate::body::{sse_data, SSE_DONE};
use crate::classify::Tier;
use crate::config::ProviderKind;
use crate::error::{GatewayError, TimeoutKind};
use crate::upstream::{unix_now, CallContext, Events};
use answer::Answer;

const WORDS: &[&str] = &[
    "the", "answer", "depends", "on", "context", "and", "a", "careful", "look", "at", "each",
    "step", "shows", "that", "this", "approach", "works", "well", "for", "most", "cases", "here",
    "is", "short", "summary", "with", "key", "points", "to", "consider", "next",
];

/// What a simulated call will produce, fixed by the request alone.
struct Plan {
    id: String,
    model: String,
    created: u64,
    /// The content (or a tool call's arguments) in the pieces a stream sends.
    pieces: Vec<String>,
    /// The tool called instead of answering in text.
    tool: Option<String>,
    finish_reason: &'static str,
    prompt_tokens: u64,
    reasoning_tokens: u64,
    choices: u64,
    ttft: Duration,
    per_token: Duration,
    include_usage: bool,
}

impl Plan {
    fn new(ctx: &CallContext, request: &ChatRequest) -> Plan {
        let (ttft, tps) = match ctx.deployment.provider.kind {
            ProviderKind::Simulated {
                time_to_first_token,
                tokens_per_second,
            } => (time_to_first_token, tokens_per_second),
            _ => (Duration::ZERO, f64::INFINITY),
        };
        let messages = serde_json::to_vec(request.messages()).unwrap_or_default();
        let digest = Sha256::digest(&messages);
        let seed = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        let natural = 12 + (seed % 24) as usize;
        let limit = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| request.body.get(*k).and_then(Value::as_u64))
            .map(|l| l.max(1) as usize);
        let count = limit.map_or(natural, |l| l.min(natural));
        let mut words = vec!["[simulated]"];
        words.extend(
            (0..count.saturating_sub(1))
                .map(|i| WORDS[((seed >> (i % 48)) as usize + i * 7) % WORDS.len()]),
        );
        let mut finish_reason = if limit.is_some_and(|l| l < natural) {
            "length"
        } else {
            "stop"
        };
        let (pieces, tool) = match Answer::for_request(request) {
            Answer::Text => {
                let pieces = words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        if i == 0 {
                            w.to_string()
                        } else {
                            format!(" {w}")
                        }
                    })
                    .collect();
                (pieces, None)
            }
            // Structured answers are never cut by the token limit: they must parse.
            Answer::Json(text) => {
                finish_reason = "stop";
                (split_pieces(&text), None)
            }
            Answer::ToolCall { name, arguments } => {
                finish_reason = "tool_calls";
                (split_pieces(&arguments), Some(name))
            }
        };
        let reasoning_tokens = match ctx.tier {
            Tier::Fast => 0,
            Tier::Reasoning => {
                let factor = match request.reasoning_effort() {
                    Some("low") => 2,
                    Some("high") => 8,
                    _ => 4,
                };
                factor * count as u64
            }
        };
        Plan {
            id: format!("chatcmpl-sim-{}", hex::encode(&digest[..6])),
            model: ctx.deployment.upstream_model.clone(),
            created: unix_now(),
            finish_reason,
            prompt_tokens: (messages.len() as u64 / 4).max(1),
            reasoning_tokens,
            choices: request
                .body
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 8),
            include_usage: request.include_usage(),
            pieces,
            tool,
            ttft,
            per_token: if tps.is_finite() {
                Duration::from_secs_f64(1.0 / tps)
            } else {
                Duration::ZERO
            },
        }
    }

    fn usage(&self) -> Value {
        let completion = self.pieces.len() as u64 * self.choices + self.reasoning_tokens;
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }

    fn text(&self) -> String {
        self.pieces.concat()
    }

    /// The tool call's id (fixed by the request, like everything else).
    fn call_id(&self) -> String {
        format!("call_{}", self.id.trim_start_matches("chatcmpl-"))
    }

    /// The message of a non-streaming answer.
    fn message(&self) -> Value {
        match &self.tool {
            None => json!({"role": "assistant", "content": self.text(), "refusal": null}),
            Some(name) => json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": self.call_id(), "type": "function",
                    "function": {"name": name, "arguments": self.text()}}]}),
        }
    }

    fn duration(&self) -> Duration {
        // Saturating: a huge `max_tokens` must not overflow the simulated duration.
        let words = u32::try_from(self.pieces.len()).unwrap_or(u32::MAX);
        self.per_token
            .checked_mul(words)
            .and_then(|d| d.checked_add(self.ttft))
            .unwrap_or(Duration::MAX)
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": "deliberate-simulated", "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        sse_data(&serde_json::to_vec(&chunk).expect("JSON value serializes"))
    }

    /// The chunks of step `step`: 0 = role (and the tool call's name), 1..=pieces = one
    /// piece each, then the finish.
    fn step(&self, step: usize) -> Option<Bytes> {
        let n = self.pieces.len();
        let per_choice = |delta: Value, finish: Value| {
            Value::Array(
                (0..self.choices)
                    .map(|i| json!({"index": i, "delta": delta, "finish_reason": finish}))
                    .collect(),
            )
        };
        match (step, &self.tool) {
            (0, None) => Some(self.chunk(
                per_choice(json!({"role": "assistant", "content": ""}), Value::Null),
                None,
            )),
            (0, Some(name)) => {
                let call = json!({"index": 0, "id": self.call_id(), "type": "function",
                    "function": {"name": name, "arguments": ""}});
                let delta = json!({"role": "assistant", "content": null, "tool_calls": [call]});
                Some(self.chunk(per_choice(delta, Value::Null), None))
            }
            (s, None) if s <= n => Some(self.chunk(
                per_choice(json!({"content": self.pieces[s - 1]}), Value::Null),
                None,
            )),
            (s, Some(_)) if s <= n => {
                let call = json!({"index": 0, "function": {"arguments": self.pieces[s - 1]}});
                Some(self.chunk(per_choice(json!({"tool_calls": [call]}), Value::Null), None))
            }
            (s, _) if s == n + 1 => {
                Some(self.chunk(per_choice(json!({}), json!(self.finish_reason)), None))
            }
            (s, _) if s == n + 2 && self.include_usage => {
                Some(self.chunk(json!([]), Some(self.usage())))
            }
            _ => None,
        }
    }
}

/// A structured answer in stream-sized pieces (about a token each), on char boundaries.
fn split_pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(6).map(|c| c.iter().collect()).collect()
}

pub(in crate::upstream) async fn complete(
    ctx: &CallContext,
    request: &ChatRequest,
) -> Result<Bytes, GatewayError> {
    let plan = Plan::new(ctx, request);
    let done_at = crate::body::relay::deadline_after(Instant::now(), plan.duration());
    if done_at > ctx.total_deadline() {
        tokio::time::sleep_until(ctx.total_deadline()).await;
        return Err(ctx.timeout(TimeoutKind::Total, ctx.timeouts.total));
    }
    tokio::time::sleep_until(done_at).await;
    let message = plan.message();
    let choices: Vec<Value> = (0..plan.choices)
        .map(|i| {
            json!({
                "index": i,
                "message": message,
                "logprobs": null,
                "finish_reason": plan.finish_reason,
            })
        })
        .collect();
    let usage = plan.usage();
    ctx.recorder.usage(&usage);
    let body = json!({
        "id": plan.id, "object": "chat.completion", "created": plan.created, "model": plan.model,
        "system_fingerprint": "deliberate-simulated", "choices": choices, "usage": usage,
    });
    Ok(Bytes::from(
        serde_json::to_vec(&body).expect("JSON value serializes"),
    ))
}

pub(in crate::upstream) fn stream(ctx: &CallContext, request: &ChatRequest) -> Events {
    let plan = Plan::new(ctx, request);
    let recorder = ctx.recorder.clone();
    let start = Instant::now();
    let state = (plan, 0usize, false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(plan, step, done)| {
            let recorder = recorder.clone();
            async move {
                if done {
                    return None;
                }
                let due = start + plan.ttft + plan.per_token * step.saturating_sub(1) as u32;
                tokio::time::sleep_until(due).await;
                match plan.step(step) {
                    Some(bytes) => Some((Ok(StreamChunk::data(bytes)), (plan, step + 1, false))),
                    None => {
                        recorder.usage(&plan.usage());
                        Some((
                            Ok(StreamChunk::data(Bytes::from_static(SSE_DONE))),
                            (plan, step, true),
                        ))
                    }
                }
            }
        },
    ))
}
