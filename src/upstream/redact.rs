//! Redaction of provider error text before it reaches a client or a log line.
//!
//! A provider's error message is useful to the caller ("maximum context length is 8192
//! tokens"), but it is text we did not write: a misconfigured proxy echoes the request's
//! `Authorization` header in its 401, a Python server puts its traceback and file paths in
//! a 500. Everything upstream-written goes through [`redact`] once, where the
//! `GatewayError` is built, so the client body, the SSE error event and the WARN log line
//! all carry the same cleaned text.
//!
//! What is replaced:
//! - the provider's own configured key (the exact value we send), wherever it appears;
//! - anything in a credential's shape: the value after `Bearer`/`Basic`, the value after an
//!   auth-like name (`authorization`, `x-api-key`, `api_key`, ...), `sk-...`-style keys, and
//!   long key-like tokens (mixed-case base62 of 20+ characters, or 32+ letters and digits);
//! - a server's internals: a Python traceback (cut), and file-system paths (`[path]`).
//!
//! The scan is one pass over the (already length-capped) text; no regex dependency.

// Numbers here come from providers and config: no unchecked arithmetic (issue 10).
#![deny(clippy::arithmetic_side_effects)]

use crate::config::Provider;

/// Replacement for a secret.
const REDACTED: &str = "[redacted]";
/// Replacement for a file-system path.
const PATH: &str = "[path]";
/// Longest redacted message passed on; the rest is cut (a provider's message is a hint).
const MAX_MESSAGE_CHARS: usize = 500;

/// Names after which the next value is a credential (compared lowercased, without
/// surrounding quotes).
const SECRET_NAMES: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "api_key",
    "apikey",
    "x-goog-api-key",
    "access_token",
    "refresh_token",
    "client_secret",
    "password",
];

/// Auth schemes: the word itself stays, the value after it goes.
const SCHEMES: &[&str] = &["bearer", "basic"];

/// Key prefixes used by providers (OpenAI/Anthropic `sk-`, GitHub, Slack, Google, AWS, ...).
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "ghp_", "gho_", "ghs_", "xoxb-", "xoxp-", "aiza",
    "akia", "hf_",
];

/// Path roots of a server's own files.
const PATH_ROOTS: &[&str] = &[
    "/home/",
    "/usr/",
    "/opt/",
    "/var/",
    "/srv/",
    "/app/",
    "/root/",
    "/tmp/",
    "/etc/",
    "/lib/",
    "/workspace/",
    "/code/",
    "/src/",
    "~/",
];

/// Source-file extensions: a token with a separator ending in one is a path.
const SOURCE_EXTENSIONS: &[&str] = &[
    ".py", ".pyc", ".rs", ".js", ".mjs", ".ts", ".go", ".java", ".rb", ".php", ".cpp", ".cc", ".c",
    ".h", ".so", ".cs", ".kt", ".scala", ".ex", ".exs",
];

/// The provider's configured credential values: the header value we send and, for
/// `Bearer <key>`, the key alone.
pub fn provider_secrets(provider: &Provider) -> Vec<String> {
    let Some(value) = provider.api_key.as_ref().and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    let mut secrets = vec![value.to_string()];
    if let Some((_, key)) = value.split_once(' ') {
        secrets.push(key.trim().to_string());
    }
    secrets.retain(|s| s.len() >= 4);
    secrets
}

/// `text` with `secrets` and anything credential- or internals-shaped replaced.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    if let Some(at) = text.find("Traceback (most recent call last)") {
        text.truncate(at);
        text.push_str("[traceback withheld]");
    }
    let mut out = String::with_capacity(text.len());
    let mut redact_next = false;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let sep_len = rest.find(|c: char| !is_separator(c)).unwrap_or(rest.len());
        out.push_str(&rest[..sep_len]);
        rest = &rest[sep_len..];
        let token_len = rest.find(is_separator).unwrap_or(rest.len());
        if token_len == 0 {
            continue;
        }
        let token = &rest[..token_len];
        rest = &rest[token_len..];
        let lower = token.to_ascii_lowercase();
        if redact_next {
            // `Authorization: Bearer <key>`: the scheme stays, the value after it goes.
            if SCHEMES.contains(&lower.as_str()) {
                out.push_str(token);
            } else if token == "redacted" {
                // Already replaced as our own key: `[redacted]`, not `[[redacted]]`.
                out.push_str(token);
                redact_next = false;
            } else {
                out.push_str(REDACTED);
                redact_next = false;
            }
            continue;
        }
        if SCHEMES.contains(&lower.as_str()) || SECRET_NAMES.contains(&lower.as_str()) {
            redact_next = true;
            out.push_str(token);
        } else if is_path(token, &lower) {
            out.push_str(PATH);
        } else if is_key_like(token, &lower) {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push_str("...");
    }
    out
}

