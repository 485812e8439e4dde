//! `[server]` (and `[cache] max_bytes`) -> `ServerSettings`: listeners, limits, slow-client
//! timeouts and the connection cap, each problem reported at its value.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::problem::FileProblems;
use super::raw::{RawCache, RawServer};
use super::validate::{hash_api_key, positive};
use super::validate_models::valid_env_name;
use super::{BodyLimits, ConnectionSettings, ServerSettings};

/// Deepest JSON nesting a config may allow: serde_json itself stops at 128.
const MAX_JSON_DEPTH_CEILING: u64 = 128;
/// Each API thread has its own runtime and provider pool: more than this is a typo.
const MAX_API_THREADS: u64 = 256;

pub(super) fn server_settings(
    raw: &RawServer,
    cache: &RawCache,
    p: &mut FileProblems,
) -> Option<ServerSettings> {
    let addr = |v: &Option<Spanned<String>>, default: &str, p: &mut FileProblems| {
        let Some(v) = v else {
            return default.parse::<SocketAddr>().ok();
        };
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.at(
                    v.span(),
                    "expected a socket address like \"127.0.0.1:8080\"",
                );
                None
            }
        }
    };
    let listen = addr(&raw.listen, "127.0.0.1:8080", p);
    let admin_listen = addr(&raw.admin_listen, "127.0.0.1:9090", p);
    let body = positive(&raw.max_request_body_bytes, 4 * 1024 * 1024, p);
    let in_flight = positive(&raw.max_in_flight_requests, 4096, p);
    let api_threads = match &raw.api_threads {
        None => None,
        Some(v) if (1..=MAX_API_THREADS).contains(v.get_ref()) => {
            usize::try_from(*v.get_ref()).ok()
        }
        Some(v) => {
            p.at(
                v.span(),
                format!("api_threads must be between 1 and {MAX_API_THREADS}"),
            );
            None
        }
    };
    let grace = positive(&raw.shutdown_grace_ms, 30_000, p);
    let admin_token_hash = match &raw.admin_token_env {
        None => None,
        Some(env) if !valid_env_name(env.get_ref()) => {
            p.at(
                env.span(),
                "admin_token_env must name an environment variable (A-Z, 0-9, _)",
            );
            None
        }
        Some(env) => std::env::var(env.get_ref())
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| hash_api_key(&t)),
    };
    let reload_poll = match &raw.reload_poll_ms {
        None => Some(Duration::from_secs(2)),
        Some(v) if *v.get_ref() == 0 => None,
        Some(v) => Some(Duration::from_millis(*v.get_ref())),
    };
    let cache_max_bytes = positive(&cache.max_bytes, 64 * 1024 * 1024, p);
    let connections = connection_settings(raw, p);
    let body_limits = body_limits(raw, body, p);
    Some(ServerSettings {
        cache_max_bytes,
        redis: None,
        admin_token_hash,
        reload_poll,
        listen: listen?,
        admin_listen: admin_listen?,
        max_request_body_bytes: usize::try_from(body).unwrap_or(usize::MAX),
        max_in_flight_requests: usize::try_from(in_flight).unwrap_or(usize::MAX),
        api_threads,
        shutdown_grace: Duration::from_millis(grace),
        connections,
        body_limits,
        second_stage: Default::default(),
        telemetry: Default::default(),
    })
}

