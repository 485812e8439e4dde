//! Errors in Anthropic's shape, for `/v1/messages`: `{"type":"error","error":{"type",
//! "message"}}` with Anthropic's error type for the HTTP status, which the Anthropic SDKs
//! turn into their exception classes (by status) and show (by type and message).

use http::StatusCode;
use serde_json::{json, Value};

/// Anthropic's `error.type` for an HTTP status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        408 | 504 => "timeout_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

/// The error body for `status` with `message`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// An OpenAI-shaped error body (what every other layer of the gateway writes) re-rendered in
/// Anthropic's shape; a body that is not one keeps only the status's meaning.
pub fn from_openai_body(status: StatusCode, body: &[u8]) -> Value {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("Request failed")
                .to_string()
        });
    error_body(status, &message)
}

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
    use crate::error::GatewayError;

    #[test]
    fn gateway_errors_get_anthropics_types() {
        let cases = [
            (GatewayError::InvalidApiKey, "authentication_error"),
            (GatewayError::invalid("bad", None), "invalid_request_error"),
            (
                GatewayError::ModelNotFound { model: "x".into() },
                "not_found_error",
            ),
            (
                GatewayError::PayloadTooLarge { limit_bytes: 1 },
                "request_too_large",
            ),
            (GatewayError::Overloaded, "overloaded_error"),
            (GatewayError::BodyTimeout { after_ms: 1 }, "timeout_error"),
            (GatewayError::Internal("x".into()), "api_error"),
        ];
        for (error, kind) in cases {
            let status = error.status();
            let body = serde_json::to_vec(&error.to_json()).unwrap();
            let v = from_openai_body(status, &body);
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{error}");
            assert_eq!(v["error"]["message"], error.to_string());
        }
        let v = from_openai_body(StatusCode::TOO_MANY_REQUESTS, b"not json");
        assert_eq!(
            v["error"],
            json!({"type": "rate_limit_error", "message": "Too Many Requests"})
        );
    }

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
