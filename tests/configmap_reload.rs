//! A Kubernetes ConfigMap update reaches a running gateway without a restart, as
//! deploy/k8s/ promises. The kubelet publishes a ConfigMap volume with its "atomic writer":
//! the files live in a hidden `..<timestamp>` directory, `..data` is a symlink to it, and
//! each key is a symlink `name -> ..data/name`. An update writes a new timestamped
//! directory, points `..data_tmp` at it, renames that over `..data` (one atomic swap),
//! adds or removes the key symlinks and deletes the old directory: no file the gateway
//! names is ever written in place. `ConfigMapDir` does exactly that here.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bound on a whole test.
const WHOLE_TEST: Duration = Duration::from_secs(30);
/// How long a swap may take to go live (the gateway polls every 50 ms here).
const RELOAD_WITHIN: Duration = Duration::from_secs(10);

/// A directory laid out like a mounted ConfigMap volume.
struct ConfigMapDir {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMapDir {
    fn new(dir: PathBuf) -> ConfigMapDir {
        fs::create_dir(&dir).unwrap();
        ConfigMapDir { dir, generation: 0 }
    }

    /// Publishes `files` as the ConfigMap's whole new content, the kubelet's way.
    fn publish(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let stamp = format!(
            "..2026_01_01_00_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        );
        fs::create_dir(self.dir.join(&stamp)).unwrap();
        for (name, text) in files {
            fs::write(self.dir.join(&stamp).join(name), text).unwrap();
        }
        let previous = fs::read_link(self.dir.join("..data")).ok();
        symlink(&stamp, self.dir.join("..data_tmp")).unwrap();
        fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), link).unwrap();
            }
        }
        for entry in fs::read_dir(&self.dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.starts_with("..") && !files.iter().any(|(n, _)| *n == name) {
                fs::remove_file(self.dir.join(name)).unwrap();
            }
        }
        if let Some(previous) = previous {
            fs::remove_dir_all(self.dir.join(previous)).unwrap();
        }
    }
}

fn config(upstream: &MockUpstream, chat_model_2_upstream: &str) -> String {
    openai_config(
        upstream.addr,
        &format!(
            "[models.chat-model-2]\nprovider = \"mock\"\ntier = \"fast\"\nupstream_model = \"{chat_model_2_upstream}\"\n\n[server]\nreload_poll_ms = 50\n"
        ),
    )
}

async fn status_and_model(api: std::net::SocketAddr, key: &str) -> (u16, String) {
    let r = tokio::time::timeout(
        TEST_TIMEOUT,
        client()
            .post(format!("http://{api}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
            .send(),
    )
    .await
    .expect("answer in time")
    .expect("request sent");
    let model = r
        .headers()
        .get("x-deliberate-model")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), model)
}

/// Polls until `key` gets `want` (status, model) or `RELOAD_WITHIN` passes.
async fn eventually(api: std::net::SocketAddr, key: &str, want: (u16, &str), what: &str) {
    let deadline = tokio::time::Instant::now() + RELOAD_WITHIN;
    loop {
        let got = status_and_model(api, key).await;
        if (got.0, got.1.as_str()) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {got:?} after {RELOAD_WITHIN:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_configmap_swap_of_tenants_and_config_goes_live_without_a_restart() {
    tokio::time::timeout(WHOLE_TEST, async {
        let upstream = MockUpstream::start(|r| {
            let model = r.body["model"].as_str().unwrap_or("?").to_string();
            MockReply::json(completion(&model, "hello"))
        })
        .await;
        let tmp = tempfile::tempdir().unwrap();
        let mut config_map = ConfigMapDir::new(tmp.path().join("config"));
        let mut tenants_map = ConfigMapDir::new(tmp.path().join("policies"));
        let acme = |fast: &str| tenant_toml("acme", KEY, fast, "think-model", "");
        config_map.publish(&[("deliberate.toml", &config(&upstream, "first-upstream"))]);
        tenants_map.publish(&[("acme.toml", &acme("chat-model"))]);

        deliberate::install_crypto_provider();
        let paths = deliberate::reload::ConfigPaths {
            config: config_map.dir.join("deliberate.toml"),
            policies: tenants_map.dir.clone(),
        };
        let loaded = deliberate::config::load(&paths.config, &paths.policies)
            .unwrap_or_else(|p| panic!("invalid test config:\n{p}"));
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_addr = api.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        // Ends with the test's runtime; awaited below after the shutdown.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(deliberate::run_with_reload(
            api,
            admin,
            loaded.snapshot,
            paths,
            shutdown.clone(),
        ));

        assert_eq!(
            status_and_model(api_addr, KEY).await,
            (200, "chat-model".into())
        );
        assert_eq!(status_and_model(api_addr, OTHER_KEY).await.0, 401);

        // A new tenant and a changed one, in one swap of the tenants ConfigMap.
        let beta = tenant_toml("beta", OTHER_KEY, "chat-model", "think-model", "");
        tenants_map.publish(&[("acme.toml", &acme("chat-model-2")), ("beta.toml", &beta)]);
        eventually(api_addr, OTHER_KEY, (200, "chat-model"), "the new tenant").await;
        eventually(api_addr, KEY, (200, "chat-model-2"), "the changed tenant").await;
        assert_eq!(
            upstream.requests().last().unwrap().body["model"],
            "first-upstream"
        );

        // The config ConfigMap: chat-model-2 now has another name upstream.
        config_map.publish(&[("deliberate.toml", &config(&upstream, "second-upstream"))]);
        let deadline = tokio::time::Instant::now() + RELOAD_WITHIN;
        loop {
            assert_eq!(status_and_model(api_addr, KEY).await.0, 200);
            if upstream.requests().last().unwrap().body["model"] == "second-upstream" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the config swap never went live"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A tenant removed from the ConfigMap loses access.
        tenants_map.publish(&[("acme.toml", &acme("chat-model-2"))]);
        eventually(api_addr, OTHER_KEY, (401, ""), "the removed tenant").await;

        shutdown.cancel();
        server.await.unwrap();
    })
    .await
    .expect("test finished in time");
}
