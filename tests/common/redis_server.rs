//! A real `redis-server` for tests: started on a free loopback port, without persistence,
//! killed (by its PID, only the process started here) on `kill()` or drop. `start_tls()`
//! serves TLS only, with a throwaway CA and server certificate made by the `openssl` CLI.
//!
//! The binaries are `$REDIS_SERVER` / `$REDIS_CLI` or `redis-server` / `redis-cli` on PATH
//! (Debian's redis-server package brings both); `scripts/test.sh` installs them. A missing
//! binary fails the test: the Redis tests never skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// TLS mode: the directory holding `ca.crt`, `server.crt` and `server.key`.
    tls: Option<tempfile::TempDir>,
}

fn binary(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_string())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a plain-TCP server on a free port and waits (at most 5 s) until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// Starts a TLS-only server (`rediss://`); its CA certificate is `ca_file()`.
    pub fn start_tls() -> RedisServer {
        RedisServer::start_with(Some(super::certs::make_certificates()))
    }

    fn start_with(mut tls: Option<tempfile::TempDir>) -> RedisServer {
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                tls: tls.take(),
            };
            if server.spawn() {
                return server;
            }
            tls = server.tls.take();
        }
        panic!("redis-server did not come up on a free port after 5 attempts");
    }

    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut command = Command::new(binary("REDIS_SERVER", "redis-server"));
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(dir) => {
                let file = |name: &str| dir.path().join(name).display().to_string();
                command
                    .args([
                        "--port",
                        "0",
                        "--tls-port",
                        &port,
                        "--tls-auth-clients",
                        "no",
                    ])
                    .args(["--tls-cert-file", &file("server.crt")])
                    .args(["--tls-key-file", &file("server.key")])
                    .args(["--tls-ca-cert-file", &file("ca.crt")])
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): scripts/test.sh installs it \
                     (or: apt-get install redis-server, or set REDIS_SERVER)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|r| r.trim() == "PONG") {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                break; // exited: the port was taken meanwhile
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Runs one command through `redis-cli` (TLS when the server is); `None` if it fails.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let mut command = Command::new(binary("REDIS_CLI", "redis-cli"));
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(ca) = self.ca_file() {
            command.args(["--tls", "--cacert", &ca.display().to_string()]);
        }
        let out = command
            .args(args)
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): it comes with redis-server (or set REDIS_CLI)")
            });
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// How many response-cache entries Redis holds (keys `*:cache:*`).
    pub fn cache_entries(&self) -> usize {
        let keys = self
            .cli(&["KEYS", "*:cache:*"])
            .expect("redis answers KEYS");
        keys.lines().filter(|l| !l.trim().is_empty()).count()
    }

    /// Waits (at most 2 s) until Redis holds `n` cache entries: a replica writes its entry
    /// just after its response.
    pub async fn wait_for_cache_entries(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.cache_entries() < n {
            assert!(
                Instant::now() < deadline,
                "redis never held {n} cache entries"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (at most 2 s) until the number of cache entries stops changing: writes that
    /// follow earlier responses have all landed.
    pub async fn wait_for_cache_entries_to_settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = self.cache_entries();
        let mut unchanged = 0;
        while unchanged < 3 {
            assert!(Instant::now() < deadline, "cache entries never settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.cache_entries();
            unchanged = if now == last { unchanged + 1 } else { 0 };
            last = now;
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// TLS mode: the CA certificate that signed the server's.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|d| d.path().join("ca.crt"))
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
