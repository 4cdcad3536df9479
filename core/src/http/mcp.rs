//! The marketplace as an MCP server: Streamable HTTP at `/mcp`, on the official Rust
//! SDK (`rmcp`), which negotiates the protocol version and speaks JSON-RPC.
//!
//! Five tools, each a thin door onto what the REST routes run:
//!
//! - `search_listings` and `get_listing`: the catalog's browse and get, answered as
//!   `structuredContent` with an output schema taken from the OpenAPI document's own
//!   schemas (the same `Listing` as `GET /listings`). No key needed.
//! - `call_listing`: a gateway call, through the very function `POST /gateway/{id}`
//!   uses ([`crate::gateway::http::answer`]): policies (rate limits shared with REST),
//!   payment, adapter, signing, forwarding and recording. Its arguments carry what REST
//!   carries in headers (`relay_request_id`, `idempotency_key`, `pay_from`, the payment
//!   route), and an
//!   x402 payment arrives as `_meta["x402/payment"]` (the `PaymentPayload` object).
//! - `get_receipt` and `list_gateway_requests`: the caller's own, as over REST.
//!
//! The key is the transport's: `Authorization: Bearer am_k_…` on the HTTP requests.
//!
//! A tool result whose `isError` is false carries the answer. Anything else (a
//! refusal, a payment requirement, a payment still pending) is `isError: true` with
//! `structuredContent` = the REST answer's envelope plus its HTTP `status`: the same
//! `error.code`, `details` (the payment object of a 402 included) and `recovery`. When
//! x402 is on, a payment requirement also carries the x402 `PaymentRequired` in
//! `_meta["x402/payment"]`; a call paid with x402 answers with the settlement in
//! `_meta["x402/payment-response"]`.
//!
//! The server is stateless (no MCP session to keep), so any instance answers any
//! request, and it answers plain JSON rather than an event stream. Requests must name
//! the host in `Host` (loopback, or the host of `public_url`), which keeps a browser page
//! on another name from reaching a local marketplace (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::response::IntoResponse as _;
use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, JsonRpcVersion2_0, ListToolsResult, MetaObject,
    PaginatedRequestParams, ProtocolVersion, RequestId, RequestMetaObject, ServerCapabilities,
    ServerConfig, ServerJsonRpcMessage, ServerResult, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::catalog::ListingQuery;
use crate::gateway::http::{CallAnswer, CallHeaders, CallRequest, Refusal, answer, history_of};
use crate::gateway::model::{GatewaySuccess, HistoryQuery};
use crate::http::error::{ApiError, ErrorSpec, RequestError};
use crate::http::extract::{Auth, MaybeAuth, decode_json};

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// `_meta` key of an x402 payment (client to server) and of a payment requirement.
const X402_PAYMENT: &str = "x402/payment";
/// `_meta` key of an x402 settlement (server to client).
const X402_PAYMENT_RESPONSE: &str = "x402/payment-response";

/// The five tools.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ToolName {
    SearchListings,
    GetListing,
    CallListing,
    GetReceipt,
    ListGatewayRequests,
}

impl ToolName {
    const ALL: [Self; 5] = [
        Self::SearchListings,
        Self::GetListing,
        Self::CallListing,
        Self::GetReceipt,
        Self::ListGatewayRequests,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Self::SearchListings => "search_listings",
            Self::GetListing => "get_listing",
            Self::CallListing => "call_listing",
            Self::GetReceipt => "get_receipt",
            Self::ListGatewayRequests => "list_gateway_requests",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.as_str() == name)
    }
}

/// The `/mcp` endpoint: the SDK's stateless service (one [`Marketplace`] handler per
/// request, no sessions), with plain tool calls answered inline (see [`Endpoint::handle`]).
pub struct Endpoint {
    sdk: StreamableHttpService<Marketplace, NeverSessionManager>,
    handler: Marketplace,
    hosts: Vec<AllowedHost>,
    max_body: usize,
}

