//! `GET /v1/models` and `GET /v1/models/{id}`: the models a tenant may name.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use serde_json::json;

use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::layers::tenant::TenantCtx;

fn tenant_ctx<B>(request: &Request<B>) -> Result<&TenantCtx, GatewayError> {
    request
        .extensions()
        .get::<TenantCtx>()
        .ok_or_else(|| GatewayError::Internal("tenant context missing".into()))
}

/// Model ids the tenant may use: the virtual models first, then its concrete models.
fn model_ids(ctx: &TenantCtx) -> impl Iterator<Item = (&str, &str)> {
    ["auto", "fast", "reasoning"]
        .into_iter()
        .map(|id| (id, "deliberate"))
        .chain(
            ctx.tenant
                .allowed_models
                .iter()
                .map(|m| (&*m.name, &*m.provider.name)),
        )
}

fn model_object(id: &str, owner: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn list_models<B>(request: &Request<B>) -> Result<Response<Body>, GatewayError> {
    let ctx = tenant_ctx(request)?;
    let data: Vec<_> = model_ids(ctx)
        .map(|(id, owner)| model_object(id, owner))
        .collect();
    Ok(json_response(&json!({"object": "list", "data": data})))
}

pub fn get_model<B>(request: &Request<B>, id: &str) -> Result<Response<Body>, GatewayError> {
    let ctx = tenant_ctx(request)?;
    model_ids(ctx)
        .find(|(candidate, _)| *candidate == id)
        .map(|(id, owner)| json_response(&model_object(id, owner)))
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: id.chars().take(200).collect(),
        })
}
