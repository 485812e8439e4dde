//! Money and tokens: usage as providers report it, its price, and the worst-case estimates
//! that budgets and token rate limits reserve before a request is sent.
//!
//! Amounts are integer nano-dollars (`Nanos`) so ledgers can add and compare them exactly;
//! u64 nano-dollars reach 18 billion USD.

use serde_json::Value;

use crate::api::ChatRequest;
use crate::config::Price;

/// USD × 10⁹.
pub type Nanos = u64;

pub fn nanos(usd: f64) -> Nanos {
    (usd.max(0.0) * 1e9).round() as Nanos
}

pub fn usd(n: Nanos) -> f64 {
    n as f64 / 1e9
}

/// Tokens of one completion, as the provider reported them (OpenAI's `usage` shape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub prompt: u64,
    pub cached_prompt: u64,
    /// All completion tokens, reasoning ones included.
    pub completion: u64,
    pub reasoning: u64,
}

impl Usage {
    pub fn from_openai(usage: &Value) -> Usage {
        let count = |v: &Value| v.as_u64().unwrap_or(0);
        let prompt = count(&usage["prompt_tokens"]);
        let completion = count(&usage["completion_tokens"]);
        Usage {
            prompt,
            cached_prompt: count(&usage["prompt_tokens_details"]["cached_tokens"]).min(prompt),
            completion,
            reasoning: count(&usage["completion_tokens_details"]["reasoning_tokens"])
                .min(completion),
        }
    }

    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }
}

/// What `usage` costs at `price` (reasoning tokens are billed as output, as providers do).
pub fn cost(price: &Price, usage: &Usage) -> Nanos {
    let per_token = |per_1m: f64, n: u64| per_1m * n as f64 / 1e6;
    let fresh = usage.prompt - usage.cached_prompt;
    nanos(
        per_token(price.input_per_1m, fresh)
            + per_token(price.cached_input_per_1m, usage.cached_prompt)
            + per_token(price.output_per_1m, usage.completion),
    )
}

/// Upper estimate of the prompt's tokens without a tokenizer: English runs ~4 bytes per
/// token and code ~3, so bytes/3 plus a per-message overhead over-counts slightly, which is
/// the safe side for a reservation. It reads only message text, never re-serialises the body.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    let mut bytes = 0u64;
    let mut messages = 0u64;
    for message in request.messages() {
        messages += 1;
        bytes += json_text_bytes(message);
    }
    if let Some(tools) = request.body.get("tools") {
        bytes += json_text_bytes(tools);
    }
    bytes / 3 + 4 * messages + 3
}

fn json_text_bytes(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.len() as u64,
        Value::Array(a) => a.iter().map(json_text_bytes).sum(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| k.len() as u64 + json_text_bytes(v))
            .sum(),
        _ => 4,
    }
}

/// The output limit the client set (`max_completion_tokens` or `max_tokens`), if any.
pub fn requested_max_output(request: &ChatRequest) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.body.get(*k).and_then(Value::as_u64))
}

/// Worst case of one request: every prompt token uncached, every allowed output token used.
pub fn worst_case(price: &Price, prompt_tokens: u64, max_output: u64) -> Nanos {
    cost(
        price,
        &Usage {
            prompt: prompt_tokens,
            cached_prompt: 0,
            completion: max_output,
            reasoning: 0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn price() -> Price {
        Price {
            input_per_1m: 1.0,
            output_per_1m: 4.0,
            cached_input_per_1m: 0.5,
        }
    }

    #[test]
    fn cost_counts_cached_input_and_reasoning_as_output() {
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": 1000,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens": 500,
            "completion_tokens_details": {"reasoning_tokens": 300}
        }));
        assert_eq!(usage.reasoning, 300);
        // 600 * 1 + 400 * 0.5 + 500 * 4 = 2800 USD per 1M -> 0.0028 USD
        assert_eq!(cost(&price(), &usage), 2_800_000);
    }

    #[test]
    fn malformed_usage_counts_nothing_and_caps_details() {
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": "many",
            "completion_tokens": 10,
            "completion_tokens_details": {"reasoning_tokens": 99}
        }));
        assert_eq!(usage.prompt, 0);
        assert_eq!(usage.reasoning, 10);
    }

    #[test]
    fn prompt_estimate_over_counts_plain_english() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let body = json!({"model": "auto", "messages": [{"role": "user", "content": text}]});
        let request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        // ~200 real tokens (10 per sentence); the estimate must not be below it.
        let estimate = estimate_prompt_tokens(&request);
        assert!((200..400).contains(&estimate), "{estimate}");
        assert_eq!(requested_max_output(&request), None);
    }

    #[test]
    fn worst_case_uses_the_output_limit() {
        let body = json!({"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
        let request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(requested_max_output(&request), Some(100));
        assert_eq!(worst_case(&price(), 1000, 100), nanos(0.0014));
    }
}