/// Builds the `/mcp` endpoint.
pub fn endpoint(state: AppState, openapi: &utoipa::openapi::OpenApi) -> Arc<Endpoint> {
    let handler = Marketplace {
        tools: Arc::new(tools(openapi)),
        state: state.clone(),
    };
    let hosts = allowed_hosts(&state.public_url);
    let max_body = state.config.max_body_bytes;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts.clone())
        .with_max_request_body_bytes(max_body);
    let sdk_handler = handler.clone();
    let sdk = StreamableHttpService::new(
        move || Ok(sdk_handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Arc::new(Endpoint {
        sdk,
        handler,
        hosts: parse_hosts(&hosts),
        max_body,
    })
}

impl Endpoint {
    /// Answers one HTTP request to `/mcp`.
    ///
    /// In stateless mode the SDK builds a whole service for every request (a one-shot
    /// transport, a spawned serve loop, channels and a peer), which costs a tool call
    /// far more than the call's own work. So the commonest request, a `tools/call` of
    /// one of our tools by a client on a protocol version that negotiates with
    /// `initialize`, is answered here with the SDK's own types and result processing,
    /// after the same checks the SDK makes; the checks here are strict, and a request
    /// that fails any of them (another method, an unusual header, an `Origin`, a
    /// per-request protocol version, a batch, a body without a length) goes to the
    /// SDK, which answers it or refuses it as it always has.
    pub async fn handle(&self, request: axum::extract::Request) -> axum::response::Response {
        let (parts, body) = request.into_parts();
        if !inline_headers(&parts, &self.hosts, self.max_body) {
            return self
                .to_sdk(axum::extract::Request::from_parts(parts, body))
                .await;
        }
        let bytes = match axum::body::to_bytes(body, self.max_body).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Failed to read request body: {e}"),
                )
                    .into_response();
            }
        };
        let Some((call, tool)) = inline_call(&bytes) else {
            let body = axum::body::Body::from(bytes);
            return self
                .to_sdk(axum::extract::Request::from_parts(parts, body))
                .await;
        };
        let InlineParams {
            arguments, meta, ..
        } = call.params;
        let arguments = arguments.as_deref().map_or("{}", RawValue::get);
        let answer = self
            .handler
            .run(tool, arguments, meta.unwrap_or_default(), parts)
            .await;
        let body = match answer {
            ToolAnswer::Forwarded {
                success,
                settlement,
            } => serde_json::to_vec(&ForwardedResponse::new(&call.id, &success, settlement)),
            ToolAnswer::Result(result) => {
                // What the SDK does to a result for a client on a version before 2026-07-28.
                let mut result = ServerResult::CallToolResult(result);
                result.strip_result_type_for_legacy_peer();
                result.strip_non_object_output_for_legacy_peer();
                serde_json::to_vec(&ServerJsonRpcMessage::response(result, call.id))
            }
        };
        match body {
            Ok(body) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }

    async fn to_sdk(&self, request: axum::extract::Request) -> axum::response::Response {
        self.sdk.handle(request).await.map(axum::body::Body::new)
    }
}

/// Whether a request's line and headers let it be answered inline: a POST with a
/// length within the limit, JSON, accepting JSON and event streams as the transport
/// requires, to an allowed host, without `Origin` or session, on a protocol version
/// negotiated by `initialize` (or none, which the transport reads as 2025-03-26).
fn inline_headers(parts: &Parts, hosts: &[AllowedHost], max_body: usize) -> bool {
    use axum::http::header;
    let headers = &parts.headers;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if parts.method != axum::http::Method::POST
        || headers.contains_key(header::ORIGIN)
        || headers.contains_key("mcp-session-id")
    {
        return false;
    }
    let length_fits = text(header::CONTENT_LENGTH.as_str())
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n <= max_body);
    let json = text(header::CONTENT_TYPE.as_str()).is_some_and(|v| {
        let essence = v.split_once(';').map_or(v, |(essence, _)| essence);
        essence.trim().eq_ignore_ascii_case("application/json")
    });
    // Bare media types only: a weight or parameter sends the request to the SDK.
    let accepts = text(header::ACCEPT.as_str()).is_some_and(|v| {
        let has = |t: &str| v.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
        !v.contains(';') && has("application/json") && has("text/event-stream")
    });
    let version = match headers.get("mcp-protocol-version") {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            v < ProtocolVersion::V_2026_07_28.as_str()
                && ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .any(|k| k.as_str() == v)
        }),
    };
    let host_allowed = headers.get_all(header::HOST).iter().count() == 1
        && text(header::HOST.as_str()).is_some_and(|host| host_is_allowed(host, hosts));
    length_fits && json && accepts && version && host_allowed
}

/// An allowed host: a lowercase name without brackets, and a port when one is required
/// (an allowed name without a port allows every port).
#[derive(Debug, PartialEq)]
struct AllowedHost {
    name: String,
    port: Option<u16>,
}

/// The allowed hosts, parsed once. An entry that is no authority (a bare IPv6 address)
/// is a name.
fn parse_hosts(allowed: &[String]) -> Vec<AllowedHost> {
    allowed
        .iter()
        .map(|a| {
            let (name, port) = match axum::http::uri::Authority::try_from(a.as_str()) {
                Ok(authority) => (authority.host().to_owned(), authority.port_u16()),
                Err(_) => (a.clone(), None),
            };
            AllowedHost {
                name: unbracket(&name).to_ascii_lowercase(),
                port,
            }
        })
        .collect()
}

fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `host` (a `Host` header) against the allowed hosts: names compare without case and
/// brackets.
fn host_is_allowed(host: &str, allowed: &[AllowedHost]) -> bool {
    let Ok(authority) = axum::http::uri::Authority::try_from(host) else {
        return false;
    };
    let name = unbracket(authority.host());
    let port = authority.port_u16();
    allowed
        .iter()
        .any(|a| a.name.eq_ignore_ascii_case(name) && a.port.is_none_or(|p| Some(p) == port))
}

/// A `tools/call` JSON-RPC request of one of our tools, as answered inline: any other
/// field, method or tool, or a `_meta` key of the protocol itself (a per-request
/// protocol version), is left to the SDK.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineCall {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(rename = "method")]
    _method: ToolsCall,
    params: InlineParams,
}

#[derive(Deserialize)]
enum ToolsCall {
    #[serde(rename = "tools/call")]
    ToolsCall,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineParams {
    name: String,
    /// Kept as sent: a call's `input` reaches the seller without being parsed into
    /// values and written again. An object, or the call is left to the SDK.
    #[serde(default)]
    arguments: Option<Box<RawValue>>,
    #[serde(rename = "_meta", default)]
    meta: Option<RequestMetaObject>,
}

fn inline_call(body: &[u8]) -> Option<(InlineCall, ToolName)> {
    let call: InlineCall = serde_json::from_slice(body).ok()?;
    if call
        .params
        .arguments
        .as_ref()
        .is_some_and(|args| !args.get().starts_with('{'))
    {
        return None;
    }
    let tool = ToolName::parse(&call.params.name)?;
    let protocol_meta = call.params.meta.as_ref().is_some_and(|meta| {
        meta.0
            .0
            .keys()
            .any(|k| k.starts_with("io.modelcontextprotocol/"))
    });
    (!protocol_meta).then_some((call, tool))
}

/// Loopback names, and the public URL's host with and without its port.
fn allowed_hosts(public_url: &str) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if let Ok(url) = reqwest::Url::parse(public_url)
        && let Some(host) = url.host_str()
    {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if let Some(port) = url.port_or_known_default() {
            hosts.push(format!("{host}:{port}"));
        }
        hosts.push(host);
    }
    hosts
}

/// The MCP handler: the application state and the tool list (built once).
#[derive(Clone)]
pub struct Marketplace {
    state: AppState,
    tools: Arc<Vec<Tool>>,
}

impl ServerHandler for Marketplace {
    fn get_info(&self) -> ServerConfig {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build());
        let mut implementation = Implementation::new("crochet", env!("CARGO_PKG_VERSION"));
        implementation.title = Some("Crochet Gateway marketplace".into());
        info.server_info = implementation;
        info.instructions = Some(
            "An agent marketplace. Find capabilities with search_listings and get_listing, \
             buy one call with call_listing. A paid listing first answers with a payment \
             requirement (isError, error.code PAYMENT_REQUIRED, the payment object in \
             error.details.payment): pay it, then call again with the same input and \
             idempotency_key plus relay_request_id (or an x402 payment in \
             _meta[\"x402/payment\"]). Calls need `Authorization: Bearer am_k_...`."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(parts) = context.extensions.get::<Parts>().cloned() else {
            return Err(McpError::internal_error(
                "no HTTP request behind the call",
                None,
            ));
        };
        let Some(tool) = ToolName::parse(&request.name) else {
            return Err(McpError::invalid_params(
                format!("no tool named `{}`", request.name),
                None,
            ));
        };
        // The SDK hands a request's `_meta` over in the context.
        let meta = request.meta.unwrap_or(context.meta);
        let args = serde_json::to_string(&request.arguments.unwrap_or_default())
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let answer = self.run(tool, &args, meta, parts).await;
        Ok(answer.into_result().into())
    }
}

/// `get_listing`'s and `get_receipt`'s arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ById {
    id: String,
}

/// `call_listing`'s arguments other than `input`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallArgs {
    listing: String,
    relay_request_id: Option<String>,
    idempotency_key: Option<String>,
    pay_from: Option<String>,
    origin_currency: Option<String>,
    origin_chain_id: Option<String>,
    origin_wallet_id: Option<String>,
}

/// Tool arguments (a JSON object's text) decoded as a JSON body is over REST (control
/// characters refused, unknown fields named).
fn decode<T: serde::de::DeserializeOwned>(args: &str) -> Result<T, RequestError> {
    decode_json(args.as_bytes())
}

