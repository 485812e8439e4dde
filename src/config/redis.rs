//! `[redis]` in `deliberate.toml`: where the replicas share cache, spend and rate-limit
//! state (see `crate::shared`), parsed and validated. The URL may carry a password: it never
//! appears in `Debug` output or in a problem message. `rediss://` is TLS (rustls), verified
//! against the system's roots or the PEM file `tls_ca_file` (relative paths: to the config
//! file's directory).

use std::time::Duration;

use super::problem::FileProblems;
use super::raw::RawRedis;
use super::validate_models::valid_env_name;

/// Where the replicas share cache, spend and rate-limit state.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// May carry a password: never logged (see the `Debug` impl).
    pub url: String,
    pub key_prefix: String,
    pub timeout: Duration,
    /// Roots to verify a `rediss://` server with instead of the system's (PEM).
    pub tls_root_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("tls_ca_file", &self.tls_root_pem.is_some())
            .finish()
    }
}

pub(super) fn settings(raw: &RawRedis, p: &mut FileProblems) -> Option<RedisSettings> {
    let url = match (&raw.url, &raw.url_env) {
        (Some(url), None) => Some((url.get_ref().clone(), url.span())),
        (None, Some(env)) if !valid_env_name(env.get_ref()) => {
            p.at(
                env.span(),
                "redis.url_env must name an environment variable (A-Z, 0-9, _)",
            );
            None
        }
        (None, Some(env)) => match std::env::var(env.get_ref()) {
            Ok(url) if !url.is_empty() => Some((url, env.span())),
            _ => {
                p.at(
                    env.span(),
                    format!("environment variable {} is not set", env.get_ref()),
                );
                None
            }
        },
        (Some(_), Some(env)) => {
            p.at(env.span(), "set redis.url or redis.url_env, not both");
            None
        }
        (None, None) => {
            p.at(0..0, "[redis] needs `url` or `url_env`");
            None
        }
    };
    let url = url.and_then(|(url, span)| {
        // The message never repeats the URL: it may carry a password.
        let scheme_ok = ["redis://", "rediss://", "redis+unix://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok || ::redis::Client::open(url.as_str()).is_err() {
            p.at(
                span,
                "expected a Redis URL like \"redis://host:6379/0\" or \"rediss://host:6380/0\" (TLS)",
            );
            return None;
        }
        Some(url)
    });
    let tls_root_pem = raw.tls_ca_file.as_ref().and_then(|file| {
        if url.as_ref().is_some_and(|u| !u.starts_with("rediss://")) {
            p.at(file.span(), "redis.tls_ca_file needs a `rediss://` URL");
            return None;
        }
        let path = p
            .file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(file.get_ref());
        match std::fs::read(&path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                p.at(
                    file.span(),
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
            Err(e) => {
                p.at(file.span(), format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    });
    let key_prefix = match &raw.key_prefix {
        None => "deliberate".to_string(),
        Some(v) => {
            let prefix = v.get_ref();
            if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                p.at(
                    v.span(),
                    "redis.key_prefix must be non-empty without spaces",
                );
            }
            prefix.clone()
        }
    };
    let timeout = match &raw.timeout_ms {
        None => 100,
        Some(v) if (1..=10_000).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            p.at(v.span(), "redis.timeout_ms must be 1..=10000");
            100
        }
    };
    Some(RedisSettings {
        url: url?,
        key_prefix,
        timeout: Duration::from_millis(timeout),
        tls_root_pem,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn check(redis: &str) -> Result<super::RedisSettings, String> {
        let config = format!(
            "[providers.p]\nkind = \"simulated\"\n[models.m]\nprovider = \"p\"\ntier = \"fast\"\n[models.r]\nprovider = \"p\"\ntier = \"reasoning\"\n{redis}"
        );
        let tenant = "name = \"t\"\napi_keys = [{ sha256 = \"c7fa7b6662c547fa9cadb4ad755e0f63c0dd1328e4d703b96601d331245f8bf4\" }]\nfast_model = \"m\"\nreasoning_model = \"r\"\n";
        super::super::validate::load_sources(
            (Path::new("deliberate.toml"), &config),
            vec![(PathBuf::from("policies/t.toml"), tenant.to_string())],
        )
        .map(|l| l.snapshot.server.redis.expect("[redis] given"))
        .map_err(|p| p.to_string())
    }

    #[test]
    fn a_redis_url_is_required_once_and_never_echoed() {
        let ok =
            check("[redis]\nurl = \"redis://:hunter2@cache:6379/1\"\ntimeout_ms = 50\n").unwrap();
        assert_eq!(ok.key_prefix, "deliberate");
        assert_eq!(ok.timeout, std::time::Duration::from_millis(50));
        assert!(
            !format!("{ok:?}").contains("hunter2"),
            "Debug redacts the URL"
        );

        let missing = check("[redis]\n").unwrap_err();
        assert!(missing.contains("needs `url` or `url_env`"), "{missing}");
        let both = check("[redis]\nurl = \"redis://a\"\nurl_env = \"R\"\n").unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let bad = check("[redis]\nurl = \"http://:hunter2@cache:6379\"\n").unwrap_err();
        assert!(
            bad.contains("expected a Redis URL") && !bad.contains("hunter2"),
            "{bad}"
        );
        let tls = check("[redis]\nurl = \"rediss://:hunter2@cache:6380\"\n").unwrap();
        assert!(
            tls.tls_root_pem.is_none(),
            "verified against the system's roots"
        );
        let ca = check("[redis]\nurl = \"redis://a\"\ntls_ca_file = \"ca.pem\"\n").unwrap_err();
        assert!(ca.contains("needs a `rediss://` URL"), "{ca}");
        let ca = check("[redis]\nurl = \"rediss://a\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n")
            .unwrap_err();
        assert!(ca.contains("cannot read /nonexistent/ca.pem"), "{ca}");
        let unset = check("[redis]\nurl_env = \"DELIBERATE_TEST_UNSET_REDIS_URL\"\n").unwrap_err();
        assert!(unset.contains("is not set"), "{unset}");
        let slow = check("[redis]\nurl = \"redis://a\"\ntimeout_ms = 0\n").unwrap_err();
        assert!(slow.contains("1..=10000"), "{slow}");
        let unknown = check("[redis]\nurl = \"redis://a\"\npassword = \"x\"\n").unwrap_err();
        assert!(unknown.contains("password"), "{unknown}");
    }
}
