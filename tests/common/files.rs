//! Test harness, part two: a gateway started from files in a temp dir that it hot-reloads
//! (`deliberate::run_with_reload`), helpers to rewrite those files, and admin API calls.

use super::{client, read_text, Gateway, TEST_TIMEOUT};

impl Gateway {
    /// Like `start`, but through `deliberate::run_with_reload`: the gateway reloads its files
    /// (on SIGHUP, on file change, on `POST /admin/reload`). Rewrite them with
    /// `write_config` / `write_policy` / `remove_policy`.
    pub async fn start_reloadable(config: &str, tenants: &[(&str, String)]) -> Gateway {
        Gateway::launch(config, tenants, true).await
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
