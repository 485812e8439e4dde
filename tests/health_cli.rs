//! `deliberate health`, the container image's HEALTHCHECK (deploy/Dockerfile): exit 0 when
//! the admin listener's /readyz answers 200, 1 for any other status, no listener, or a URL
//! that is not http(s); always within its timeout.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Runs `deliberate health ARGS` off the async runtime (the gateway keeps serving).
async fn health(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_deliberate"))
            .arg("health")
            .args(args)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_only_for_a_ready_gateway() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let upstream = MockUpstream::ok("hi").await;
        let gw = Gateway::with_openai_upstream(&upstream, "").await;

        let ready = health(vec!["--url".into(), format!("http://{}/readyz", gw.admin)]).await;
        assert!(ready.status.success(), "{ready:?}");
        assert!(String::from_utf8_lossy(&ready.stdout).contains("200"));

        let missing = health(vec!["--url".into(), format!("http://{}/nope", gw.admin)]).await;
        assert_eq!(missing.status.code(), Some(1), "{missing:?}");
        assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

        // Nothing listens there any more.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let started = tokio::time::Instant::now();
        let refused = health(vec![
            "--url".into(),
            format!("http://{closed}/readyz"),
            "--timeout-ms".into(),
            "1000".into(),
        ])
        .await;
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let not_http = health(vec!["--url".into(), "file:///etc/passwd".into()]).await;
        assert_eq!(not_http.status.code(), Some(1), "{not_http:?}");
    })
    .await
    .expect("test finished in time");
}
