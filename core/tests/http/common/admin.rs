//! The operator's side: a host with an operator credential, and admin requests.

use crochet::config::{Config, Secret};
use serde_json::Value;

use super::*;

/// The operator credential test hosts run with (`with_admin`).
pub const ADMIN_TOKEN: &str = "test-operator-credential-0123456789abcdef";

/// Configures the operator credential (`TestApp::start(backend, with_admin)`).
pub fn with_admin(config: &mut Config) {
    config.admin_token = Some(Secret::new(ADMIN_TOKEN));
}

impl Client {
    /// `GET` an admin route with the operator credential.
    pub async fn admin_get(&self, path: &str) -> Reply {
        self.get(path, Some(ADMIN_TOKEN)).await
    }

    /// Asks the host to reload its plugins (`POST /admin/plugins/reload`).
    pub async fn reload_plugins(&self) -> Reply {
        self.admin_post("/admin/plugins/reload", None).await
    }

    /// `POST` an admin route with the operator credential and an optional JSON body
    /// (none: an empty body without a content type).
    pub async fn admin_post(&self, path: &str, body: Option<Value>) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            body.as_ref(),
        )
        .await
    }
}
