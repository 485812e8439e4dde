use serde_json::{json, Value};

use super::*;
use crate::sse::SseParser;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/messages/",
            $name
        ))
    };
}

/// Runs a recorded chat stream through `SseParser` (in awkward 7-byte pieces) and the
/// translator, then ends the body; returns the Anthropic bytes.
fn run(chat_sse: &str) -> String {
    let mut parser = SseParser::new(64 * 1024);
    let mut tr = EventTranslator::new();
    let mut out = Vec::new();
    for piece in chat_sse.as_bytes().chunks(7) {
        parser.push(piece);
        while let Some(event) = parser.next_event().unwrap() {
            tr.on_data(&event.data, &mut out);
        }
    }
    tr.on_end(&mut out);
    String::from_utf8(out).unwrap()
}

/// The (event name, data) pairs of Anthropic SSE text, checking every event is named by its
/// own `type` as Anthropic's are.
fn events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let (name, data) = e
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {e:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

fn assert_fixture(actual: &str, expected: &str) {
    assert_eq!(actual, expected, "actual output:\n{actual}");
    events(actual);
}

#[test]
fn a_text_stream_becomes_anthropics_event_sequence() {
    assert_fixture(
        &run(fixture!("stream_text.chat.sse")),
        fixture!("stream_text.anthropic.sse"),
    );
}

#[test]
fn tool_calls_stream_as_tool_use_blocks_with_input_json_deltas() {
    assert_fixture(
        &run(fixture!("stream_tool.chat.sse")),
        fixture!("stream_tool.anthropic.sse"),
    );
}

#[test]
fn reasoning_streams_as_a_thinking_block_before_the_text() {
    assert_fixture(
        &run(fixture!("stream_reasoning.chat.sse")),
        fixture!("stream_reasoning.anthropic.sse"),
    );
}

#[test]
fn a_mid_stream_failure_is_one_anthropic_error_event() {
    let out = run(fixture!("stream_error.chat.sse"));
    assert_fixture(&out, fixture!("stream_error.anthropic.sse"));
    let names: Vec<_> = events(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.last().map(String::as_str), Some("error"));
    assert_eq!(names.iter().filter(|n| *n == "error").count(), 1);
}

#[test]
fn a_stream_cut_without_done_ends_with_an_error_event() {
    let out = run("data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
    let last = events(&out).pop().unwrap();
    assert_eq!(last.0, "error");
    assert_eq!(last.1["error"]["type"], "api_error");
    // Garbage from upstream is an error too, and nothing follows it.
    let mut tr = EventTranslator::new();
    let mut out = Vec::new();
    tr.on_data("{not json", &mut out);
    tr.on_data("[DONE]", &mut out);
    tr.on_end(&mut out);
    let names: Vec<_> = events(std::str::from_utf8(&out).unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["error"]);
    assert!(tr.finished());
}

#[test]
fn keep_alives_become_pings_and_stop_after_the_end() {
    let mut tr = EventTranslator::new();
    let mut out = Vec::new();
    tr.ping(&mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );
    tr.on_data(
        r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"x"}}]}"#,
        &mut out,
    );
    tr.on_data("[DONE]", &mut out);
    let len = out.len();
    tr.ping(&mut out);
    tr.on_end(&mut out);
    assert_eq!(out.len(), len, "nothing after message_stop");
}

#[test]
fn a_stream_without_usage_reports_zero_output_tokens() {
    let out = run("data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n");
    let delta = events(&out)
        .into_iter()
        .find(|(n, _)| n == "message_delta")
        .unwrap()
        .1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"], json!({"output_tokens": 0}));
}