/// `call_listing`'s arguments split into its `input`, as sent, and the text of the other
/// arguments, which are checked like a JSON body (the input is the seller's, and passes
/// as REST passes a body).
fn split_input(args: &str) -> Result<(Option<&RawValue>, String), RequestError> {
    let mut args: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(args).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let input = args.remove("input");
    let rest =
        serde_json::to_string(&args).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    Ok((input, rest))
}

/// What a tool answers: a tool result, or a forwarded call's answer as the gateway gave
/// it, which the inline path writes out without building JSON values from it
/// ([`ForwardedResponse`]).
enum ToolAnswer {
    Result(CallToolResult),
    Forwarded {
        success: Box<GatewaySuccess>,
        /// The x402 settlement, for `_meta["x402/payment-response"]`.
        settlement: Option<Value>,
    },
}

impl ToolAnswer {
    /// The answer as the SDK's tool result.
    fn into_result(self) -> CallToolResult {
        match self {
            Self::Result(result) => result,
            Self::Forwarded {
                success,
                settlement,
            } => {
                // What a model reads first: the seller's own answer; the structured
                // content adds the charge.
                let text = success.seller_response.get().to_owned();
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(to_value(&success));
                with_meta(result, X402_PAYMENT_RESPONSE, settlement)
            }
        }
    }
}

/// A forwarded call's JSON-RPC response, written straight from the gateway's answer: the
/// same message as [`ToolAnswer::into_result`] in the SDK's response to a client on a
/// version before 2026-07-28, without the seller's answer parsed into a JSON value for
/// `structuredContent` (where it keeps its own key order, as over REST).
#[derive(Serialize)]
struct ForwardedResponse<'a> {
    jsonrpc: JsonRpcVersion2_0,
    id: &'a RequestId,
    result: ForwardedResult<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ForwardedResult<'a> {
    content: [TextBlock<'a>; 1],
    structured_content: &'a GatewaySuccess,
    is_error: bool,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    meta: Option<MetaObject>,
}

/// A text content block.
#[derive(Serialize)]
struct TextBlock<'a> {
    r#type: &'static str,
    text: &'a str,
}

impl<'a> ForwardedResponse<'a> {
    fn new(id: &'a RequestId, success: &'a GatewaySuccess, settlement: Option<Value>) -> Self {
        let meta = settlement.map(|value| meta(X402_PAYMENT_RESPONSE, value));
        Self {
            jsonrpc: JsonRpcVersion2_0,
            id,
            result: ForwardedResult {
                content: [TextBlock {
                    r#type: "text",
                    text: success.seller_response.get(),
                }],
                structured_content: success,
                is_error: false,
                meta,
            },
        }
    }
}

