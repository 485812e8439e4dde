//! `GET /v1/models` and `GET /v1/models/{id}`: the models a tenant may name, in OpenAI's
//! list shape, each with a `deliberate` object saying what it serves (`endpoints::catalog`):
//! `{"kind", "endpoints", "tier"?, "routes_to"?}`.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use serde_json::{json, Map, Value};

use super::catalog::{api_name, catalog, CatalogEntry};
use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::layers::tenant::TenantCtx;

fn tenant_ctx<B>(request: &Request<B>) -> Result<&TenantCtx, GatewayError> {
    request
        .extensions()
        .get::<TenantCtx>()
        .ok_or_else(|| GatewayError::Internal("tenant context missing".into()))
}

fn model_object(entry: &CatalogEntry<'_>) -> Value {
    let mut serves = Map::new();
    serves.insert("kind".into(), entry.kind.as_str().into());
    let endpoints: Vec<Value> = entry
        .endpoints
        .iter()
        .map(|e| api_name(*e).into())
        .collect();
    serves.insert("endpoints".into(), endpoints.into());
    if let Some(tier) = entry.kind.tier() {
        serves.insert("tier".into(), tier.as_str().into());
    }
    if !entry.routes_to.is_empty() {
        let routes: Map<String, Value> = entry
            .routes_to
            .iter()
            .map(|(by, model)| (by.to_string(), (*model).into()))
            .collect();
        serves.insert("routes_to".into(), routes.into());
    }
    json!({"id": entry.id, "object": "model", "created": 0, "owned_by": entry.owned_by,
        "deliberate": serves})
}

fn json_response(value: &Value) -> Response<Body> {
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
    let data: Vec<_> = catalog(&ctx.tenant).iter().map(model_object).collect();
    Ok(json_response(&json!({"object": "list", "data": data})))
}

pub fn get_model<B>(request: &Request<B>, id: &str) -> Result<Response<Body>, GatewayError> {
    let ctx = tenant_ctx(request)?;
    catalog(&ctx.tenant)
        .iter()
        .find(|entry| entry.id == id)
        .map(|entry| json_response(&model_object(entry)))
        .ok_or_else(|| GatewayError::model_not_found(id))
}
