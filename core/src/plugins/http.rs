//! HTTP handlers of the operator's plugin routes: what is loaded, and a reload. They are
//! mounted with the admin routes, behind the operator's token.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::inventory::PluginInfo;
use crate::app::{AppState, ReloadReport};
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::{Envelope, ok};

/// The plugin routes, relative to `/api/v1`.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins))
        .routes(routes!(reload_plugins))
}

/// The plugins in service: the policies in the order they run, then the scorer, each
/// with its source, the SHA-256 of its component and its failure mode.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, body = Envelope<Vec<PluginInfo>>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
async fn list_plugins(State(s): State<AppState>) -> Json<Envelope<Vec<PluginInfo>>> {
    ok(s.plugins.describe())
}

/// Reads the plugin configuration again (the same file and environment as at start-up),
/// compiles the plugins it names off the request path, tries each on sample calls, then
/// swaps them all in at once. Calls in flight finish on the old plugins. When anything
/// fails, nothing changes and the answer says which plugin failed and why.
#[utoipa::path(post, path = "/admin/plugins/reload", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, body = Envelope<ReloadReport>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 422, description = "A plugin failed to load or its trial call (`PLUGIN_RELOAD_REFUSED`); the running plugins go on serving", body = ErrorEnvelope),
    ))]
async fn reload_plugins(
    State(s): State<AppState>,
) -> Result<Json<Envelope<ReloadReport>>, ApiError> {
    let report = s.reload_plugins().await.inspect_err(|error| {
        tracing::warn!(%error, "plugin reload refused; the running plugins go on serving");
    })?;
    Ok(ok(report))
}