fn connection_settings(raw: &RawServer, p: &mut FileProblems) -> ConnectionSettings {
    let d = ConnectionSettings::default();
    let ms = |v: &Option<Spanned<u64>>, default: Duration, p: &mut FileProblems| {
        let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(positive(v, default, p))
    };
    let http2_keep_alive_interval = match &raw.http2_keep_alive_interval_ms {
        None => d.http2_keep_alive_interval,
        Some(v) if *v.get_ref() == 0 => None,
        Some(v) => Some(Duration::from_millis(*v.get_ref())),
    };
    let max_connections = positive(&raw.max_connections, d.max_connections as u64, p);
    ConnectionSettings {
        header_read_timeout: ms(&raw.header_read_timeout_ms, d.header_read_timeout, p),
        body_read_timeout: ms(&raw.body_read_timeout_ms, d.body_read_timeout, p),
        keep_alive_idle_timeout: ms(
            &raw.keep_alive_idle_timeout_ms,
            d.keep_alive_idle_timeout,
            p,
        ),
        http2_keep_alive_interval,
        http2_keep_alive_timeout: ms(
            &raw.http2_keep_alive_timeout_ms,
            d.http2_keep_alive_timeout,
            p,
        ),
        // A semaphore holds at most `usize::MAX >> 3` permits.
        max_connections: usize::try_from(max_connections)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    }
}

fn body_limits(raw: &RawServer, max_bytes: u64, p: &mut FileProblems) -> BodyLimits {
    let d = BodyLimits::default();
    let max_json_depth = match &raw.max_json_depth {
        Some(v) if *v.get_ref() > MAX_JSON_DEPTH_CEILING => {
            p.at(
                v.span(),
                format!("max_json_depth must be at most {MAX_JSON_DEPTH_CEILING}"),
            );
            d.max_json_depth
        }
        v => usize::try_from(positive(v, d.max_json_depth as u64, p)).unwrap_or(usize::MAX),
    };
    BodyLimits {
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        max_messages: usize::try_from(positive(&raw.max_messages, d.max_messages as u64, p))
            .unwrap_or(usize::MAX),
        max_json_depth,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::raw::RawConfig;

    use super::*;

    fn settings(toml_text: &str) -> Result<ServerSettings, String> {
        let raw: RawConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut p = FileProblems {
            file: std::path::Path::new("deliberate.toml"),
            text: toml_text,
            out: &mut out,
        };
        let s = server_settings(&raw.server, &raw.cache, &mut p);
        let problems: Vec<String> = out.iter().map(|c| c.message.clone()).collect();
        if problems.is_empty() {
            Ok(s.expect("no problems"))
        } else {
            Err(format!("{problems:?}"))
        }
    }

    #[test]
    fn slow_client_timeouts_have_defaults_and_can_be_set() {
        let s = settings("").unwrap();
        assert_eq!(s.connections.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.connections.max_connections, 4096);
        assert_eq!(s.body_limits.max_messages, 4096);
        let s = settings(
            "[server]\nheader_read_timeout_ms = 150\nbody_read_timeout_ms = 200\nkeep_alive_idle_timeout_ms = 300\nhttp2_keep_alive_interval_ms = 0\nmax_connections = 3\nmax_messages = 5\nmax_json_depth = 6\n",
        )
        .unwrap();
        assert_eq!(
            s.connections.header_read_timeout,
            Duration::from_millis(150)
        );
        assert_eq!(s.connections.body_read_timeout, Duration::from_millis(200));
        assert_eq!(
            s.connections.keep_alive_idle_timeout,
            Duration::from_millis(300)
        );
        assert_eq!(s.connections.http2_keep_alive_interval, None);
        assert_eq!(s.connections.max_connections, 3);
        assert_eq!(
            (s.body_limits.max_messages, s.body_limits.max_json_depth),
            (5, 6)
        );
    }

    #[test]
    fn zero_timeouts_and_absurd_depths_are_rejected_at_their_value() {
        let e = settings("[server]\nheader_read_timeout_ms = 0\n").unwrap_err();
        assert!(e.contains("greater than 0"), "{e}");
        let e = settings("[server]\nmax_connections = 0\n").unwrap_err();
        assert!(e.contains("greater than 0"), "{e}");
        let e = settings("[server]\nmax_json_depth = 1000\n").unwrap_err();
        assert!(e.contains("at most 128"), "{e}");
        assert!(settings("[server]\nheader_timeout = 5\n").is_err());
    }
}
