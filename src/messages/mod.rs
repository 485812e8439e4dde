//! Anthropic Messages API input (`POST /v1/messages`): the request translated to the
//! gateway's chat request (`request`), the answer translated back (`response` for JSON,
//! `stream` for SSE events), errors in Anthropic's shape (`error`), and
//! `messages/count_tokens` (`count_tokens`). All pure: the
//! endpoint wiring uses them at parse time and in the response adapter.

pub mod body;
pub mod count_tokens;
pub mod endpoint;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

pub use request::{to_chat, MessagesContext};
pub use stream::EventTranslator;
