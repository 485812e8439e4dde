//! The `class` of a request's outcome: the one label error ratios are built on.

use crate::error::Fault;

/// The `class` label of `deliberate_requests_total`: what error ratios are made of. An
/// outcome has one class, except `upstream_status`: `server_error` for a provider's 5xx, 429
/// or refusal of the gateway's key, `client_error` for a provider rejecting the request
/// itself (400, 404, ...); so the label adds at most one series per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    Ok,
    /// Refused: the client's request was wrong or over its limits (`Fault::Client`).
    ClientError,
    /// Failed by the gateway or a provider (`Fault::Server`); the only class an error
    /// ratio should page on.
    ServerError,
    /// The client left before the end of the response (`cancelled`, `client_disconnected`):
    /// neither an answer nor a failure.
    ClientGone,
}

impl OutcomeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Ok => "ok",
            OutcomeClass::ClientError => "client_error",
            OutcomeClass::ServerError => "server_error",
            OutcomeClass::ClientGone => "client_gone",
        }
    }

    pub fn of_fault(fault: Fault) -> OutcomeClass {
        match fault {
            Fault::Client => OutcomeClass::ClientError,
            Fault::Server => OutcomeClass::ServerError,
        }
    }
}
