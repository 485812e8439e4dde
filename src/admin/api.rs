//! The admin API on the admin listener, behind `Authorization: Bearer <admin token>`:
//!
//! - `GET /admin/config`: generation, content hash, load time, source files, tenant and
//!   model names of the live config;
//! - `POST /admin/reload`: reload the config files now (200 with the new generation, or
//!   422 with every problem as `file:line:column: message`; the old config stays live);
//! - `GET /admin/tenants/{name}`: the tenant's static policy limits (404 if unknown).
//!
//! The token is checked against `server.admin_token_hash` of the *live* config (so a reload
//! can rotate it), by SHA-256 and a constant-time compare. With no token configured the
//! whole API answers 401. Nothing here ever returns a key, a key hash or the token.
//! Errors have OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use super::AdminService;
use crate::body::{full, Body};
use crate::config::{hash_api_key, Snapshot, Tenant, TierLatency};
use crate::reload::rfc3339;

pub fn handle(
    admin: &AdminService,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let snapshot = admin.state.live.load_full();
    if let Some(response) = unauthorized(&snapshot, headers) {
        return response;
    }
    match (path, method) {
        ("/admin/config", &Method::GET) => json_response(StatusCode::OK, config(admin, &snapshot)),
        ("/admin/reload", &Method::POST) => reload(admin),
        (path, &Method::GET) if path.starts_with("/admin/tenants/") => {
            let name = &path["/admin/tenants/".len()..];
            match snapshot.tenant(name) {
                Some(t) => json_response(StatusCode::OK, tenant(admin, t)),
                None => error(
                    StatusCode::NOT_FOUND,
                    "not_found_error",
                    "tenant_not_found",
                    "No tenant with this name in the live config.",
                ),
            }
        }
        ("/admin/config", _) => method_not_allowed(method, path, "GET"),
        ("/admin/reload", _) => method_not_allowed(method, path, "POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "unknown_url",
            &format!("Unknown admin endpoint {method} {path}."),
        ),
    }
}

/// Checks `Authorization: Bearer <token>` against the live config's admin token hash;
/// the 401 to send if it does not match, `None` if it does.
fn unauthorized(snapshot: &Snapshot, headers: &HeaderMap) -> Option<Response<Body>> {
    let Some(expected) = snapshot.server.admin_token_hash else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "admin_api_disabled",
            "The admin API is disabled: set `server.admin_token_env` to the name of an \
             environment variable holding the admin token, then restart or reload.",
        ));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    match token {
        Some(token) if constant_time_eq(&hash_api_key(token), &expected) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_admin_token",
            "Missing or incorrect admin token. Send `Authorization: Bearer <admin token>`.",
        )),
    }
}

/// Compares every byte whatever the first difference, so timing tells nothing.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn config(admin: &AdminService, snapshot: &Snapshot) -> Value {
    let loaded_at = admin
        .reloader
        .as_ref()
        .map(|r| r.loaded_at())
        .unwrap_or(admin.started_at);
    let mut models: Vec<&str> = snapshot.models.keys().map(String::as_str).collect();
    models.sort_unstable();
    json!({
        "generation": snapshot.generation,
        "hash": snapshot.content_hash,
        "loaded_at": rfc3339(loaded_at),
        "reloadable": admin.reloader.is_some(),
        "sources": snapshot.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "tenants": snapshot.tenants.iter().map(|t| &*t.name).collect::<Vec<_>>(),
        "models": models,
    })
}

fn reload(admin: &AdminService) -> Response<Body> {
    let Some(reloader) = &admin.reloader else {
        return error(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "reload_unavailable",
            "This gateway was not started from config files (demo mode): nothing to reload.",
        );
    };
    match reloader.reload_now() {
        Ok(generation) => {
            let hash = admin.state.live.load().content_hash.clone();
            json_response(
                StatusCode::OK,
                json!({"reloaded": true, "generation": generation, "hash": hash}),
            )
        }
        Err(problems) => {
            let generation = admin.state.live.load().generation;
            let list: Vec<String> = problems.0.iter().map(|p| p.to_string()).collect();
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": {
                        "message": format!(
                            "The config has {} problem(s); generation {generation} stays live.",
                            list.len()
                        ),
                        "type": "invalid_request_error",
                        "param": null,
                        "code": "invalid_config",
                    },
                    "generation": generation,
                    "problems": list,
                }),
            )
        }
    }
}

/// A tenant's policy limits and, under `"live"`, its spend, remaining budget and
/// rate-limit buckets (this replica): no keys, no key hashes.
fn tenant(admin: &AdminService, t: &Tenant) -> Value {
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
    let latency =
        |l: &TierLatency| json!({"first_token_ms": ms(l.first_token), "total_ms": ms(l.total)});
    let p = &t.policy;
    json!({
        "name": &*t.name,
        "fast_model": &*t.fast_model.name,
        "reasoning_model": &*t.reasoning_model.name,
        "allowed_models": t.allowed_models.iter().map(|m| &*m.name).collect::<Vec<_>>(),
        "auto": {
            "default_tier": t.auto.default_tier.as_str(),
            "reasoning_threshold": t.auto.reasoning_threshold.map(decimal),
        },
        "budget": p.budget.as_ref().map(|b| json!({
            "daily_usd": b.daily_usd,
            "monthly_usd": b.monthly_usd,
            "per_request_usd": b.per_request_usd,
            "soft_limit": b.soft_limit,
            "soft_reasoning_threshold": decimal(b.soft_reasoning_threshold),
            "on_limit": format!("{:?}", b.on_limit).to_lowercase(),
            "default_max_tokens": b.default_max_tokens,
        })),
        "rate_limits": {
            "requests_per_minute": p.rate_limits.requests_per_minute,
            "tokens_per_minute": p.rate_limits.tokens_per_minute,
        },
        "latency": {
            "fast": latency(&p.latency.fast),
            "reasoning": latency(&p.latency.reasoning),
        },
        "fallbacks": {
            "fast": p.fallbacks.fast.iter().map(|m| &*m.name).collect::<Vec<_>>(),
            "reasoning": p.fallbacks.reasoning.iter().map(|m| &*m.name).collect::<Vec<_>>(),
        },
        "stickiness_ttl_ms": p.stickiness.map(|s| s.ttl.as_millis() as u64),
        "shadow_route_to": p.shadow.map(|s| s.route_to.as_str()),
        "live": crate::limits::report::tenant_report(&admin.state.policy.limits, t),
    })
}

/// An `f32` setting as the decimal the operator wrote: `0.95_f32` widened to `f64` is
/// 0.949999988079071, but its shortest `f32` form is "0.95", which parses to `f64` 0.95.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn method_not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        &format!("Method {method} is not allowed on {path}; use {allow}."),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn error(status: StatusCode, error_type: &str, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        json!({"error": {"message": message, "type": error_type, "param": null, "code": code}}),
    )
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(full(serde_json::to_vec(&body).unwrap_or_default()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, decimal};

    #[test]
    fn f32_settings_print_as_written() {
        assert_eq!(decimal(0.95).to_string(), "0.95");
        assert_eq!(serde_json::json!(decimal(0.7)).to_string(), "0.7");
        assert_eq!(decimal(1.0), 1.0);
    }

    #[test]
    fn compares_whole_hashes() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
