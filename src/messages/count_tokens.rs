//! `POST /v1/messages/count_tokens` (Anthropic): the `input_tokens` of a Messages body by
//! the gateway's own estimate, the one its rate limits and budgets reserve
//! (`cost::estimate_prompt_tokens` over the translated chat request). No model is called.
//!
//! Its own short stack (`app.rs`): tenant auth and the error shape above the router, as for
//! `/v1/messages`; below it the same bounded body read and parse (413, 408, 400) and the
//! same in-flight permits, then this service. Not rate-limited or budgeted: it reserves and
//! spends nothing, and the in-flight limit and the body limit bound what it costs.
//!
//! The body is a Messages body without `max_tokens` (Anthropic's count takes none) and is
//! checked like one, so what `/v1/messages` refuses is refused here too, with the same
//! Anthropic-shaped error; the model must be one the tenant may use on `/v1/messages`.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Extensions, HeaderValue, Request, Response};
use serde_json::{json, Value};
use tower::Service;

use super::request::{to_chat, MessagesContext};
use crate::api::ChatRequest;
use crate::body::{full, Body};
use crate::config::ModelKind;
use crate::cost::estimate_prompt_tokens;
use crate::error::GatewayError;
use crate::layers::tenant::TenantCtx;
use crate::layers::BoxFuture;

/// Fields of a Messages body that do not apply to a count; removed before the translation.
const NOT_COUNTED: [&str; 2] = ["max_tokens", "stream"];

/// Parses a count_tokens body into the chat request it would become; the client's model
/// (`MessagesContext`) goes into `extensions`.
pub fn parse(bytes: &[u8], extensions: &mut Extensions) -> Result<ChatRequest, GatewayError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("Request body is not valid JSON: {e}"), None))?;
    let Value::Object(mut body) = value else {
        return Err(GatewayError::invalid(
            "Request body must be a JSON object.",
            None,
        ));
    };
    for field in NOT_COUNTED {
        body.remove(field);
    }
    // The translation wants an output limit; it changes nothing in the count.
    body.insert("max_tokens".into(), 1.into());
    let (chat, context) = to_chat(&body)?;
    extensions.insert(Arc::new(context));
    Ok(chat)
}

/// The count: `{"input_tokens": N}`, if the tenant may use the model on `/v1/messages`.
#[derive(Clone, Default)]
pub struct CountTokens;

impl Service<Request<ChatRequest>> for CountTokens {
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        let result = count(&request);
        Box::pin(async move { result })
    }
}

fn count(request: &Request<ChatRequest>) -> Result<Response<Body>, GatewayError> {
    let missing = |what: &str| GatewayError::Internal(format!("{what} missing"));
    let ctx = request
        .extensions()
        .get::<TenantCtx>()
        .ok_or_else(|| missing("tenant context"))?;
    let context = request
        .extensions()
        .get::<Arc<MessagesContext>>()
        .ok_or_else(|| missing("messages request"))?;
    match &*context.client_model {
        "auto" | "fast" | "reasoning" => {}
        name => {
            crate::policy::named_model(&ctx.tenant, name, ModelKind::Chat)?;
        }
    }
    let tokens = estimate_prompt_tokens(request.body());
    let body = serde_json::to_vec(&json!({"input_tokens": tokens})).unwrap_or_default();
    let mut response = Response::new(full(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: Value) -> Result<(ChatRequest, Extensions), GatewayError> {
        let mut extensions = Extensions::new();
        let chat = parse(body.to_string().as_bytes(), &mut extensions)?;
        Ok((chat, extensions))
    }

    #[test]
    fn the_count_is_the_estimate_of_the_request_messages_would_send() {
        let body = json!({"model": "auto", "system": "Be brief.",
            "messages": [{"role": "user", "content": "Prove that sqrt(2) is irrational."}]});
        let (chat, extensions) = parsed(body.clone()).unwrap();
        let mut with_max = body;
        with_max["max_tokens"] = 512.into();
        let (sent, _) = to_chat(with_max.as_object().unwrap()).unwrap();
        assert_eq!(estimate_prompt_tokens(&chat), estimate_prompt_tokens(&sent));
        assert_eq!(
            &*extensions
                .get::<Arc<MessagesContext>>()
                .unwrap()
                .client_model,
            "auto"
        );
    }

    #[test]
    fn max_tokens_and_stream_are_not_needed_nor_checked() {
        let messages = json!([{"role": "user", "content": "hi"}]);
        for extra in [json!({}), json!({"max_tokens": 0, "stream": "yes"})] {
            let mut body = json!({"model": "fast", "messages": messages});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            assert!(parsed(body.clone()).is_ok(), "{body}");
        }
    }

    #[test]
    fn what_messages_refuses_is_refused_with_the_field_named() {
        for (body, param) in [
            (
                json!({"messages": [{"role": "user", "content": "hi"}]}),
                "model",
            ),
            (json!({"model": "auto"}), "messages"),
            (json!({"model": "auto", "messages": []}), "messages"),
            (
                json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
                    "thinking": {"type": "enabled", "budget_tokens": -1}}),
                "thinking.budget_tokens",
            ),
        ] {
            let e = parsed(body.clone()).expect_err("refused").to_json();
            assert_eq!(e["error"]["param"], param, "{body}");
        }
        let e = parse(b"[1]", &mut Extensions::new()).expect_err("refused");
        assert_eq!(e.to_json()["error"]["type"], "invalid_request_error");
    }
}