/// An answer as JSON; our own types always serialize.
fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl Marketplace {
    /// Runs `tool` on `args` (a JSON object's text); every outcome is a tool answer.
    async fn run(
        &self,
        tool: ToolName,
        args: &str,
        meta: RequestMetaObject,
        parts: Parts,
    ) -> ToolAnswer {
        let result = match tool {
            ToolName::SearchListings => self.search_listings(args).await,
            ToolName::GetListing => self.get_listing(parts, args).await,
            ToolName::CallListing => return self.call_listing(parts, args, meta).await,
            ToolName::GetReceipt => self.get_receipt(parts, args).await,
            ToolName::ListGatewayRequests => self.list_gateway_requests(parts, args).await,
        };
        ToolAnswer::Result(result.unwrap_or_else(refusal))
    }

    async fn search_listings(&self, args: &str) -> Result<CallToolResult, ApiError> {
        let q: ListingQuery = decode(args)?;
        let (items, total, page) = self.state.catalog.browse(q).await?;
        let page = crate::http::paged(items, page, total).0;
        Ok(CallToolResult::structured(json!({
            "listings": to_value(&page.data),
            "pagination": to_value(&page.pagination),
        })))
    }

    async fn get_listing(&self, mut parts: Parts, args: &str) -> Result<CallToolResult, ApiError> {
        let ById { id } = decode(args)?;
        let MaybeAuth(who) = MaybeAuth::from_request_parts(&mut parts, &self.state).await?;
        let listing = self.state.catalog.get(&id, who.as_ref()).await?;
        Ok(CallToolResult::structured(to_value(&listing)))
    }

    async fn get_receipt(&self, mut parts: Parts, args: &str) -> Result<CallToolResult, ApiError> {
        let Auth(who) = Auth::from_request_parts(&mut parts, &self.state).await?;
        let ById { id } = decode(args)?;
        let receipt = crate::ledger::http::receipt_of(&self.state, &who.profile_id, &id).await?;
        Ok(CallToolResult::structured(to_value(&receipt)))
    }

    async fn list_gateway_requests(
        &self,
        mut parts: Parts,
        args: &str,
    ) -> Result<CallToolResult, ApiError> {
        let Auth(who) = Auth::from_request_parts(&mut parts, &self.state).await?;
        let q: HistoryQuery = decode(args)?;
        let (items, page, total) = history_of(&self.state, &who.profile_id, &q).await?;
        let page = crate::http::paged(items, page, total).0;
        Ok(CallToolResult::structured(json!({
            "requests": to_value(&page.data),
            "pagination": to_value(&page.pagination),
        })))
    }

    /// A gateway call; every outcome becomes a tool answer.
    async fn call_listing(&self, parts: Parts, args: &str, meta: RequestMetaObject) -> ToolAnswer {
        match self.call_listing_checked(parts, args, meta).await {
            Ok(answer) => answer,
            Err(refused) => ToolAnswer::Result(refusal(refused)),
        }
    }

    async fn call_listing_checked(
        &self,
        mut parts: Parts,
        args: &str,
        meta: RequestMetaObject,
    ) -> Result<ToolAnswer, ApiError> {
        let s = &self.state;
        let (input, rest) = split_input(args)?;
        let Some(input) = input else {
            return Err(RequestError::Validation(
                "`input` is required: the JSON the seller receives".into(),
            )
            .into());
        };
        let call: CallArgs = decode(&rest)?;
        let MaybeAuth(buyer) = MaybeAuth::from_request_parts(&mut parts, s).await?;
        let body = axum::body::Bytes::copy_from_slice(input.get().as_bytes());
        // An x402 payment travels as the PaymentPayload object; the pipeline reads the
        // header's form of it.
        let payment_signature = meta.get(X402_PAYMENT).map(|payment| {
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(payment).unwrap_or_default())
        });
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let request = CallRequest {
            buyer,
            listing_ref: call.listing,
            body,
            headers: CallHeaders {
                relay_request_id: call.relay_request_id,
                payment_signature,
                idempotency_key: call.idempotency_key,
                pay_from: call.pay_from,
                origin_currency: call.origin_currency,
                origin_chain_id: call.origin_chain_id,
                origin_wallet_id: call.origin_wallet_id,
                json_body: true,
            },
            policy_headers: s.plugins.policies.forwarded_headers(&parts.headers),
            client_ip,
            transport: "mcp",
        };
        let result = match Box::pin(answer(s, request)).await {
            CallAnswer::Forwarded(mut success) => {
                let settlement = success
                    .payment_response
                    .take()
                    .and_then(|h| decode_x402(&h));
                return Ok(ToolAnswer::Forwarded {
                    success,
                    settlement,
                });
            }
            CallAnswer::Pending(pending) => {
                let data = to_value(&pending);
                CallToolResult::structured_error(
                    json!({"success": true, "status": 202, "data": data}),
                )
            }
            CallAnswer::Refused(refused) => {
                let Refusal {
                    error,
                    spec,
                    x402_header,
                } = *refused;
                let result = envelope(&error, spec);
                match x402_header {
                    Some((name, value)) if name.eq_ignore_ascii_case("payment-required") => {
                        with_meta(result, X402_PAYMENT, decode_x402(&value))
                    }
                    Some((_, value)) => {
                        with_meta(result, X402_PAYMENT_RESPONSE, decode_x402(&value))
                    }
                    None => result,
                }
            }
        };
        Ok(ToolAnswer::Result(result))
    }
}

/// An x402 header value (base64 JSON) as JSON.
fn decode_x402(header: &str) -> Option<Value> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn with_meta(mut result: CallToolResult, key: &str, value: Option<Value>) -> CallToolResult {
    if let Some(value) = value {
        result.meta = Some(meta(key, value));
    }
    result
}

/// A result's `_meta` holding one entry.
fn meta(key: &str, value: Value) -> MetaObject {
    let mut meta = MetaObject::default();
    meta.0.insert(key.to_owned(), value);
    meta
}

/// A refusal as a tool result: the REST error envelope plus its HTTP status.
fn refusal(error: ApiError) -> CallToolResult {
    let spec = error.spec();
    envelope(&error, spec)
}

/// `error`'s tool result, from its REST answer `spec`.
fn envelope(error: &ApiError, spec: ErrorSpec) -> CallToolResult {
    if spec.status.is_server_error() {
        tracing::error!(error = %error, code = %spec.body.code, "MCP tool call failed");
    }
    let mut envelope = json!({
        "success": false,
        "status": spec.status.as_u16(),
        "error": spec.body,
    });
    if let Some(data) = spec.data {
        envelope["data"] = data;
    }
    CallToolResult::structured_error(envelope)
}

