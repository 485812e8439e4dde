//! The one error type of the request path, and its mapping to OpenAI-shaped error bodies.
//!
//! Every failure on the request path becomes a `GatewayError`; the error layer (see `app.rs`)
//! turns it into a response with the right status and a body of the shape
//! `{"error":{"message","type","param","code"}}` that OpenAI SDKs parse into their own
//! exception classes. `kind()` is the low-cardinality label used in metrics.
//! Messages never contain secrets (keys, prompts): they are written for the API caller.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, Body};

/// Which of a call's deadlines passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    Connect,
    FirstToken,
    /// The gap between two stream chunks.
    Idle,
    Total,
}

impl TimeoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::FirstToken => "first-token",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Total => "total",
        }
    }
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a provider call failed without a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made.
    Connect,
    /// The request failed before any answer came.
    NoAnswer,
    /// The answer's body failed after its head.
    Body,
    /// A stream broke or ended before its end marker.
    Stream,
    /// No deployment of the model may be called now (breakers open, Retry-After pending).
    NoDeployment,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed or asks for something the target model cannot do.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("Incorrect API key provided. Check the `Authorization: Bearer` header.")]
    InvalidApiKey,
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound { model: String },
    #[error("Unknown endpoint {method} {path}.")]
    UnknownEndpoint { method: String, path: String },
    #[error("Method {method} is not allowed on {path}; use {allow}.")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("Request body is larger than the limit of {limit_bytes} bytes.")]
    PayloadTooLarge { limit_bytes: usize },
    /// The client did not send its whole body within `server.body_read_timeout_ms`.
    #[error("The request body did not arrive within {after_ms} ms.")]
    BodyTimeout { after_ms: u64 },
    #[error("The gateway is at its in-flight request limit; retry shortly.")]
    Overloaded,
    #[error("The gateway is shutting down; retry on another replica.")]
    ShuttingDown,
    /// The provider answered with an error status.
    #[error("Upstream provider `{provider}` returned {status}: {message}")]
    UpstreamStatus {
        provider: String,
        status: u16,
        /// Redacted where it is built (`upstream::redact`): never the provider's raw text.
        message: String,
        /// The request field the provider named (OpenAI's `error.param`), passed on for a 400.
        param: Option<String>,
        /// The provider's `Retry-After` (seconds), honoured by the retry loop.
        retry_after_secs: Option<u64>,
    },
    /// The provider could not be reached or broke the connection before answering.
    #[error("Upstream provider `{provider}` is unreachable: {message}")]
    UpstreamUnavailable {
        provider: String,
        /// What failed: decides whether the call may be retried.
        kind: FailureKind,
        message: String,
    },
    /// The provider answered, but with something we cannot understand.
    #[error("Upstream provider `{provider}` sent an invalid response: {message}")]
    UpstreamInvalid { provider: String, message: String },
    #[error("Upstream provider `{provider}` timed out ({which} timeout of {after_ms} ms).")]
    UpstreamTimeout {
        provider: String,
        which: TimeoutKind,
        after_ms: u64,
    },
    #[error("Provider `{provider}` has no API key: environment variable `{env}` is not set.")]
    ProviderKeyMissing { provider: String, env: String },
    /// The tenant's daily or monthly budget cannot cover this request.
    #[error("The tenant's {which} is used up ({detail}); it resets in {retry_after_secs} s.")]
    BudgetExceeded {
        which: &'static str,
        detail: String,
        retry_after_secs: u64,
    },
    /// Even the cheapest allowed answer would cost more than the per-request cap.
    #[error("This request could cost up to {} USD, above the tenant's per-request cap of {} USD; lower `max_tokens` or shorten the prompt.", usd(*worst_usd), usd(*cap_usd))]
    RequestCostCap { worst_usd: f64, cap_usd: f64 },
    /// A tenant rate limit; `headers` are the `x-ratelimit-*` values at refusal.
    #[error("Rate limit reached for {limit} per minute (limit {limit_value}); retry in {retry_after_secs} s.")]
    RateLimited {
        limit: &'static str,
        limit_value: u64,
        retry_after_secs: u64,
        headers: Vec<(&'static str, String)>,
    },
    #[error("Internal gateway error: {0}")]
    Internal(String),
}

/// The longest model name an error repeats: a client may send any string up to the body
/// limit, and an error is no place to echo it whole.
const MAX_SHOWN_MODEL_CHARS: usize = 200;

impl GatewayError {
    /// `model` (as the client sent it, cut to `MAX_SHOWN_MODEL_CHARS`) is not one the tenant
    /// may use.
    pub fn model_not_found(model: &str) -> Self {
        GatewayError::ModelNotFound {
            model: model.chars().take(MAX_SHOWN_MODEL_CHARS).collect(),
        }
    }

