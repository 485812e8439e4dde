//! The real `deliberate serve` binary as a child process, its stderr (the log) captured line
//! by line, for the tests of what the process itself writes and exports.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub struct GatewayProcess {
    pub api: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts `deliberate serve` with `config`, the tenant files, JSON logs and `env`; waits
    /// for its API listener.
    pub fn spawn(config: &str, tenants: &[(&str, String)], env: &[(&str, &str)]) -> Self {
        // For the test's own HTTP clients.
        deliberate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("deliberate.toml");
        std::fs::write(&config_path, config).unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        for (name, text) in tenants {
            std::fs::write(policies.join(format!("{name}.toml")), text).unwrap();
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_deliberate"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--policies")
            .arg(&policies)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .env("DELIBERATE_LOG", "info")
            .env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the gateway binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut process = GatewayProcess {
            api: "127.0.0.1:0".parse().unwrap(),
            child,
            lines,
            _dir: dir,
        };
        let listening = process.wait_for_line(Duration::from_secs(20), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("api listening on http://"))
        });
        let message = listening["message"].as_str().unwrap();
        process.api = message["api listening on http://".len()..].parse().unwrap();
        process
    }

    /// The process id (to read its threads from /proc).
    #[allow(dead_code)] // only tests/observability.rs reads it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    /// Every line written so far, as written.
    pub fn raw_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first log line (parsed as JSON) that `matches`, waiting up to `within`. Every line
    /// must be JSON.
    pub fn wait_for_line(
        &self,
        within: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            for line in self.raw_lines() {
                let value: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                if matches(&value) {
                    return value;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no matching log line; the log:\n{}",
                self.raw_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access log line of the request with id `request_id`.
    pub fn access_line(&self, request_id: &str) -> serde_json::Value {
        self.wait_for_line(Duration::from_secs(10), |v| {
            v["target"] == "deliberate::access" && v["request_id"] == request_id
        })
    }

    /// SIGTERM, then waits (bounded) for the process to drain and exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not exit after SIGTERM");
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        // Ours, by its own handle: never left running after a failed test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
