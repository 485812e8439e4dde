//! The `/v1/messages` hooks of the endpoints mechanism (`crate::endpoints`): the body parsed
//! and translated to the chat request at parse time, the chat answer turned back into an
//! Anthropic message (JSON whole, SSE frame by frame), and when an answer may be cached.

use std::sync::Arc;

use http::{Extensions, Response};
use serde_json::{Map, Value};

use super::body::MessagesEvents;
use super::request::{to_chat, MessagesContext};
use super::response::to_message;
use crate::api::ChatRequest;
use crate::body::Body;
use crate::endpoints::{answer, DroppedFields};
use crate::error::GatewayError;

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

/// The chat answer as the Messages answer: a 200 JSON completion converted whole, a 200
/// stream wrapped in the event translator; anything else passes unchanged (errors are
/// re-shaped above tenant auth).
pub async fn adapt(
    context: Arc<MessagesContext>,
    response: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    answer::adapt_answer(
        response,
        || context.client_model.to_string(),
        |body, model| Body::new(MessagesEvents::new(body, model)),
        |completion, model| {
            let mut message = to_message(completion)
                .ok_or_else(|| GatewayError::Internal("the chat answer has no choice".into()))?;
            message["model"] = model.into();
            Ok(message)
        },
    )
    .await
}

/// True for a complete answer: a stream that reached `message_stop` without an `error`
/// event, a JSON `message`.
pub fn clean_answer(stream: bool, bytes: &[u8]) -> bool {
    answer::clean_answer(stream, bytes, "message_stop", "error", |v| {
        v["type"] == "message"
    })
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