    pub fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: param.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            GatewayError::ModelNotFound { .. } | GatewayError::UnknownEndpoint { .. } => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Overloaded | GatewayError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // A provider's rate limit is the caller's rate limit: keep 429 so SDKs back off.
            GatewayError::UpstreamStatus { status: 429, .. }
            | GatewayError::BudgetExceeded { .. }
            | GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::RequestCostCap { .. } => StatusCode::BAD_REQUEST,
            // A provider's 400 is about the request the caller sent.
            GatewayError::UpstreamStatus { status: 400, .. } => StatusCode::BAD_REQUEST,
            GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamUnavailable { .. }
            | GatewayError::UpstreamInvalid { .. }
            | GatewayError::ProviderKeyMissing { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type` field.
    pub fn error_type(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => match self {
                GatewayError::BudgetExceeded { .. } => "insufficient_quota",
                _ => "rate_limit_error",
            },
            s if s.is_client_error() => "invalid_request_error",
            _ => match self {
                GatewayError::UpstreamTimeout { .. } => "timeout_error",
                GatewayError::Overloaded | GatewayError::ShuttingDown => "overloaded_error",
                GatewayError::Internal(_) => "server_error",
                _ => "upstream_error",
            },
        }
    }

    /// Whose failure this is, for error ratios that page only on the gateway's and the
    /// providers' failures: a storm of wrong keys or budget refusals is the clients' business.
    pub fn fault(&self) -> Fault {
        match self {
            // The provider throttles the gateway's key: the tenant did nothing wrong.
            GatewayError::UpstreamStatus { status: 429, .. } => Fault::Server,
            _ if self.status().is_server_error() => Fault::Server,
            _ => Fault::Client,
        }
    }

    /// Low-cardinality label for metrics and OpenAI's `error.code` field.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::UnknownEndpoint { .. } => "unknown_url",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::BodyTimeout { .. } => "request_timeout",
            GatewayError::Overloaded => "overloaded",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::UpstreamStatus { .. } => "upstream_status",
            GatewayError::UpstreamUnavailable { .. } => "upstream_unavailable",
            GatewayError::UpstreamInvalid { .. } => "upstream_invalid",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::ProviderKeyMissing { .. } => "provider_key_missing",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::RequestCostCap { .. } => "request_cost_cap",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    /// The response extension (and stream failure record) the metrics label the outcome by.
    pub fn error_kind(&self) -> ErrorKind {
        ErrorKind(self.kind(), self.fault())
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound { .. } => Some("model"),
            GatewayError::UpstreamStatus { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// The OpenAI-shaped JSON error object, also used for the final SSE error event of a
    /// stream that fails after its 200 has gone out.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.kind(),
            }
        })
    }

    /// The response for this error, logged as the request's failure: at WARN when it is
    /// the gateway's or the provider's fault (5xx), at DEBUG when the request was refused.
    pub fn respond(self) -> Response<Body> {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, kind = self.kind(), "request failed");
        } else {
            tracing::debug!(error = %self, kind = self.kind(), "request rejected");
        }
        self.into_response()
    }

    pub fn into_response(self) -> Response<Body> {
        let bytes = Bytes::from(serde_json::to_vec(&self.to_json()).unwrap_or_default());
        let mut response = Response::new(full(bytes));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let GatewayError::MethodNotAllowed { allow, .. } = &self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if matches!(self, GatewayError::Overloaded | GatewayError::ShuttingDown) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        let retry_after = match &self {
            GatewayError::BudgetExceeded {
                retry_after_secs, ..
            }
            | GatewayError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            // The provider's own hint, passed on when its 429/503 reaches the client.
            GatewayError::UpstreamStatus {
                retry_after_secs: Some(secs),
                status: 429 | 503,
                ..
            } => Some(*secs),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let GatewayError::RateLimited { headers, .. } = &self {
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(value) {
                    response.headers_mut().insert(*name, v);
                }
            }
        }
        response.extensions_mut().insert(self.error_kind());
        response
    }
}

/// A USD amount for a message: cents for ordinary amounts, and enough decimals for two
/// significant digits below a cent, so a limit of 0.00005 reads "0.00005", not "0.00".
pub fn usd(amount: f64) -> String {
    if !amount.is_finite() || amount <= 0.0 || amount >= 0.01 {
        return format!("{amount:.2}");
    }
    // 0.00005 -> -log10 = 4.3 -> 6 decimals -> "0.000050" -> "0.00005".
    let decimals = ((-amount.log10()).ceil() as usize)
        .saturating_add(1)
        .clamp(3, 12);
    let text = format!("{amount:.decimals$}");
    text.trim_end_matches('0').to_string()
}

/// Put on error responses so the metrics layer can label the outcome: the error's `kind()`
/// and whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(pub &'static str, pub Fault);

/// Whose failure an error is (the `class` of `deliberate_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was refused: malformed, unauthenticated, unknown model, too large, too
    /// slow to arrive, over a budget or a rate limit, or rejected by the provider as invalid.
    Client,
    /// The gateway or a provider failed it: every 5xx (upstream errors and timeouts, load
    /// shedding, a missing provider key, an internal error) and a provider's own 429.
    Server,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: u16) -> GatewayError {
        GatewayError::UpstreamStatus {
            provider: "p".into(),
            status,
            message: "m".into(),
            param: None,
            retry_after_secs: None,
        }
    }

