//! The gateway's middleware, one concern per file. `app.rs` decides their order.

pub mod access_log;
pub mod adapt;
pub mod body;
pub mod cache;
pub mod decide;
pub mod error;
pub mod error_shape;
pub mod health;
pub mod in_flight;
pub mod json_shape;
pub mod metrics;
pub mod panic;
pub mod rate_limit;
pub mod request_id;
pub mod span;
pub mod tenant;

use std::future::Future;
use std::pin::Pin;

/// The future type of every layer: boxed once per layer, which keeps the stack's types
/// nameable and costs one small allocation per layer per request.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
