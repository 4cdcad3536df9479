//! An MCP client of the host's `/mcp`: the official SDK's (`rmcp`) Streamable HTTP client.

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, RequestMetaObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

use super::TestApp;

/// A connected (initialized) MCP client, authenticated with `key` when given.
pub async fn mcp_client(app: &TestApp, key: Option<&str>) -> RunningService<RoleClient, ()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", app.base));
    if let Some(key) = key {
        config = config.auth_header(key);
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("the MCP client initializes")
}

/// Calls `tool` with `arguments` (a JSON object) and, optionally, request `_meta`.
pub async fn mcp_call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    arguments: Value,
    meta: Option<Value>,
) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(
        arguments
            .as_object()
            .expect("arguments are an object")
            .clone(),
    );
    if let Some(Value::Object(meta)) = meta {
        params.meta = Some(RequestMetaObject(rmcp::model::MetaObject(meta)));
    }
    client
        .call_tool(params)
        .await
        .expect("the tool call is answered")
}

/// The `structuredContent` of a result.
pub fn structured(result: &CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .expect("the result has structuredContent")
}

/// Asserts a refusal with `status` and `code`; returns its structured content.
pub fn mcp_refused<'a>(result: &'a CallToolResult, status: u16, code: &str) -> &'a Value {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let body = structured(result);
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

/// The `Accept` every MCP client sends on Streamable HTTP.
pub const MCP_ACCEPT: &str = "application/json, text/event-stream";

/// One raw JSON-RPC POST to `/mcp` with `accept` and `extra` headers (and a key when
/// given): the HTTP status and the body, parsed as JSON when it is JSON.
pub async fn mcp_post(
    app: &TestApp,
    key: Option<&str>,
    accept: &str,
    extra: &[(&str, &str)],
    message: &Value,
) -> (u16, Value) {
    let text = serde_json::to_string(message).expect("a message is JSON");
    mcp_post_text(app, key, accept, extra, text).await
}

/// [`mcp_post`] of a message written by hand (its text is sent as it is).
pub async fn mcp_post_text(
    app: &TestApp,
    key: Option<&str>,
    accept: &str,
    extra: &[(&str, &str)],
    message: String,
) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/mcp", app.base))
        .header("accept", accept)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .body(message);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}