/// The five tools, with input schemas written here and output schemas built from the
/// OpenAPI document's component schemas.
fn tools(openapi: &utoipa::openapi::OpenApi) -> Vec<Tool> {
    let schemas = component_schemas(openapi);
    let output = |root: Value| -> Option<Arc<JsonObject>> {
        let mut root = root;
        let mut defs = serde_json::Map::new();
        collect_refs(&root, &schemas, &mut defs);
        root["$defs"] = Value::Object(defs);
        root.as_object().cloned().map(Arc::new)
    };
    let page_of = |field: &str, item: &str| {
        json!({
            "type": "object",
            "properties": {
                field: {"type": "array", "items": {"$ref": format!("#/$defs/{item}")}},
                "pagination": {"$ref": "#/$defs/Pagination"},
            },
            "required": [field, "pagination"],
        })
    };
    let object_of = |name: &str| {
        schemas
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}))
    };
    let mut list = vec![
        tool(
            ToolName::SearchListings,
            "Search the marketplace's active listings (what GET /api/v1/listings answers). \
             Each listing has its price, seller score and rating; call one with call_listing.",
            json!({
                "type": "object",
                "properties": {
                    "q": {"type": "string", "description": "Words to find in name and description"},
                    "category": {"type": "string"},
                    "pricing_model": {"type": "string", "enum": ["free", "per_call"]},
                    "delivery_type": {"type": "string"},
                    "min_price": {"type": "number", "description": "USD, inclusive"},
                    "max_price": {"type": "number", "description": "USD, inclusive"},
                    "sort": {"type": "string", "enum": ["relevance", "newest", "price_asc", "price_desc", "score", "rating"]},
                    "page": {"type": "integer", "minimum": 1},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                "additionalProperties": false,
            }),
            output(page_of("listings", "Listing")),
            true,
        ),
        tool(
            ToolName::GetListing,
            "One listing by id or slug, as GET /api/v1/listings/{id} answers it.",
            json!({
                "type": "object",
                "properties": {"id": {"type": "string", "description": "Listing UUID or slug"}},
                "required": ["id"],
                "additionalProperties": false,
            }),
            output(object_of("Listing")),
            true,
        ),
        tool(
            ToolName::CallListing,
            "Call a listing through the pay-per-call gateway (POST /api/v1/gateway/{id}): the \
             seller receives `input` as its JSON body. A paid listing first answers with a \
             payment requirement (isError; error.details.payment): pay it, then call again \
             with the same input and idempotency_key plus relay_request_id, or with an x402 \
             payment in _meta[\"x402/payment\"]. Or pay from your marketplace balance in one \
             call with pay_from \"balance\". The answer's text is the seller's JSON; \
             structuredContent adds the charge, fees and request id.",
            json!({
                "type": "object",
                "properties": {
                    "listing": {"type": "string", "description": "Listing UUID or slug"},
                    "input": {"description": "The JSON the seller receives"},
                    "relay_request_id": {"type": "string", "description": "The relay_request_id of a completed payment"},
                    "idempotency_key": {"type": "string", "description": "Repeat it on the paid retry"},
                    "pay_from": {"type": "string", "enum": ["balance"], "description": "Pay from your marketplace balance (GET /api/v1/balance): one call, no payment round trip"},
                    "origin_currency": {"type": "string", "description": "USDC, ETH or SOL"},
                    "origin_chain_id": {"type": "string"},
                    "origin_wallet_id": {"type": "string", "description": "Payer wallet id (GET /me/wallets)"},
                },
                "required": ["listing", "input"],
                "additionalProperties": false,
            }),
            None,
            false,
        ),
        tool(
            ToolName::GetReceipt,
            "One of your receipts, signed by the host (verify it against \
             /.well-known/crochet-receipt-keys). Needs your API key.",
            json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
                "additionalProperties": false,
            }),
            output(object_of("Receipt")),
            true,
        ),
        tool(
            ToolName::ListGatewayRequests,
            "Your gateway calls, newest first: status, charge, fees and hashes, never bodies. \
             Needs your API key.",
            json!({
                "type": "object",
                "properties": {
                    "role": {"type": "string", "enum": ["buyer", "seller", "all"]},
                    "status": {"type": "string"},
                    "from": {"type": "integer", "description": "Unix ms, inclusive"},
                    "to": {"type": "integer", "description": "Unix ms, exclusive"},
                    "page": {"type": "integer", "minimum": 1},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                "additionalProperties": false,
            }),
            output(page_of("requests", "GatewayRequestRow")),
            true,
        ),
    ];
    list.shrink_to_fit();
    list
}