/// Characters that end a token: white space, quotes, and JSON, header and query punctuation.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'`,;:=()[]{}<>&?|".contains(c)
}

fn is_path(token: &str, lower: &str) -> bool {
    if !token.contains('/') && !token.contains('\\') {
        return false;
    }
    let trimmed = lower.trim_end_matches(|c: char| c == '.' || c.is_ascii_digit());
    PATH_ROOTS.iter().any(|root| lower.starts_with(root))
        || lower.starts_with('\\')
        || SOURCE_EXTENSIONS
            .iter()
            .any(|ext| lower.ends_with(ext) || trimmed.ends_with(ext))
}

fn is_key_like(token: &str, lower: &str) -> bool {
    let core = token.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let lower_core = lower.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if KEY_PREFIXES.iter().any(|p| lower_core.starts_with(p)) && core.len() >= 12 {
        return true;
    }
    // Base62-ish keys: upper, lower and digits in one run of key characters.
    let keyish = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    for run in core.split(|c: char| !keyish(c)) {
        let has = |f: fn(&char) -> bool| run.chars().any(|c| f(&c));
        if run.len() >= 20
            && has(char::is_ascii_uppercase)
            && has(char::is_ascii_lowercase)
            && has(char::is_ascii_digit)
        {
            return true;
        }
    }
    // Hex or lowercase keys: a long unbroken run of letters and digits.
    core.split(|c: char| !c.is_ascii_alphanumeric()).any(|run| {
        run.len() >= 32
            && run.chars().any(|c| c.is_ascii_digit())
            && run.chars().any(|c| c.is_ascii_alphabetic())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> String {
        redact(text, &[])
    }

    #[test]
    fn the_configured_key_is_replaced_wherever_it_appears() {
        let secrets = vec![
            "Bearer my-own-key-1".to_string(),
            "my-own-key-1".to_string(),
        ];
        let out = redact(
            "bad key my-own-key-1 (sent as Bearer my-own-key-1)",
            &secrets,
        );
        assert!(!out.contains("my-own-key-1"), "{out}");
        assert_eq!(out, "bad key [redacted] (sent as [redacted])");
        let out = redact("echo Authorization: Bearer my-own-key-1", &secrets);
        assert_eq!(out, "echo Authorization: [redacted]");
    }

    #[test]
    fn authorization_header_echoes_lose_their_value() {
        for text in [
            "Authorization: Bearer abc.def.ghi",
            r#"{"headers": {"authorization": "Bearer abc.def.ghi"}}"#,
            "x-api-key: abc.def.ghi",
            "proxy-authorization=Basic abc.def.ghi",
            "?api_key=abc.def.ghi&x=1",
        ] {
            let out = clean(text);
            assert!(!out.contains("abc.def.ghi"), "{text} -> {out}");
            assert!(out.contains(REDACTED), "{text} -> {out}");
        }
    }

    #[test]
    fn key_shaped_tokens_are_replaced() {
        for key in [
            "sk-proj-abcdef123456",
            "sk-ant-api03-xyz789abc",
            "AIzaSyD1234567890abcdefghij",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "0123456789abcdef0123456789abcdef",
            "Ab3dEf6hIj9kLm2nOp5q",
        ] {
            let out = clean(&format!("Incorrect API key provided: {key}."));
            assert!(!out.contains(key), "{key} -> {out}");
        }
    }

    #[test]
    fn ordinary_messages_are_kept() {
        for text in [
            "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
            "Invalid URL (POST /v1/chat/completions)",
            "The model `claude-3-5-sonnet-20241022` does not exist",
            "Rate limit reached for gpt-4o-mini-2024-07-18 in organization org-abc on tokens per min",
            "Unsupported value: 'temperature' does not support 0.5 with this model.",
        ] {
            assert_eq!(clean(text), text);
        }
    }

    #[test]
    fn server_internals_are_withheld() {
        let text = "Internal error\nTraceback (most recent call last):\n  File \"/usr/lib/python3.11/site-packages/vllm/engine.py\", line 12, in run\nKeyError: 'x'";
        let out = clean(text);
        assert_eq!(out, "Internal error\n[traceback withheld]");
        let out = clean("failed in /app/server/main.py:42 and C:\\srv\\model.py");
        assert!(
            !out.contains("main.py") && !out.contains("model.py"),
            "{out}"
        );
        assert!(out.contains(PATH), "{out}");
    }

    #[test]
    fn long_text_is_cut() {
        let out = clean(&"word ".repeat(1000));
        assert!(out.chars().count() <= MAX_MESSAGE_CHARS + 3);
    }
}
