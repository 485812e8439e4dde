//! The tenant's policies over a request: which tier and model serve it, and what it owes.
//!
//! - `decide`: explicit signals and the classifier -> a `Decision` (pure, no I/O);
//! - `admission`: the tenant's policies applied to that decision, in a fixed order
//!   (stickiness, budget lean, deadline, shadow, budget reservation);
//! - `sticky`, `latency`: the state those policies read (conversation tiers, observed p90s);
//! - `billing`: the settlement of a finished request (cost, budget, latency samples).
//!
//! The request path calls these from `layers::decide`; none of them knows about HTTP bodies.

pub mod admission;
pub mod billing;
mod decide;
pub mod latency;
pub mod sticky;

pub use decide::{
    decide, decide_embedding, fallbacks_for, named_model, with_second_stage, Decision,
    DecisionSource, TIER_HEADER,
};
