//! The `/v1/messages` hooks of the endpoints mechanism (`crate::endpoints`): the body parsed
//! and translated to the chat request at parse time, the chat answer turned back into an
//! Anthropic message (JSON whole, SSE frame by frame), and when an answer may be cached.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Extensions, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::body::MessagesEvents;
use super::request::{to_chat, MessagesContext};
use super::response::to_message;
use crate::api::ChatRequest;
use crate::body::{full, Body};
use crate::endpoints::DroppedFields;
use crate::error::GatewayError;
use crate::facts::Served;

/// Largest chat answer converted whole (the upstream's own bound is of the same order).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

fn object(bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("Request body is not valid JSON: {e}"), None))?;
    match value {
        Value::Object(body) => Ok(body),
        _ => Err(GatewayError::invalid(
            "Request body must be a JSON object.",
            None,
        )),
    }
}

/// Parses a Messages request into the chat request; the [`MessagesContext`] and the
/// dropped fields go into `extensions`.
pub fn parse(bytes: &[u8], extensions: &mut Extensions) -> Result<ChatRequest, GatewayError> {
    let (chat, context) = to_chat(&object(bytes)?)?;
    if !context.dropped.is_empty() {
        extensions.insert(DroppedFields(context.dropped.clone()));
    }
    extensions.insert(Arc::new(context));
    Ok(chat)
}

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

/// The chat answer as the Messages answer: a 200 JSON completion converted whole, a 200
/// stream wrapped in the event translator; anything else passes unchanged (errors are
/// re-shaped above tenant auth).
pub async fn adapt(
    context: Arc<MessagesContext>,
    response: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    let model = response.extensions().get::<Served>().map_or_else(
        || context.client_model.to_string(),
        |s| s.model.name.to_string(),
    );
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if is_stream {
        return Ok(Response::from_parts(
            parts,
            Body::new(MessagesEvents::new(body, model)),
        ));
    }
    let bytes = read_answer(body).await?;
    let completion: Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::Internal(format!("the chat answer is not JSON: {e}")))?;
    let mut message = to_message(&completion)
        .ok_or_else(|| GatewayError::Internal("the chat answer has no choice".into()))?;
    message["model"] = model.into();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = Bytes::from(serde_json::to_vec(&message).unwrap_or_default());
    Ok(Response::from_parts(parts, full(bytes)))
}

/// True for a complete answer: a stream that reached `message_stop` without an `error`
/// event, a JSON `message`.
pub fn clean_answer(stream: bool, bytes: &[u8]) -> bool {
    if stream {
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        has(b"event: message_stop\n") && !has(b"event: error\n")
    } else {
        serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v["type"] == "message")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_answers_are_clean() {
        assert!(clean_answer(
            true,
            b"event: message_start\ndata: {}\n\nevent: message_stop\ndata: {}\n\n"
        ));
        assert!(!clean_answer(
            true,
            b"event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n"
        ));
        assert!(clean_answer(false, br#"{"type":"message","content":[]}"#));
        assert!(!clean_answer(false, br#"{"type":"error"}"#));
    }
}