fn tool(
    name: ToolName,
    description: &'static str,
    input: Value,
    output: Option<Arc<JsonObject>>,
    read_only: bool,
) -> Tool {
    let input = Arc::new(input.as_object().cloned().unwrap_or_default());
    let mut tool = Tool::new(name.as_str(), description, input);
    if let Some(output) = output {
        tool = tool.with_raw_output_schema(output);
    }
    let mut annotations = rmcp::model::ToolAnnotations::new();
    annotations.read_only_hint = Some(read_only);
    annotations.open_world_hint = Some(!read_only);
    tool.with_annotations(annotations)
}

/// The OpenAPI document's component schemas, with their references rewritten to
/// `#/$defs/…` (where a tool's output schema keeps them).
fn component_schemas(openapi: &utoipa::openapi::OpenApi) -> serde_json::Map<String, Value> {
    let components = openapi
        .components
        .as_ref()
        .and_then(|c| serde_json::to_string(&c.schemas).ok())
        .unwrap_or_else(|| "{}".into())
        .replace("#/components/schemas/", "#/$defs/");
    serde_json::from_str(&components).unwrap_or_default()
}

/// Copies every schema `value` refers to, transitively, into `defs`.
fn collect_refs(
    value: &Value,
    schemas: &serde_json::Map<String, Value>,
    defs: &mut serde_json::Map<String, Value>,
) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                && !defs.contains_key(name)
                && let Some(schema) = schemas.get(name)
            {
                defs.insert(name.to_owned(), schema.clone());
                collect_refs(schema, schemas, defs);
            }
            for v in map.values() {
                collect_refs(v, schemas, defs);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, schemas, defs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_include_loopback_and_the_public_host() {
        let hosts = allowed_hosts("https://market.example.com");
        assert!(hosts.contains(&"market.example.com".to_owned()));
        assert!(hosts.contains(&"market.example.com:443".to_owned()));
        assert!(hosts.contains(&"127.0.0.1".to_owned()));
        assert_eq!(allowed_hosts("not a url").len(), 3);
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::post("/mcp");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    const PLAIN: [(&str, &str); 5] = [
        ("host", "127.0.0.1:8080"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("content-length", "120"),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    #[test]
    fn only_plain_requests_are_answered_inline() {
        let hosts = parse_hosts(&allowed_hosts("https://market.example.com"));
        let inline = |changes: &[(&str, Option<&str>)]| {
            let mut headers: Vec<(&str, &str)> = PLAIN.to_vec();
            for (name, value) in changes {
                headers.retain(|(n, _)| n != name);
                if let Some(value) = value {
                    headers.push((name, value));
                }
            }
            inline_headers(&parts(&headers), &hosts, 1024)
        };
        assert!(inline(&[]));
        assert!(inline(&[("mcp-protocol-version", None)]));
        assert!(inline(&[(
            "content-type",
            Some("application/json; charset=utf-8")
        )]));
        assert!(inline(&[("host", Some("MARKET.example.com"))]));
        assert!(inline(&[("host", Some("[::1]:3000"))]));
        // As for the SDK, an allowed name without a port allows every port.
        assert!(inline(&[("host", Some("market.example.com:8443"))]));
        for refused in [
            ("host", None),
            ("host", Some("evil.example")),
            ("host", Some("market.example.org")),
            ("host", Some("not a host")),
            ("accept", Some("application/json")),
            ("accept", Some("application/json;q=0, text/event-stream")),
            ("content-type", Some("text/plain")),
            ("content-length", None),
            ("content-length", Some("1025")),
            ("mcp-protocol-version", Some("2026-07-28")),
            ("mcp-protocol-version", Some("1999-01-01")),
            ("origin", Some("http://127.0.0.1:8080")),
            ("mcp-session-id", Some("s")),
        ] {
            assert!(!inline(&[refused]), "{refused:?}");
        }
        let mut get = parts(&PLAIN);
        get.method = axum::http::Method::GET;
        assert!(!inline_headers(&get, &hosts, 1024));
    }

    #[test]
    fn only_tool_calls_of_our_tools_are_answered_inline() {
        let call = |params: Value| {
            let message =
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
            inline_call(&serde_json::to_vec(&message).unwrap()).is_some()
        };
        assert!(call(
            json!({"name": "call_listing", "arguments": {"listing": "x"}})
        ));
        assert!(call(
            json!({"name": "search_listings", "_meta": {"progressToken": 1}})
        ));
        assert!(!call(json!({"name": "no_such_tool"})));
        // Arguments that are not an object are the SDK's to refuse.
        assert!(!call(json!({"name": "call_listing", "arguments": [1]})));
        assert!(!call(json!({"name": "call_listing", "arguments": "x"})));
        assert!(call(json!({"name": "call_listing", "arguments": null})));
        assert!(!call(json!({"name": "call_listing", "requestState": "s"})));
        assert!(!call(json!({"name": "call_listing",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}})));
        for message in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"name": "get_listing"}}),
            json!({"jsonrpc": "2.0", "id": null, "method": "tools/call", "params": {"name": "get_listing"}}),
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "get_listing"}}),
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_listing"}}]),
        ] {
            assert!(
                inline_call(&serde_json::to_vec(&message).unwrap()).is_none(),
                "{message}"
            );
        }
    }

    fn success(seller: &str) -> GatewaySuccess {
        use crate::gateway::model::{ChargedAmount, Fees, PaymentStatus};
        GatewaySuccess {
            request_id: "gw_req_1".into(),
            listing_id: "lst_1".into(),
            billable: true,
            payment: Some(PaymentStatus {
                status: "settled",
                relay_request_id: "x402_1".into(),
                flow: Some("x402"),
                transaction: Some("0xabc".into()),
                network: Some("base-sepolia".into()),
                payer: None,
            }),
            charged_amount: ChargedAmount {
                amount_cents: 5,
                currency: "USD".into(),
            },
            fees: Fees {
                fee_rate: 0.049,
                fee_amount_cents: 0,
                seller_receives_cents: 5,
            },
            seller_status_code: 200,
            seller_response: RawValue::from_string(seller.to_owned()).unwrap(),
            payment_response: None,
        }
    }

    #[test]
    fn a_forwarded_answer_is_written_as_the_sdk_writes_it() {
        for (seller, settlement) in [
            (r#"{"b": 1, "a": "two\n", "é": [1.50, null]}"#, None),
            (
                r#"[1, "x"]"#,
                Some(json!({"success": true, "transaction": "0xabc"})),
            ),
            ("\"just text\"", None),
        ] {
            let id = RequestId::Number(42);
            let answer = || ToolAnswer::Forwarded {
                success: Box::new(success(seller)),
                settlement: settlement.clone(),
            };
            let mut sdk = ServerResult::CallToolResult(answer().into_result());
            sdk.strip_result_type_for_legacy_peer();
            sdk.strip_non_object_output_for_legacy_peer();
            let sdk =
                serde_json::to_value(ServerJsonRpcMessage::response(sdk, id.clone())).unwrap();
            let ToolAnswer::Forwarded {
                success,
                settlement,
            } = answer()
            else {
                unreachable!()
            };
            let inline =
                serde_json::to_string(&ForwardedResponse::new(&id, &success, settlement)).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&inline).unwrap(),
                sdk,
                "{seller}"
            );
            // The seller's answer keeps its own text, key order included.
            assert!(
                inline.contains(&format!("\"seller_response\":{seller}")),
                "{inline}"
            );
        }
    }

    #[test]
    fn the_input_is_split_from_the_other_arguments_as_sent() {
        let (input, rest) = split_input(
            r#"{"listing": "lst_1", "input": {"z": 1, "a": [ 2 ]}, "pay_from": "balance"}"#,
        )
        .unwrap();
        assert_eq!(input.unwrap().get(), r#"{"z": 1, "a": [ 2 ]}"#);
        assert_eq!(rest, r#"{"listing":"lst_1","pay_from":"balance"}"#);
        let (input, _) = split_input(r#"{"input": null}"#).unwrap();
        assert_eq!(input.unwrap().get(), "null");
        assert!(split_input(r#"{"listing": "x"}"#).unwrap().0.is_none());
        assert!(split_input("[1]").is_err());
    }

    #[test]
    fn output_schemas_carry_every_schema_they_refer_to() {
        let (_, openapi) = crate::http::api(true, false);
        for tool in tools(&openapi) {
            let Some(schema) = &tool.output_schema else {
                continue;
            };
            let text = serde_json::to_string(schema.as_ref()).unwrap();
            assert!(!text.contains("#/components/"), "{}", tool.name);
            let defs = schema["$defs"].as_object().unwrap();
            let mut named = Vec::new();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("\"#/$defs/") {
                rest = &rest[at + 9..];
                named.push(rest.split('"').next().unwrap().to_owned());
            }
            for name in named {
                assert!(defs.contains_key(&name), "{}: {name}", tool.name);
            }
            assert_eq!(schema["type"], "object", "{}", tool.name);
        }
    }
}
