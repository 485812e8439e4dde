//! Property tests (proptest, stable Rust, part of `cargo test`): every parser and every piece
//! of money arithmetic that takes input from a client, a provider or a config file is run on
//! generated input. None may panic, and the invariants that keep budgets honest hold:
//! spend plus holds never pass a limit, holds always return to zero, costs never shrink when
//! tokens grow, and an SSE stream split anywhere parses to the events that were sent.

use std::sync::Arc;

use deliberate::api::ChatRequest;
use deliberate::config::{Budget, OnLimit, Price};
use deliberate::cost::{
    cost, estimate_prompt_tokens, nanos, requested_max_output, worst_case, Nanos, Usage,
};
use deliberate::limits::{Bucket, Clock, Ledger, Period, Refusal};
use deliberate::sse::{SseError, SseEvent, SseParser};
use deliberate::upstream::providers::anthropic::to_anthropic_request;
use deliberate::upstream::providers::anthropic::StreamTranslator;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, nested a few levels, with numbers at the edges (huge, negative, fractional).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("tool"),
            Just("text"),
            Just("image_url"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names the gateway reads, mixed with arbitrary ones.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "model",
            "messages",
            "role",
            "content",
            "type",
            "text",
            "max_tokens",
            "max_completion_tokens",
            "stream",
            "stream_options",
            "include_usage",
            "tools",
            "tool_calls",
            "tool_choice",
            "function",
            "name",
            "arguments",
            "n",
            "stop",
            "reasoning_effort",
            "response_format",
            "image_url",
            "url",
            "tool_call_id",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
    ]
}

/// A chat request body: an object with a `messages` array of message-like objects.
fn chat_body() -> impl Strategy<Value = Value> {
    let message = (
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "developer",
            "tool",
            "x",
        ]),
        json_value(),
        prop::collection::vec((field_name(), json_value()), 0..3),
    )
        .prop_map(|(role, content, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("role".into(), json!(role));
            m.insert("content".into(), content);
            Value::Object(m)
        });
    (
        prop::collection::vec(message, 0..6),
        prop::collection::vec((field_name(), json_value()), 0..5),
    )
        .prop_map(|(messages, extra)| {
            let mut body: Map<String, Value> = extra.into_iter().collect();
            body.insert("model".into(), json!("auto"));
            body.insert("messages".into(), Value::Array(messages));
            Value::Object(body)
        })
}

fn price() -> impl Strategy<Value = Price> {
    (0.0..1e6f64, 0.0..1e6f64, 0.0..1e6f64).prop_map(|(i, o, c)| Price {
        input_per_1m: i,
        output_per_1m: o,
        cached_input_per_1m: c,
    })
}

fn usage() -> impl Strategy<Value = Usage> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(p, c, o, r)| Usage {
        prompt: p,
        cached_prompt: c.min(p),
        completion: o,
        reasoning: r.min(o),
    })
}

