//! The Anthropic error of a `/v1/messages` stream that failed after its 200 (the `error`
//! event). Error responses are re-rendered in Anthropic's shape, with its status->type
//! mapping, by `layers::error_shape`.

use serde_json::Value;

/// The Anthropic error type and message for the OpenAI-shaped `error` object of a stream
/// that failed after its 200 (the gateway's final error event).
pub fn stream_error(error: &Value) -> (&'static str, String) {
    let kind = match error["type"].as_str() {
        Some("timeout_error") => "timeout_error",
        Some("overloaded_error") => "overloaded_error",
        Some("rate_limit_error") => "rate_limit_error",
        Some("invalid_request_error") => "invalid_request_error",
        _ => "api_error",
    };
    let message = error["message"]
        .as_str()
        .unwrap_or("the stream failed")
        .to_string();
    (kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mid_stream_failure_keeps_its_kind() {
        let (kind, message) =
            stream_error(&json!({"message": "idle timeout", "type": "timeout_error"}));
        assert_eq!((kind, message.as_str()), ("timeout_error", "idle timeout"));
        assert_eq!(
            stream_error(&json!({"type": "upstream_error"})).0,
            "api_error"
        );
    }
}
