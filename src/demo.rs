//! What `deliberate serve --demo` tells a newcomer to try: routing, the response cache, a
//! rate limit and a budget refusal, each as a ready-to-paste `curl` with the header or
//! error code to look for. The demo's tenants are in `config::demo()`.
//!
//! The steps are data, not prose: `guide()` prints them, and `tests/demo.rs` sends the same
//! requests, in the same order, to a demo gateway and checks that each shows what the guide
//! says, so the printed text cannot drift from what the demo does.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::{DEMO_API_KEY, DEMO_TRIAL_API_KEY};

/// The prompts the steps use.
pub const GREETING: &str = "hi there!";
pub const PROOF: &str = "Prove that the square root of 2 is irrational.";
pub const QUESTION: &str = "What is the capital of France?";

/// One thing to try: send `body` with `key`, `times` times in a row; the last answer shows
/// `expect`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub title: &'static str,
    pub key: &'static str,
    pub body: &'static str,
    pub times: u32,
    pub expect: Expect,
}

/// What the last answer of a step shows.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// 200 with this header value.
    Header(&'static str, &'static str),
    /// An OpenAI-shaped error with this status and `error.code`.
    Error(u16, &'static str),
}

/// The steps, in the order they are meant to be tried (the trial tenant's budget refusal
/// uses one of its five requests a minute, before the rate-limit step uses the rest).
pub fn steps() -> [Step; 5] {
    const GREETING_BODY: &str =
        r#"{"model": "auto", "messages": [{"role": "user", "content": "hi there!"}]}"#;
    const PROOF_BODY: &str = r#"{"model": "auto", "messages": [{"role": "user", "content": "Prove that the square root of 2 is irrational."}]}"#;
    const QUESTION_BODY: &str = r#"{"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "What is the capital of France?"}]}"#;
    [
        Step {
            title: "Routing: a greeting goes to the fast model",
            key: DEMO_API_KEY,
            body: GREETING_BODY,
            times: 1,
            expect: Expect::Header("x-deliberate-tier", "fast"),
        },
        Step {
            title: "Routing: a proof goes to the reasoning model (see x-deliberate-reason)",
            key: DEMO_API_KEY,
            body: PROOF_BODY,
            times: 1,
            expect: Expect::Header("x-deliberate-tier", "reasoning"),
        },
        Step {
            title: "Cache: the same deterministic request twice; the second is a hit (and costs nothing)",
            key: DEMO_API_KEY,
            body: QUESTION_BODY,
            times: 2,
            expect: Expect::Header("x-deliberate-cache", "hit"),
        },
        Step {
            title: "Budget: tenant `trial` has $0.01 a day; the proof's worst case does not fit",
            key: DEMO_TRIAL_API_KEY,
            body: PROOF_BODY,
            times: 1,
            expect: Expect::Error(429, "budget_exceeded"),
        },
        Step {
            title: "Rate limit: tenant `trial` may send 5 requests a minute",
            key: DEMO_TRIAL_API_KEY,
            body: GREETING_BODY,
            times: 6,
            expect: Expect::Error(429, "rate_limit_exceeded"),
        },
    ]
}

/// The `curl` command line of one step against `api`.
pub fn curl(step: &Step, api: SocketAddr) -> String {
    let (show, filter) = match step.expect {
        Expect::Header(name, _) => ("-si", format!(" | grep -iE '^(HTTP|{name})'")),
        Expect::Error(..) => ("-s", String::new()),
    };
    let call = format!(
        "curl {show} http://{api}/v1/chat/completions -H 'Authorization: Bearer {}' \\\n      -H 'Content-Type: application/json' -d '{}'{filter}",
        step.key, step.body
    );
    if step.times > 1 {
        let runs = (1..=step.times)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        format!("for i in {runs}; do\n    {call}; echo\n  done")
    } else {
        call
    }
}

/// Everything `serve --demo` prints after it has bound its listeners.
pub fn guide(api: SocketAddr, admin: SocketAddr) -> String {
    let mut out = format!(
        r#"
deliberate demo is running: simulated models (answers start with "[simulated]"), no keys
needed upstream. Two tenants:

  key {DEMO_API_KEY}   tenant `demo`: response cache on (deterministic requests),
                             600 requests a minute (see the x-ratelimit-* headers)
  key {DEMO_TRIAL_API_KEY}  tenant `trial`: 5 requests a minute, a $0.01 daily budget

Try, in this order:
"#
    );
    for (n, step) in steps().iter().enumerate() {
        let shows = match step.expect {
            Expect::Header(name, value) => format!("look for: {name}: {value}"),
            Expect::Error(status, code) => {
                format!("the last answer: {status}, \"code\": \"{code}\"")
            }
        };
        let _ = write!(
            out,
            "\n  # {}. {}\n  # {shows}\n  {}\n",
            n + 1,
            step.title,
            curl(step, api)
        );
    }
    let _ = write!(
        out,
        r#"
  # From Python (pip install openai):
  python3 -c '
from openai import OpenAI
client = OpenAI(base_url="http://{api}/v1", api_key="{DEMO_API_KEY}")
r = client.chat.completions.with_raw_response.create(model="auto", messages=[{{"role": "user", "content": "{GREETING}"}}])
print(r.headers["x-deliberate-tier"], r.parse().choices[0].message.content)'

Metrics (routing, cache hits and money saved, rate-limit and budget refusals):
  curl -s http://{admin}/metrics | grep -E '^deliberate_(requests|cache_requests|rate_limited|budget_actions)_total'
"#
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_shows_both_keys_and_every_step_once() {
        let api: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let text = guide(api, admin);
        assert!(text.contains(DEMO_API_KEY) && text.contains(DEMO_TRIAL_API_KEY));
        for step in steps() {
            assert_eq!(text.matches(&curl(&step, api)).count(), 1, "{}", step.title);
        }
        assert!(text.contains("http://127.0.0.1:9090/metrics"));
    }

    #[test]
    fn the_step_bodies_are_json_with_the_named_prompts() {
        let prompts: Vec<String> = steps()
            .iter()
            .map(|s| {
                let body: serde_json::Value = serde_json::from_str(s.body).unwrap();
                body["messages"][0]["content"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(prompts, [GREETING, PROOF, QUESTION, PROOF, GREETING]);
    }
}
