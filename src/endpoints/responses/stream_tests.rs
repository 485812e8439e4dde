//! Tests of `stream.rs`.

use super::*;

/// The events written for `chunks` (chat `data:` payloads), as (type, json) pairs.
pub fn events(chunks: &[Value], end: &str) -> Vec<(String, Value)> {
    let mut w = EventWriter::new(Arc::new(Echo::new()), "m".into());
    let mut out = Vec::new();
    w.start(&mut out);
    for c in chunks {
        w.on_data(&mut out, &c.to_string());
    }
    if end == "[DONE]" {
        w.on_data(&mut out, end);
    }
    let mut parser = SseParser::new(1 << 20);
    parser.push(&out);
    let mut events = Vec::new();
    while let Ok(Some(e)) = parser.next_event() {
        events.push((e.event.unwrap(), serde_json::from_str(&e.data).unwrap()));
    }
    events
}

fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

#[test]
fn text_chunks_make_the_message_event_sequence_with_usage_at_the_end() {
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ];
    let events = events(&chunks, "[DONE]");
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let (_, done) = &events[9];
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["response"]["usage"]["total_tokens"], 5);
    let numbers: Vec<u64> = events
        .iter()
        .map(|(_, e)| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
}

#[test]
fn tool_call_chunks_make_function_call_items() {
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
            "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "{\"city\":"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "\"Paris\"}"}}]}, "finish_reason": "tool_calls"}]}),
    ];
    let events = events(&chunks, "[DONE]");
    assert_eq!(
        types(&events)[2..],
        [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let item = &events[6].1["item"];
    assert_eq!(item["call_id"], "call_1");
    assert_eq!(item["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(item["status"], "completed");
}

#[test]
fn an_error_event_ends_with_one_failed_event() {
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json!({"error": {"message": "upstream timed out", "code": "upstream_timeout"}}),
        json!({"choices": [{"index": 0, "delta": {"content": "ignored"}}]}),
    ];
    let events = events(&chunks, "");
    let last = events.last().unwrap();
    assert_eq!(last.0, "response.failed");
    assert_eq!(last.1["response"]["status"], "failed");
    assert_eq!(last.1["response"]["error"]["code"], "upstream_timeout");
    assert_eq!(
        types(&events)
            .iter()
            .filter(|t| t.starts_with("response.failed"))
            .count(),
        1
    );
}
