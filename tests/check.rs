//! `deliberate check`: every kind of config mistake is reported as `file:line:column: message`
//! with exit status 1; the shipped config and policies pass.

use std::path::Path;
use std::process::Command;

fn check(config: &str, policies: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("deliberate.toml");
    std::fs::write(&config_path, config).unwrap();
    let policies_dir = dir.path().join("policies");
    std::fs::create_dir(&policies_dir).unwrap();
    for (name, text) in policies {
        std::fs::write(policies_dir.join(name), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_deliberate"))
        .current_dir(dir.path())
        .args(["check", "deliberate.toml", "policies"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const GOOD_CONFIG: &str = r#"
[providers.sim]
kind = "simulated"

[models.small]
provider = "sim"
tier = "fast"

[models.big]
provider = "sim"
tier = "reasoning"
"#;

const GOOD_TENANT: &str = r#"api_keys = [{ sha256 = "c7fa7b6662c547fa9cadb4ad755e0f63c0dd1328e4d703b96601d331245f8bf4" }]
fast_model = "small"
reasoning_model = "big"
"#;

#[test]
fn the_shipped_config_and_policies_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_deliberate"))
        .current_dir(root)
        .args(["check", "deliberate.toml", "policies"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok: "), "{stdout}");
}

#[test]
fn a_good_config_passes() {
    let (code, out) = check(GOOD_CONFIG, &[("acme.toml", GOOD_TENANT)]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn each_mistake_names_file_line_column_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        // (config, tenant, expected line)
        ("[server]\nlisten = \"nope\"\n", GOOD_TENANT, "deliberate.toml:2:10: expected a socket address"),
        ("[server]\nlisen = \"x\"\n", GOOD_TENANT, "deliberate.toml:2:1: unknown field `lisen`"),
        ("[providers.p]\nkind = \"openaii\"\n", GOOD_TENANT, "deliberate.toml:2:8: unknown provider kind `openaii`"),
        ("[providers.p]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n", GOOD_TENANT, "deliberate.toml:3:12: base_url must be an http"),
        ("[providers.p]\nkind = \"openai\"\nbase_url = \"http://x\"\napi_key_env = \"lower-case\"\n", GOOD_TENANT, "deliberate.toml:4:15: api_key_env must name"),
        ("[providers.p]\nkind = \"simulated\"\ntokens_per_second = 0.0\n", GOOD_TENANT, "deliberate.toml:3:21: tokens_per_second must be a positive"),
        ("[models.m]\nprovider = \"ghost\"\ntier = \"fast\"\n", GOOD_TENANT, "deliberate.toml:2:12: provider `ghost` is not declared"),
        ("[providers.s]\nkind = \"simulated\"\n[models.m]\nprovider = \"s\"\ntier = \"medium\"\n", GOOD_TENANT, "deliberate.toml:5:8: unknown tier `medium`"),
        ("[providers.s]\nkind = \"simulated\"\n[models.auto]\nprovider = \"s\"\ntier = \"fast\"\n", GOOD_TENANT, "deliberate.toml:3:9: `auto` is a virtual model name"),
        ("[providers.s]\nkind = \"simulated\"\n[models.m]\nprovider = \"s\"\ntier = \"fast\"\ncapabilities = { on_unsupported = \"explode\" }\n", GOOD_TENANT, "deliberate.toml:6:35: on_unsupported must be"),
        ("[providers.s]\nkind = \"simulated\"\n[models.m]\nprovider = \"s\"\ntier = \"fast\"\nprice = { input_per_1m = -1.0 }\n", GOOD_TENANT, "deliberate.toml:6:26: price must be a non-negative"),
        ("[providers.s]\nkind = \"simulated\"\n[models.m]\nprovider = \"s\"\ntier = \"fast\"\ncapabilities = { max_output_tokens = 0 }\n", GOOD_TENANT, "deliberate.toml:6:38: max_output_tokens must be between 1 and"),
        ("[tiers.fast]\nfirst_token_timeout_ms = 0\n", GOOD_TENANT, "deliberate.toml:2:26: must be greater than 0"),
        ("[tiers.fast]\nfirst_token_timeout_ms = 9000\ntotal_timeout_ms = 10\n", GOOD_TENANT, "deliberate.toml:2:26: first_token_timeout_ms must not exceed"),
        ("[server]\napi_threads = 0\n", GOOD_TENANT, "deliberate.toml:2:15: api_threads must be between 1 and 256"),
        ("[server]\napi_threads = 100000\n", GOOD_TENANT, "deliberate.toml:2:15: api_threads must be between 1 and 256"),
    ];
    for (config_extra, tenant, expected) in cases {
        let config = format!("{GOOD_CONFIG}\n{config_extra}");
        // The extra lines follow GOOD_CONFIG: shift the expected line number accordingly.
        let offset = GOOD_CONFIG.lines().count() + 1;
        let expected = shift_line(expected, offset);
        let (code, out) = check(&config, &[("acme.toml", tenant)]);
        assert_eq!(code, 1, "{config_extra}\n{out}");
        assert!(
            out.lines().any(|l| l.starts_with(&expected)),
            "want `{expected}` in:\n{out}"
        );
    }
}

fn shift_line(expected: &str, offset: usize) -> String {
    let mut parts = expected.splitn(3, ':');
    let (file, line, rest) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    format!("{file}:{}:{rest}", line.parse::<usize>().unwrap() + offset)
}

#[test]
fn tenant_mistakes_are_reported_in_the_policy_file() {
    let cases: &[(&str, &str)] = &[
        ("api_keys = [{ sha256 = \"abc\" }]\nfast_model = \"small\"\nreasoning_model = \"big\"\n", "policies/acme.toml:1:24: sha256 must be 64 hex"),
        ("api_keys = [{}]\nfast_model = \"small\"\nreasoning_model = \"big\"\n", "policies/acme.toml:1:13: an API key needs exactly one"),
        ("fast_model = \"ghost\"\nreasoning_model = \"big\"\n", "policies/acme.toml:1:14: model `ghost` is not declared"),
        ("fast_model = \"big\"\nreasoning_model = \"big\"\n", "policies/acme.toml:1:14: model `big` is of tier reasoning, not fast"),
        ("fast_model = \"small\"\nreasoning_model = \"big\"\nallowed_models = [\"nope\"]\n", "policies/acme.toml:3:19: model `nope` is not declared"),
        ("fast_model = \"small\"\nreasoning_model = \"big\"\n[auto]\nreasoning_threshold = 2.0\n", "policies/acme.toml:4:23: reasoning_threshold must be between 0 and 1"),
        ("fast_model = \"small\"\nreasoning_model = \"big\"\n[auto]\ndefault_tier = \"slow\"\n", "policies/acme.toml:4:16: unknown tier `slow`"),
        ("fast_model = \"small\"\nreasonin_model = \"big\"\n", "policies/acme.toml:2:1: unknown field `reasonin_model`"),
        ("name = \"bad name!\"\nfast_model = \"small\"\nreasoning_model = \"big\"\n", "policies/acme.toml:1:8: tenant name must be"),
    ];
    for (tenant, expected) in cases {
        let (code, out) = check(GOOD_CONFIG, &[("acme.toml", tenant)]);
        assert_eq!(code, 1, "{tenant}\n{out}");
        assert!(
            out.lines().any(|l| l.starts_with(expected)),
            "want `{expected}` in:\n{out}"
        );
    }
}

#[test]
fn cross_file_mistakes_are_caught() {
    // The same key for two tenants.
    let (code, out) = check(
        GOOD_CONFIG,
        &[("a.toml", GOOD_TENANT), ("b.toml", GOOD_TENANT)],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("policies/b.toml:1:24: this API key already belongs to another tenant"),
        "{out}"
    );
    // No tenant at all.
    let (code, out) = check(GOOD_CONFIG, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("no tenant policies"), "{out}");
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let config = format!("{GOOD_CONFIG}\n[server]\nlisten = \"x\"\nadmin_listen = \"y\"\n");
    let (code, out) = check(
        &config,
        &[(
            "acme.toml",
            "fast_model = \"nope\"\nreasoning_model = \"nope2\"\n",
        )],
    );
    assert_eq!(code, 1);
    assert!(out.contains("4 problem(s) found"), "{out}");
}

#[test]
fn policy_section_mistakes_name_the_file_line_and_key() {
    let base = "fast_model = \"small\"\nreasoning_model = \"big\"\n";
    let cases: &[(&str, &str, &str)] = &[
        // (policy sections after `base`, expected `file:line:`, expected key in the message)
        (
            "[budget]\ndaily_usd = -5.0\n",
            "policies/acme.toml:4:",
            "budget.daily_usd must be a positive amount",
        ),
        (
            "[budget]\nmonthly_usd = 0.0\n",
            "policies/acme.toml:4:",
            "budget.monthly_usd must be a positive amount",
        ),
        (
            "[budget]\nper_request_usd = nan\n",
            "policies/acme.toml:4:",
            "budget.per_request_usd must be a positive amount",
        ),
        (
            "[budget]\nsoft_limit = 1.5\n",
            "policies/acme.toml:4:",
            "budget.soft_limit must be a fraction",
        ),
        (
            "[budget]\nsoft_reasoning_threshold = 0.0\n",
            "policies/acme.toml:4:",
            "budget.soft_reasoning_threshold must be a fraction",
        ),
        (
            "[budget]\non_limit = \"shrug\"\n",
            "policies/acme.toml:4:",
            "budget.on_limit must be `downgrade` or `reject`",
        ),
        (
            "[budget]\ndefault_max_tokens = 0\n",
            "policies/acme.toml:4:",
            "budget.default_max_tokens must be between",
        ),
        (
            "[budget]\ndaily_limit = 5\n",
            "policies/acme.toml:4:",
            "unknown field `daily_limit`",
        ),
        (
            "[rate_limits]\nrequests_per_minute = 0\n",
            "policies/acme.toml:4:",
            "rate_limits.requests_per_minute must be between",
        ),
        (
            "[rate_limits]\ntokens_per_minute = 99999999999\n",
            "policies/acme.toml:4:",
            "rate_limits.tokens_per_minute must be between",
        ),
        (
            "[latency.reasoning]\ntotal_ms = 0\n",
            "policies/acme.toml:4:",
            "latency.reasoning.total_ms must be greater than 0",
        ),
        (
            "[latency.fast]\nfirst_token_ms = 900\ntotal_ms = 100\n",
            "policies/acme.toml:4:",
            "latency.fast.first_token_ms must not exceed total_ms",
        ),
        (
            "[latency.medium]\ntotal_ms = 10\n",
            "policies/acme.toml:3:",
            "unknown field `medium`",
        ),
        (
            "[fallbacks]\nreasoning = [\"ghost\"]\n",
            "policies/acme.toml:4:",
            "fallbacks.reasoning: model `ghost` is not declared",
        ),
        (
            "[fallbacks]\nfast = [\"other\"]\n",
            "policies/acme.toml:4:",
            "fallbacks.fast: model `other` is not one of this tenant's models",
        ),
        (
            "[stickiness]\nttl_seconds = 0\n",
            "policies/acme.toml:4:",
            "stickiness.ttl_seconds must be greater than 0",
        ),
        (
            "[shadow]\nroute_to = \"medium\"\n",
            "policies/acme.toml:4:",
            "shadow.route_to must be `fast` or `reasoning`",
        ),
    ];
    let config = format!("{GOOD_CONFIG}\n[models.other]\nprovider = \"sim\"\ntier = \"fast\"\n");
    for (sections, at, message) in cases {
        let tenant = format!("{base}{sections}");
        let (code, out) = check(&config, &[("acme.toml", &tenant)]);
        assert_eq!(code, 1, "{sections}\n{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(at) && l.contains(message)),
            "want `{at}...{message}` in:\n{out}"
        );
    }
}

#[test]
fn deployment_and_resilience_mistakes_name_the_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[models.m]\nprovider = \"sim\"\ndeployments = [{ provider = \"sim\" }]\ntier = \"fast\"\n", "a model has either `provider` or `deployments`"),
        ("[models.m]\ntier = \"fast\"\n", "model needs a `provider` or `deployments`"),
        ("[models.m]\ntier = \"fast\"\ndeployments = [{ provider = \"sim\", weight = 0 }]\n", "deployment weight must be between 1 and 1000"),
        ("[models.m]\ntier = \"fast\"\ndeployments = [{ provider = \"ghost\" }]\n", "provider `ghost` is not declared"),
        ("[models.m]\ntier = \"fast\"\ndeployments = [{ provider = \"sim\" }, { provider = \"sim\" }]\n", "provider `sim` is used by two deployments"),
        ("[resilience]\nmax_retries = 50\n", "resilience.max_retries must be at most 10"),
        ("[resilience]\nretry_budget_ratio = 2.0\n", "resilience.retry_budget_ratio must be between 0 and 1"),
        ("[resilience]\nbreaker_failures = 0\n", "must be greater than 0"),
        ("[resilience]\nmax_retry_after_ms = 0\n", "must be greater than 0"),
        ("[resilience]\nmax_retry_after_ms = 3600001\n", "resilience.max_retry_after_ms must be at most 3600000"),
        ("[resilience]\nmax_retry_after_ms = -5\n", "invalid value: integer `-5`, expected u64"),
        ("[server]\nadmin_token_env = \"not an env\"\n", "admin_token_env must name an environment variable"),
    ];
    for (extra, message) in cases {
        let config = format!("{GOOD_CONFIG}\n{extra}");
        let (code, out) = check(&config, &[("acme.toml", GOOD_TENANT)]);
        assert_eq!(code, 1, "{extra}\n{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("deliberate.toml:") && l.contains(message)),
            "want `{message}` in:\n{out}"
        );
    }
}

#[test]
fn cache_mistakes_name_the_file_line_and_key() {
    // Tenant `[cache]` sections: (section, `file:line:col: ` prefix, message).
    let cases: &[(&str, &str, &str)] = &[
        (
            "[cache]\nenabled = true\nttl_seconds = 0\n",
            "policies/acme.toml:7:15: ",
            "cache.ttl_seconds must be between 1 and 2592000",
        ),
        (
            "[cache]\nmax_entry_bytes = 0\n",
            "policies/acme.toml:6:19: ",
            "cache.max_entry_bytes must be between 1 and 1073741824",
        ),
        (
            "[cache]\nenabled = \"yes\"\n",
            "policies/acme.toml:6:11: ",
            "invalid type",
        ),
        (
            "[cache]\nenable = true\n",
            "policies/acme.toml:6:1: ",
            "unknown field `enable`",
        ),
    ];
    for (section, at, message) in cases {
        let tenant = format!("{GOOD_TENANT}\n{section}");
        let (code, out) = check(GOOD_CONFIG, &[("acme.toml", &tenant)]);
        assert_eq!(code, 1, "{section}\n{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(at) && l.contains(message)),
            "want `{at}...{message}` in:\n{out}"
        );
    }
    let tenant = format!(
        "{GOOD_TENANT}\n[cache]\nenabled = true\nttl_seconds = 60\nmax_entry_bytes = 4096\ncache_nondeterministic = true\n"
    );
    let (code, out) = check(GOOD_CONFIG, &[("acme.toml", &tenant)]);
    assert_eq!(code, 0, "{out}");
    // The global bound in deliberate.toml.
    for (extra, message) in [
        ("[cache]\nmax_bytes = 0\n", "must be greater than 0"),
        ("[cache]\nmax_entries = 5\n", "unknown field `max_entries`"),
    ] {
        let (code, out) = check(
            &format!("{GOOD_CONFIG}\n{extra}"),
            &[("acme.toml", GOOD_TENANT)],
        );
        assert_eq!(code, 1, "{extra}\n{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("deliberate.toml:") && l.contains(message)),
            "want `{message}` in:\n{out}"
        );
    }
}

#[test]
fn check_prints_per_tenant_which_models_serve_which_endpoint() {
    let config =
        format!("{GOOD_CONFIG}\n[models.vectors]\nprovider = \"sim\"\nkind = \"embedding\"\n");
    let with_embeddings = format!("{GOOD_TENANT}embedding_model = \"vectors\"\n");
    let other = GOOD_TENANT.replace("c7fa7b", "d7fa7b");
    let (code, out) = check(
        &config,
        &[("acme.toml", &with_embeddings), ("zed.toml", &other)],
    );
    assert_eq!(code, 0, "{out}");
    let chat = "  chat.completions, responses, messages: auto (fast: small, reasoning: big), \
                fast (small), reasoning (big), small, big";
    let acme = format!(
        "tenant acme:\n{chat}\n  embeddings: auto (vectors), fast (vectors), reasoning (vectors), vectors\n"
    );
    assert!(out.contains(&acme), "want\n{acme}in:\n{out}");
    // A tenant without an embedding model has none for embeddings, even if one is declared.
    let zed = format!("tenant zed:\n{chat}\n  embeddings: none\n");
    assert!(out.contains(&zed), "want\n{zed}in:\n{out}");
}
