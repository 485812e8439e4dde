//! SIGHUP reloads the config. In its own test binary (its own process) because the signal
//! goes to the whole process: no other test's gateway can see it, and the test installs a
//! SIGHUP handler before signalling, so the default action (terminate) can never run.

#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn sighup_reloads_the_config() {
    // From here on SIGHUP is handled by tokio for the whole process, never fatal.
    let _guard = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler installs");
    tokio::time::timeout(Duration::from_secs(30), async {
        let upstream = MockUpstream::start(|r| {
            MockReply::json(completion(r.body["model"].as_str().unwrap_or("?"), "hi"))
        })
        .await;
        let (var, token) = admin_token("sighup");
        // Polling off: only the signal can trigger the reload.
        let config = openai_config(
            upstream.addr,
            &format!("[server]\nadmin_token_env = \"{var}\"\nreload_poll_ms = 0\n"),
        );
        let gw = Gateway::start_reloadable(
            &config,
            &[(
                "acme",
                tenant_toml("acme", KEY, "chat-model", "think-model", ""),
            )],
        )
        .await;
        gw.write_policy(
            "beta",
            &tenant_toml("beta", OTHER_KEY, "chat-model", "think-model", ""),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gw.admin_config(&token).await["generation"], 1, "no polling");

        // The reload task may not listen yet right after start: signal until it reloads.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
            tokio::time::sleep(Duration::from_millis(200)).await;
            if gw.admin_config(&token).await["generation"].as_u64() >= Some(2) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "SIGHUP did not reload"
            );
        }
        let config = gw.admin_config(&token).await;
        assert_eq!(config["tenants"], serde_json::json!(["acme", "beta"]));
    })
    .await
    .expect("test finished in time");
}