/// A token count: mostly ordinary, sometimes at the edge of u64.
fn tokens() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..1_000_000u64, 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_request_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ChatRequest::parse(&bytes);
    }

    #[test]
    fn a_parsed_request_can_be_estimated_and_limited(body in chat_body()) {
        if let Ok(request) = ChatRequest::parse(body.to_string().as_bytes()) {
            prop_assert!(!request.messages().is_empty());
            let estimate = estimate_prompt_tokens(&request);
            // The estimate counts at least the fixed per-request overhead.
            prop_assert!(estimate >= 3);
            if let Ok(Some(limit)) = requested_max_output(&request) {
                let field = ["max_completion_tokens", "max_tokens"]
                    .into_iter()
                    .find(|f| request.body.get(*f).is_some_and(|v| !v.is_null()))
                    .unwrap();
                prop_assert_eq!(request.body[field].as_u64(), Some(limit));
            }
        }
    }

    #[test]
    fn the_anthropic_request_translator_never_panics(body in chat_body(), default_max in 0u32..100_000) {
        let map = body.as_object().unwrap().clone();
        if let Ok(translated) = to_anthropic_request(&map, "claude-x", default_max) {
            let max_tokens = translated.body["max_tokens"].as_u64().unwrap();
            prop_assert!(max_tokens >= 1);
            prop_assert!(!translated.body["messages"].as_array().unwrap().is_empty());
        }
    }

    #[test]
    fn the_anthropic_stream_translator_never_panics(
        events in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "message_start", "content_block_start", "content_block_delta",
                    "content_block_stop", "message_delta", "message_stop", "ping", "error", "x",
                ]),
                prop::collection::vec((field_name(), json_value()), 0..4),
            ),
            0..12,
        ),
        include_usage in any::<bool>(),
    ) {
        let mut translator = StreamTranslator::new("m", 1, include_usage);
        for (kind, fields) in events {
            let mut data: Map<String, Value> = fields.into_iter().collect();
            data.insert("type".into(), json!(kind));
            let event = SseEvent { event: Some(kind.into()), data: Value::Object(data).to_string() };
            if translator.on_event(&event).is_err() {
                break;
            }
        }
        let _ = translator.usage();
    }

    #[test]
    fn an_sse_stream_split_anywhere_yields_the_events_sent(
        events in prop::collection::vec(("[a-z]{0,8}", "[^\r\n]{0,60}"), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut wire = String::new();
        for (kind, data) in &events {
            if !kind.is_empty() {
                wire.push_str(&format!("event: {kind}{eol}"));
            }
            wire.push_str(&format!("data: {data}{eol}{eol}"));
        }
        let bytes = wire.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let mut parser = SseParser::new(1 << 16);
        let mut got = Vec::new();
        for pair in points.windows(2) {
            parser.push(&bytes[pair[0]..pair[1]]);
            while let Some(event) = parser.next_event().unwrap() {
                got.push(event);
            }
        }
        let want: Vec<SseEvent> = events
            .iter()
            .map(|(kind, data)| SseEvent {
                event: (!kind.is_empty()).then(|| kind.clone()),
                // A single leading space after the colon is not part of the data.
                data: data.clone(),
            })
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn the_sse_parser_bounds_every_event_and_never_panics(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..10),
        limit in 1usize..256,
    ) {
        let mut parser = SseParser::new(limit);
        'feed: for chunk in chunks {
            parser.push(&chunk);
            loop {
                match parser.next_event() {
                    Ok(Some(event)) => {
                        prop_assert!(event.data.len() <= limit, "{} > {limit}", event.data.len());
                    }
                    Ok(None) => break,
                    Err(SseError::EventTooLarge | SseError::InvalidUtf8) => break 'feed,
                }
            }
        }
    }

    #[test]
    fn config_loading_reports_problems_and_never_panics(
        lines in prop::collection::vec(config_line(), 0..12),
        tenant_lines in prop::collection::vec(config_line(), 0..6),
    ) {
        let config = format!("[providers.s]\nkind = \"simulated\"\n[models.f]\nprovider = \"s\"\ntier = \"fast\"\n[models.r]\nprovider = \"s\"\ntier = \"reasoning\"\n{}", lines.join("\n"));
        let tenant = format!("fast_model = \"f\"\nreasoning_model = \"r\"\n{}", tenant_lines.join("\n"));
        match deliberate::config::load_texts(&config, &[("t.toml", &tenant)]) {
            Ok(_) => {}
            Err(problems) => prop_assert!(!problems.0.is_empty()),
        }
    }

    #[test]
    fn costs_never_panic_and_never_shrink_when_tokens_grow(
        price in price(), usage in usage(), more in tokens(),
    ) {
        let base = cost(&price, &usage);
        let grown = Usage { completion: usage.completion.saturating_add(more), ..usage };
        prop_assert!(cost(&price, &grown) >= base);
        let prompt_grown = Usage { prompt: usage.prompt.saturating_add(more), ..usage };
        prop_assert!(cost(&price, &prompt_grown) >= base);
        prop_assert!(worst_case(&price, usage.prompt, usage.completion) >= cost(&price, &usage));
    }

    #[test]
    fn concurrent_holds_never_let_spend_pass_the_budget(
        daily in 0.0001..10.0f64,
        ops in prop::collection::vec((tokens(), 0.0..=1.0f64, 0u8..3), 1..40),
        price in price(),
    ) {
        let (clock, _) = Clock::settable(20_785 * 86_400);
        let ledger = Arc::new(Ledger::with_clock(clock));
        let budget = Budget {
            daily_usd: Some(daily),
            monthly_usd: Some(daily * 20.0),
            per_request_usd: None,
            soft_limit: 0.8,
            soft_reasoning_threshold: 0.95,
            on_limit: OnLimit::Reject,
            default_max_tokens: 4096,
        };
        let now = Period::of_day(20_785);
        let limit = nanos(daily);
        let mut open = Vec::new();
        for (max_output, used, action) in ops {
            let worst: Nanos = worst_case(&price, 10, max_output);
            match ledger.reserve(&budget, worst, now) {
                Ok(hold) => open.push((hold, used)),
                Err(refusal) => prop_assert!(matches!(refusal, Refusal::Daily | Refusal::Monthly)),
            }
            // Settle or drop one of the open holds now and then; the provider used at most
            // what was reserved.
            if action > 0 && !open.is_empty() {
                let (hold, used) = open.remove(0);
                if action == 1 {
                    let actual = (hold.amount() as f64 * used) as Nanos;
                    prop_assert!(actual <= hold.amount());
                    hold.settle(actual);
                } else {
                    drop(hold);
                }
            }
            let s = ledger.snapshot(now);
            prop_assert!(s.spent_day.saturating_add(s.reserved) <= limit,
                "spent {} + held {} > limit {limit}", s.spent_day, s.reserved);
        }
        drop(open);
        let s = ledger.snapshot(now);
        prop_assert_eq!(s.reserved, 0);
        prop_assert_eq!(s.requests_in_flight, 0);
        prop_assert!(s.spent_day <= limit);
    }

    #[test]
    fn token_buckets_survive_any_takes_and_reconciliations(
        per_minute in 1u32..5_000_000,
        ops in prop::collection::vec((tokens(), tokens(), any::<bool>()), 1..30),
    ) {
        let now = tokio::time::Instant::now();
        let bucket = Bucket::per_minute(per_minute, now);
        for (wanted, actual, take) in ops {
            if take {
                if let Ok(status) = bucket.take(wanted, now) {
                    prop_assert!(status.remaining <= u64::from(per_minute));
                }
            } else {
                bucket.reconcile(wanted, actual, now);
            }
            let status = bucket.status(now);
            prop_assert!(status.remaining <= u64::from(per_minute));
        }
    }
}

/// A line of TOML that may or may not belong in a config: sections and keys the loader knows,
/// values of every type and at the edges of every range.
fn config_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "[server]",
        "[budget]",
        "[rate_limits]",
        "[tiers.fast]",
        "[cache]",
        "[auto]",
        "listen",
        "max_request_body_bytes",
        "max_in_flight_requests",
        "shutdown_grace_ms",
        "daily_usd",
        "monthly_usd",
        "per_request_usd",
        "soft_limit",
        "on_limit",
        "default_max_tokens",
        "requests_per_minute",
        "tokens_per_minute",
        "first_token_timeout_ms",
        "total_timeout_ms",
        "max_bytes",
        "reasoning_threshold",
        "default_tier",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        Just("inf".to_string()),
        Just("nan".to_string()),
        Just("-0.0".to_string()),
        Just("18446744073709551615".to_string()),
        "\"[a-z0-9.:]{0,12}\"",
        Just("true".to_string()),
        Just("[1, \"x\"]".to_string()),
    ];
    (key, value).prop_map(|(k, v)| {
        if k.starts_with('[') {
            k.to_string()
        } else {
            format!("{k} = {v}")
        }
    })
}