    #[test]
    fn refusals_are_the_clients_fault_and_failures_the_servers() {
        let client = [
            GatewayError::invalid("bad", None),
            GatewayError::InvalidApiKey,
            GatewayError::ModelNotFound { model: "m".into() },
            GatewayError::PayloadTooLarge { limit_bytes: 1 },
            GatewayError::BodyTimeout { after_ms: 1 },
            GatewayError::BudgetExceeded {
                which: "daily budget",
                detail: "d".into(),
                retry_after_secs: 1,
            },
            GatewayError::RequestCostCap {
                worst_usd: 2.0,
                cap_usd: 1.0,
            },
            GatewayError::RateLimited {
                limit: "requests",
                limit_value: 1,
                retry_after_secs: 1,
                headers: vec![],
            },
            upstream(400),
        ];
        for e in client {
            assert_eq!(e.fault(), Fault::Client, "{e:?}");
        }
        let server = [
            upstream(429),
            upstream(500),
            upstream(401),
            GatewayError::UpstreamTimeout {
                provider: "p".into(),
                which: TimeoutKind::FirstToken,
                after_ms: 1,
            },
            GatewayError::UpstreamUnavailable {
                provider: "p".into(),
                kind: FailureKind::Connect,
                message: "m".into(),
            },
            GatewayError::UpstreamInvalid {
                provider: "p".into(),
                message: "m".into(),
            },
            GatewayError::ProviderKeyMissing {
                provider: "p".into(),
                env: "E".into(),
            },
            GatewayError::Overloaded,
            GatewayError::Internal("x".into()),
        ];
        for e in server {
            assert_eq!(e.fault(), Fault::Server, "{e:?}");
        }
        let response = GatewayError::InvalidApiKey.into_response();
        assert_eq!(
            response.extensions().get::<ErrorKind>(),
            Some(&ErrorKind("invalid_api_key", Fault::Client))
        );
    }

    #[test]
    fn body_has_openai_shape() {
        let err = GatewayError::invalid("`messages` must not be empty", Some("messages".into()));
        let v = err.to_json();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn upstream_rate_limit_stays_429() {
        let err = GatewayError::UpstreamStatus {
            provider: "openai".into(),
            status: 429,
            message: "slow down".into(),
            param: None,
            retry_after_secs: None,
        };
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.error_type(), "rate_limit_error");
        assert!(!err
            .into_response()
            .headers()
            .contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn small_usd_amounts_keep_their_significant_digits() {
        assert_eq!(usd(0.00005), "0.00005");
        assert_eq!(usd(0.000123), "0.00012");
        assert_eq!(usd(0.005), "0.005");
        assert_eq!(usd(0.01), "0.01");
        assert_eq!(usd(12.5), "12.50");
        assert_eq!(usd(0.0), "0.00");
        let err = GatewayError::RequestCostCap {
            worst_usd: 0.00042,
            cap_usd: 0.0001,
        };
        assert!(err.to_string().contains("0.00042 USD"), "{err}");
        assert!(err.to_string().contains("cap of 0.0001 USD"), "{err}");
    }

    #[test]
    fn an_upstream_400_keeps_its_param() {
        let err = GatewayError::UpstreamStatus {
            provider: "openai".into(),
            status: 400,
            message: "bad value".into(),
            param: Some("temperature".into()),
            retry_after_secs: None,
        };
        assert_eq!(err.to_json()["error"]["param"], "temperature");
    }

    #[test]
    fn the_providers_retry_after_reaches_the_client() {
        let err = GatewayError::UpstreamStatus {
            provider: "openai".into(),
            status: 429,
            message: "slow down".into(),
            param: None,
            retry_after_secs: Some(7),
        };
        let response = err.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
