//! Anthropic's Messages API as a provider: requests translated from Chat Completions
//! (`request`), answers and streams translated back (`response`), and the HTTP calls
//! (`call`).

mod call;
mod request;
pub mod response;

pub use call::ProviderAdjustments;
pub(in crate::upstream) use call::{complete, stream};
pub use request::*;
