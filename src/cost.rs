//! Money and tokens: usage as providers report it, its price, and the worst-case estimates
//! that budgets and token rate limits reserve before a request is sent.
//!
//! Amounts are integer nano-dollars (`Nanos`) so ledgers can add and compare them exactly;
//! u64 nano-dollars reach 18 billion USD.
//!
//! Every count here comes from a client (`max_tokens`, message text) or a provider (`usage`),
//! so nothing may wrap: sums saturate at `u64::MAX`, which a budget then refuses, and money
//! computed in f64 is converted back failing closed (an impossible amount is the largest one,
//! never zero). `clippy::arithmetic_side_effects` holds this module to it.
#![deny(clippy::arithmetic_side_effects)]

use serde_json::Value;

use crate::api::ChatRequest;
use crate::config::Price;
use crate::error::GatewayError;

/// USD × 10⁹.
pub type Nanos = u64;

/// USD as nano-dollars: negative is 0, beyond u64 (or NaN, never a configured amount) is
/// `u64::MAX`, so a cost that cannot be computed can never pass as free.
pub fn nanos(usd: f64) -> Nanos {
    if usd.is_nan() {
        return Nanos::MAX;
    }
    // `as` saturates at both ends for finite and infinite floats.
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
        let count = |v: &Value| token_count(v).unwrap_or(0);
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
        self.prompt.saturating_add(self.completion)
    }

    /// OpenAI's `usage` object for these counts.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.total(),
            "prompt_tokens_details": {"cached_tokens": self.cached_prompt},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        })
    }
}

/// A token count as JSON may carry it: a non-negative integer, or a float with no fraction
/// (`1e17`, `100.0`), saturating at `u64::MAX`. Anything else is not a count.
pub fn token_count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // `as` saturates: 1e30 is u64::MAX, not a wrapped small number.
    (f >= 0.0 && f.fract() == 0.0).then_some(f as u64)
}

/// What `usage` costs at `price` (reasoning tokens are billed as output, as providers do).
pub fn cost(price: &Price, usage: &Usage) -> Nanos {
    let per_token = |per_1m: f64, n: u64| per_1m * n as f64 / 1e6;
    let fresh = usage.prompt.saturating_sub(usage.cached_prompt);
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
        messages = messages.saturating_add(1);
        bytes = bytes.saturating_add(json_text_bytes(message));
    }
    if let Some(tools) = request.body.get("tools") {
        bytes = bytes.saturating_add(json_text_bytes(tools));
    }
    (bytes / 3)
        .saturating_add(messages.saturating_mul(4))
        .saturating_add(3)
}

fn json_text_bytes(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.len() as u64,
        Value::Array(a) => a
            .iter()
            .fold(0, |sum: u64, v| sum.saturating_add(json_text_bytes(v))),
        Value::Object(o) => o.iter().fold(0, |sum: u64, (k, v)| {
            sum.saturating_add(k.len() as u64)
                .saturating_add(json_text_bytes(v))
        }),
        _ => 4,
    }
}

/// The output-limit fields a client may set, in the order they win.
pub const MAX_OUTPUT_FIELDS: [&str; 2] = ["max_completion_tokens", "max_tokens"];

/// The output limit the client set (`max_completion_tokens` or `max_tokens`), if any.
/// A value that is not a token count (negative, fractional, a string) is a 400: guessing
/// would either refuse a valid request or reserve nothing for an unbounded one.
pub fn requested_max_output(request: &ChatRequest) -> Result<Option<u64>, GatewayError> {
    for field in MAX_OUTPUT_FIELDS {
        match request.body.get(field) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                // Integers only, as OpenAI has it (`1e17` is a float there, and a 400).
                return match v.as_u64() {
                    Some(n) => Ok(Some(n)),
                    None => Err(GatewayError::invalid(
                        format!("Invalid `{field}`: expected a non-negative integer."),
                        Some(field.into()),
                    )),
                };
            }
        }
    }
    Ok(None)
}

/// The output limit a request may use on a model that declares `model_limit`: what the
/// client asked, never more than the model can produce.
pub fn output_limit(requested: u64, model_limit: Option<u64>) -> u64 {
    model_limit.map_or(requested, |m| requested.min(m))
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
        assert_eq!(requested_max_output(&request).unwrap(), None);
    }

    #[test]
    fn worst_case_uses_the_output_limit() {
        let body = json!({"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
        let request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(requested_max_output(&request).unwrap(), Some(100));
        assert_eq!(worst_case(&price(), 1000, 100), nanos(0.0014));
    }

    /// The output limit of a parsed request whose `max_tokens` is then set to `max_tokens`
    /// (the parser refuses non-integers first; this checks the limit's own rule too).
    fn max_output_of(max_tokens: Value) -> Result<Option<u64>, GatewayError> {
        let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
        let mut request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        request.body.insert("max_tokens".into(), max_tokens);
        requested_max_output(&request)
    }

    #[test]
    fn huge_output_limits_saturate_and_make_the_worst_case_the_largest() {
        assert_eq!(
            max_output_of(json!(100_000_000_000_000_000u64)).unwrap(),
            Some(100_000_000_000_000_000)
        );
        assert_eq!(max_output_of(json!(u64::MAX)).unwrap(), Some(u64::MAX));
        assert_eq!(worst_case(&price(), u64::MAX, u64::MAX), Nanos::MAX);
        assert!(worst_case(&price(), 10, 100_000_000_000_000_000) > nanos(1000.0));
        assert_eq!(nanos(f64::INFINITY), Nanos::MAX);
        assert_eq!(nanos(f64::NAN), Nanos::MAX);
        assert_eq!(nanos(-3.0), 0);
    }

    #[test]
    fn output_limits_that_are_not_counts_are_refused_with_the_field_named() {
        for bad in [
            json!(-1),
            json!(12.5),
            json!(1e17),
            json!("100"),
            json!(true),
            json!([1]),
        ] {
            let err = max_output_of(bad.clone()).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(err.to_string().contains("max_tokens"), "{bad}: {err}");
        }
        assert_eq!(max_output_of(Value::Null).unwrap(), None);
    }

    #[test]
    fn usage_counts_saturate_and_never_wrap() {
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": u64::MAX,
            "completion_tokens": 1e30,
            "prompt_tokens_details": {"cached_tokens": -5}
        }));
        assert_eq!(
            (usage.prompt, usage.completion, usage.cached_prompt),
            (u64::MAX, u64::MAX, 0)
        );
        assert_eq!(usage.total(), u64::MAX);
        assert_eq!(cost(&price(), &usage), Nanos::MAX);
        assert_eq!(output_limit(u64::MAX, Some(16_384)), 16_384);
        assert_eq!(output_limit(100, Some(16_384)), 100);
        assert_eq!(output_limit(100, None), 100);
    }
}
