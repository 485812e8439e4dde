//! Test harness, part two: a gateway started from files in a temp dir that it hot-reloads
//! (`deliberate::run_with_reload`), helpers to rewrite those files, and admin API calls.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{client, read_text, Gateway, TEST_TIMEOUT};

impl Gateway {
    /// Like `start`, but through `deliberate::run_with_reload`: the gateway reloads its files
    /// (on SIGHUP, on file change, on `POST /admin/reload`). Rewrite them with
    /// `write_config` / `write_policy` / `remove_policy`.
    pub async fn start_reloadable(config: &str, tenants: &[(&str, String)]) -> Gateway {
        deliberate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("deliberate.toml");
        std::fs::write(&config_path, config).unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        for (name, text) in tenants {
            std::fs::write(policies.join(format!("{name}.toml")), text).unwrap();
        }
        let loaded = deliberate::config::load(&config_path, &policies)
            .unwrap_or_else(|p| panic!("test config is invalid:\n{p}"));
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api_addr, admin_addr) = (api.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let paths = deliberate::reload::ConfigPaths {
            config: config_path,
            policies,
        };
        let task = tokio::spawn(deliberate::run_with_reload(
            api,
            admin,
            loaded.snapshot,
            paths,
            shutdown.clone(),
        ));
        Gateway {
            api: api_addr,
            admin: admin_addr,
            shutdown,
            task,
            _dir: dir,
        }
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("deliberate.toml")
    }

    pub fn policies_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("policies")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn write_policy(&self, name: &str, text: &str) {
        std::fs::write(self.policies_dir().join(format!("{name}.toml")), text).unwrap();
    }

    pub fn remove_policy(&self, name: &str) {
        std::fs::remove_file(self.policies_dir().join(format!("{name}.toml"))).unwrap();
    }

    /// A request to the admin listener, with `Authorization: Bearer token` if given.
    pub async fn admin_request(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = client().request(method, format!("http://{}{}", self.admin, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        tokio::time::timeout(TEST_TIMEOUT, request.send())
            .await
            .expect("admin request finished in time")
            .expect("admin request sent")
    }

    /// `POST /admin/reload` with `token`: the status and the JSON body.
    pub async fn admin_reload(&self, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .admin_request(http::Method::POST, "/admin/reload", Some(token))
            .await;
        let status = r.status().as_u16();
        (status, serde_json::from_str(&read_text(r).await).unwrap())
    }

    /// `GET /admin/config` with `token` (must succeed): the JSON body.
    pub async fn admin_config(&self, token: &str) -> serde_json::Value {
        let r = self
            .admin_request(http::Method::GET, "/admin/config", Some(token))
            .await;
        assert_eq!(r.status(), 200, "GET /admin/config");
        serde_json::from_str(&read_text(r).await).unwrap()
    }
}

/// Sets a process-unique environment variable to a fresh admin token; returns
/// `(variable name, token)` for `server.admin_token_env`.
pub fn admin_token(test: &str) -> (String, String) {
    let var = format!("DELIBERATE_TEST_ADMIN_TOKEN_{}", test.to_uppercase());
    let token = format!("adm-{test}-{}", uuid::Uuid::new_v4().simple());
    std::env::set_var(&var, &token);
    (var, token)
}
