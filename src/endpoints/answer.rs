//! The shared half of every non-chat endpoint's response adapter: how a chat answer is taken
//! apart (status, streamed or whole, the serving model) and put back together in the
//! endpoint's shape, and when a stored answer counts as complete. Each endpoint supplies only
//! its own conversion (`responses`, `messages`).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::facts::Served;

/// Largest chat answer converted whole (the upstream's own bound is of the same order).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The whole chat answer, bounded. (Read frame by frame: rustc cannot prove the future of
/// `Limited::collect` on the boxed body `Send` here.)
async fn read_answer(mut body: Body) -> Result<Vec<u8>, GatewayError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| GatewayError::Internal(format!("could not read the chat answer: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len().saturating_add(data.len()) > MAX_ANSWER_BYTES {
                return Err(GatewayError::Internal(
                    "the chat answer is over the size limit".into(),
                ));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// The chat answer in an endpoint's shape: a 200 stream wrapped by `wrap_stream` (frame by
/// frame), a 200 JSON completion converted whole by `convert`; anything else passes
/// unchanged (errors are shaped by the error-shape layer). Both get the serving model's
/// name, or `default_model` for an answer with no `Served` fact.
pub async fn adapt_answer(
    response: Response<Body>,
    default_model: impl FnOnce() -> String,
    wrap_stream: impl FnOnce(Body, String) -> Body,
    convert: impl FnOnce(&Value, String) -> Result<Value, GatewayError>,
) -> Result<Response<Body>, GatewayError> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    let model = response
        .extensions()
        .get::<Served>()
        .map_or_else(default_model, |s| s.model.name.to_string());
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if is_stream {
        return Ok(Response::from_parts(parts, wrap_stream(body, model)));
    }
    let bytes = read_answer(body).await?;
    let completion: Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::Internal(format!("the chat answer is not JSON: {e}")))?;
    let converted = convert(&completion, model)?;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = Bytes::from(serde_json::to_vec(&converted).unwrap_or_default());
    Ok(Response::from_parts(parts, full(bytes)))
}

/// True for a complete stored answer: a stream that sent `done_event` and never
/// `failed_event`, or JSON that `whole_ok` accepts.
pub fn clean_answer(
    stream: bool,
    bytes: &[u8],
    done_event: &str,
    failed_event: &str,
    whole_ok: impl FnOnce(&Value) -> bool,
) -> bool {
    if stream {
        let has = |name: &str| {
            let needle = format!("event: {name}\n");
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        };
        has(done_event) && !has(failed_event)
    } else {
        serde_json::from_slice::<Value>(bytes).is_ok_and(|v| whole_ok(&v))
    }
}
