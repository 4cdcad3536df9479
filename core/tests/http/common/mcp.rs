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
