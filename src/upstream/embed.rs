//! Embeddings calls (`/v1/embeddings`), for the provider kinds that serve them: the
//! simulated provider (deterministic vectors) and OpenAI-compatible APIs (`/embeddings`
//! beside the provider's `/chat/completions`, the client's body with the deployment's model
//! name). Config validation keeps embedding models off Anthropic providers. The usage the
//! answer reports is recorded like a completion's (input tokens only).

use crate::upstream::client;
use bytes::Bytes;
use serde_json::Value;

use super::providers::openai::error_message;
use super::providers::simulated::embed::vector;
use super::{auth, read_body, send_error, status_error, CallContext};
use crate::config::{Provider, ProviderKind};
use crate::embeddings::{answer, EmbeddingsRequest};
use crate::error::{GatewayError, TimeoutKind};

/// The provider's embeddings endpoint: its completion endpoint with `/chat/completions`
/// replaced (query parameters, e.g. Azure's `api-version`, kept).
fn embeddings_url(provider: &Provider) -> Result<reqwest::Url, GatewayError> {
    let mut url = provider.endpoint.clone().ok_or_else(|| {
        GatewayError::Internal(format!("provider `{}` has no endpoint", provider.name))
    })?;
    let path = url.path();
    let base = path.strip_suffix("/chat/completions").unwrap_or(path);
    let path = format!("{}/embeddings", base.trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

pub(super) async fn call(
    client: &client::Client,
    ctx: &CallContext,
    request: &EmbeddingsRequest,
) -> Result<Bytes, GatewayError> {
    let provider = &ctx.deployment.provider;
    let bytes = match provider.kind {
        ProviderKind::Simulated { .. } => {
            let model = &ctx.deployment.upstream_model;
            let vectors: Vec<Vec<f32>> = request
                .inputs
                .iter()
                .map(|input| vector(model, input, request.dimensions))
                .collect();
            let answer = answer(model, &vectors, request.encoding, request.prompt_tokens());
            Bytes::from(serde_json::to_vec(&answer).expect("a JSON value serializes"))
        }
        ProviderKind::OpenAi => {
            let mut body = (*request.body).clone();
            body.insert("model".into(), ctx.deployment.upstream_model.clone().into());
            let mut builder = client
                .post(&embeddings_url(provider)?)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).expect("a JSON map serializes"));
            if let (true, Some(id)) = (provider.send_request_id, ctx.request_id.upstream()) {
                builder = builder.header("x-request-id", id.clone());
            }
            if let Some((name, value)) = auth(provider)? {
                builder = builder.header(name, value);
            }
            let response = tokio::time::timeout_at(ctx.total_deadline(), builder.send(client))
                .await
                .map_err(|_| ctx.timeout(TimeoutKind::Total, ctx.timeouts.total))?
                .map_err(|e| send_error(ctx, e))?;
            if !response.status().is_success() {
                return Err(Box::pin(status_error(ctx, response, error_message)).await);
            }
            read_body(ctx, response).await?
        }
        ProviderKind::Anthropic { .. } => {
            return Err(GatewayError::invalid(
                format!("provider `{}` does not serve embeddings", provider.name),
                Some("model".to_string()),
            ))
        }
    };
    let usage = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| GatewayError::UpstreamInvalid {
            provider: ctx.provider(),
            message: format!("embeddings response is not JSON: {e}"),
        })?
        .get_mut("usage")
        .map(Value::take)
        .filter(Value::is_object);
    if let Some(usage) = usage {
        ctx.recorder.usage(&usage);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embeddings_url_sits_beside_chat_completions() {
        let provider = |endpoint: &str| Provider {
            name: "p".into(),
            kind: ProviderKind::OpenAi,
            base_url: String::new(),
            endpoint: Some(endpoint.parse().unwrap()),
            auth_header: http::header::AUTHORIZATION,
            api_key: None,
            api_key_env: None,
            send_request_id: false,
            send_trace_context: false,
        };
        let url = embeddings_url(&provider("https://api.example.com/v1/chat/completions")).unwrap();
        assert_eq!(url.as_str(), "https://api.example.com/v1/embeddings");
        let url = embeddings_url(&provider(
            "https://x.example.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
        ))
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://x.example.com/openai/deployments/d/embeddings?api-version=2024-10-21"
        );
    }
}
