//! The provider kinds behind `Upstream::call`, one module each:
//! - `openai`: any OpenAI-compatible API (OpenAI, Azure, vLLM, Ollama, llama.cpp, ...);
//! - `anthropic`: Anthropic's Messages API, translated to and from Chat Completions;
//! - `simulated`: deterministic answers with realistic timing, for demos, tests, benchmarks.
//!
//! Each provider answers a non-streaming call with the completion's bytes and a streaming
//! one with an `EventStream` of OpenAI-shaped SSE chunks; `Upstream::call` wraps both.

pub mod anthropic;
pub(super) mod openai;
pub(super) mod simulated;
