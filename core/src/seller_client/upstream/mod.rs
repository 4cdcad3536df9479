//! Outbound calls to sellers' private endpoints and the address policy that guards them.
//!
//! This module owns everything between "the gateway wants to POST this JSON to a seller"
//! and "here is what the seller answered": URL validation ([`check_url`]), the list of
//! addresses production must never reach ([`is_forbidden_ip`]), a DNS resolver that
//! applies that list to the addresses actually connected to ([`GuardedResolver`], so DNS
//! rebinding cannot get through), and one pooled HTTP client ([`UpstreamClient`]) that never
//! follows redirects, never uses proxies and bounds both time and response size.
//!
//! The client is hyper-util's pooled client with rustls (`hyper-rustls`, webpki roots),
//! the same pool and TLS stack reqwest is built on, used directly: reqwest's layers on
//! top (its redirect machinery, which parses the URL back from the request twice per
//! call even with redirects off, its default-header merge and response wrapping) were
//! about a quarter of the gateway's CPU per forwarded call in the load run, and seller
//! calls need none of them. reqwest stays the client for everything else (the Relay provider).
//!
//! Seller URLs are secrets: no error or log line produced here contains one.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use axum::http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use reqwest::Url;

/// Longest seller endpoint URL accepted, in bytes.
const MAX_URL_LEN: usize = 2048;

/// How long setting an endpoint waits for its host name to resolve.
const SET_TIME_LOOKUP: Duration = Duration::from_secs(3);

/// Which endpoints may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Allow loopback, private and reserved addresses and local-only host names (development).
    pub allow_private: bool,
    /// Refuse plain `http://` endpoints.
    pub require_https: bool,
}

/// Why a seller endpoint URL was refused. Messages name the rule, never the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointUrlError {
    #[error("endpoint URL is invalid: {0}")]
    Invalid(String),
    #[error("endpoint URL must use https")]
    HttpsRequired,
    /// Holds the rule that matched (e.g. `*.internal`), not the host itself.
    #[error("endpoint host is not allowed (matches {0})")]
    HostNotAllowed(String),
    #[error("endpoint address is not allowed (loopback, private or reserved range)")]
    AddressNotAllowed(IpAddr),
}

impl EndpointUrlError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "ENDPOINT_URL_INVALID",
            Self::HttpsRequired => "ENDPOINT_HTTPS_REQUIRED",
            Self::HostNotAllowed(_) => "ENDPOINT_HOST_NOT_ALLOWED",
            Self::AddressNotAllowed(_) => "ENDPOINT_ADDRESS_NOT_ALLOWED",
        }
    }
}

/// Parses and checks a seller endpoint URL against the policy.
///
/// Error messages never contain the URL (URLs are secrets); they may name the rule.
pub fn check_url(raw: &str, policy: &EndpointPolicy) -> Result<Url, EndpointUrlError> {
    let invalid = |why: &str| EndpointUrlError::Invalid(why.to_owned());
    if raw.len() > MAX_URL_LEN {
        return Err(invalid("longer than 2048 characters"));
    }
    // url::ParseError messages are fixed strings; they never echo the input.
    let url = Url::parse(raw).map_err(|e| EndpointUrlError::Invalid(e.to_string()))?;
    check_parsed_url(&url, policy)?;
    Ok(url)
}

/// The rules of [`check_url`] on a URL parsed earlier. Every call checks its (cached)
/// endpoint URL again: the host's policy may be stricter than when the URL was stored.
pub fn check_parsed_url(url: &Url, policy: &EndpointPolicy) -> Result<(), EndpointUrlError> {
    let invalid = |why: &str| EndpointUrlError::Invalid(why.to_owned());
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials (user:pass@) are not allowed"));
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => return Err(invalid("no host")),
    };
    if policy.require_https && url.scheme() == "http" {
        return Err(EndpointUrlError::HttpsRequired);
    }
    if !policy.allow_private {
        // The URL parser has already normalised numeric IPv4 forms (0x7f000001, 127.1, …)
        // to dotted quads, so a host that parses as an address is an IP literal.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if is_forbidden_ip(ip) {
                return Err(EndpointUrlError::AddressNotAllowed(ip));
            }
        } else if let Some(rule) = forbidden_host_rule(host) {
            return Err(EndpointUrlError::HostNotAllowed(rule.to_owned()));
        }
    }
    Ok(())
}

/// The local-only name rule a host matches, if any (case-insensitive, trailing dot ignored).
fn forbidden_host_rule(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" {
        Some("localhost")
    } else if host.ends_with(".localhost") {
        Some("*.localhost")
    } else if host.ends_with(".local") {
        Some("*.local")
    } else if host.ends_with(".internal") {
        Some("*.internal")
    } else {
        None
    }
}

/// True for every address the gateway must not reach in production: loopback, private,
/// link-local, CGNAT, multicast, reserved, documentation and benchmarking ranges, and any
/// IPv6 form embedding such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // 0.0.0.0/8
        || a == 127 // loopback
        || a == 10
        || (a == 172 && b & 0xf0 == 16) // 172.16/12
        || (a == 192 && b == 168)
        || (a == 169 && b == 254) // link-local
        || (a == 100 && b & 0xc0 == 64) // CGNAT 100.64/10
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF 192.0.0/24, TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || (a == 198 && b & 0xfe == 18) // benchmarking 198.18/15
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        forbidden_v4(Ipv4Addr::new(a, b, c, d))
    };
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // Unique-local fc00::/7, link-local fe80::/10, deprecated site-local fec0::/10,
    // multicast ff00::/8, documentation 2001:db8::/32, Teredo 2001::/32 (its embedded
    // IPv4 is obfuscated, so the whole prefix is refused), local-use NAT64 64:ff9b:1::/48.
    if s[0] & 0xfe00 == 0xfc00
        || s[0] & 0xffc0 == 0xfe80
        || s[0] & 0xffc0 == 0xfec0
        || s[0] & 0xff00 == 0xff00
        || (s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] == 0))
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001)
    {
        return true;
    }
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return forbidden_v4(mapped); // ::ffff:a.b.c.d
    }
    if s[..6].iter().all(|&x| x == 0) {
        return v4(s[6], s[7]); // IPv4-compatible ::a.b.c.d
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return v4(s[6], s[7]); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return v4(s[1], s[2]); // 6to4 2002::/16
    }
    false
}

/// Resolution failed because every address found for the name is forbidden by the policy.
#[derive(Debug, thiserror::Error)]
#[error("every resolved address is in a forbidden range")]
pub struct AddressRefused;

/// A DNS resolver for the seller client that drops forbidden addresses unless private
/// ones are allowed. Static overrides (host → addresses) go through the same filter.
#[derive(Clone)]
pub struct GuardedResolver {
    allow_private: bool,
    overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl GuardedResolver {
    /// Builds a resolver; override keys are matched case-insensitively, trailing dot ignored.
    pub fn new(allow_private: bool, overrides: HashMap<String, Vec<IpAddr>>) -> Self {
        let overrides = overrides
            .into_iter()
            .map(|(host, addrs)| (normalize_host(&host), addrs))
            .collect();
        Self {
            allow_private,
            overrides: Arc::new(overrides),
        }
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl GuardedResolver {
    /// Every address of `host`, forbidden or not: the static override, else DNS.
    async fn addresses(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(match self.overrides.get(&normalize_host(host)) {
            Some(addrs) => addrs.clone(),
            None => tokio::net::lookup_host((host, 0))
                .await?
                .map(|sa| sa.ip())
                .collect(),
        })
    }

    /// The allowed addresses of `host` (port 0: the connector puts the URL's port, or the
    /// scheme's default, in its place).
    async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, BoxError> {
        let found = self.addresses(host).await?;
        let total = found.len();
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|ip| self.allow_private || !is_forbidden_ip(*ip))
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        if allowed.is_empty() {
            if total > 0 {
                tracing::warn!(
                    refused = total,
                    "seller endpoint resolved only to forbidden addresses"
                );
                return Err(Box::new(AddressRefused));
            }
            return Err("name resolved to no addresses".into());
        }
        Ok(allowed)
    }
}

/// The resolver as hyper-util's connector calls it (once per new connection).
impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.lookup(name.as_str()).await?.into_iter()) })
    }
}

/// One request to a seller.
pub struct UpstreamRequest<'a> {
    /// The seller's endpoint URL (a secret: never logged or echoed in errors).
    pub url: &'a Url,
    /// Sent as given (signature headers, an upstream `Authorization`, …).
    pub headers: HeaderMap,
    /// Sent exactly, with `Content-Type: application/json`.
    pub body: Bytes,
    /// Bound on the whole exchange: connect, send and reading the full response.
    pub timeout: Duration,
    /// Larger responses fail with [`UpstreamError::ResponseTooLarge`]; never buffered whole.
    pub max_response_bytes: usize,
}

/// What the seller answered.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// HTTP status; a 3xx is returned as is (redirects are never followed).
    pub status: u16,
    /// The full response body (at most `max_response_bytes`).
    pub body: Vec<u8>,
    /// Content type `application/json` or `*/*+json` and the body parses as JSON.
    pub is_json: bool,
    /// From sending the request to having read the whole body.
    pub latency: Duration,
}

/// Why a seller call failed. Messages never contain the URL.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Url(#[from] EndpointUrlError),
    #[error("seller endpoint resolved only to forbidden addresses")]
    AddressNotAllowed,
    #[error("seller did not answer in time")]
    Timeout,
    #[error("could not connect to seller: {0}")]
    Connect(String),
    #[error("seller response is larger than {limit} bytes")]
    ResponseTooLarge { limit: usize },
    #[error("seller request failed: {0}")]
    Other(String),
}

impl UpstreamError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Url(e) => e.code(),
            Self::AddressNotAllowed => "ENDPOINT_ADDRESS_NOT_ALLOWED",
            Self::Timeout => "SELLER_TIMEOUT",
            Self::Connect(_) => "SELLER_UNREACHABLE",
            Self::ResponseTooLarge { .. } => "SELLER_RESPONSE_TOO_LARGE",
            Self::Other(_) => "SELLER_REQUEST_FAILED",
        }
    }
}

/// Maps a client error without ever rendering the URL (hyper's errors never hold it).
fn map_client_error(err: &(dyn StdError + 'static), connect: bool) -> UpstreamError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    let mut parts = Vec::new();
    let mut timed_out = false;
    while let Some(e) = source {
        if e.downcast_ref::<AddressRefused>().is_some() {
            return UpstreamError::AddressNotAllowed;
        }
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            timed_out = true;
        }
        parts.push(e.to_string());
        source = e.source();
    }
    let message = parts.join(": ");
    if timed_out {
        UpstreamError::Timeout
    } else if connect {
        UpstreamError::Connect(message)
    } else {
        UpstreamError::Other(message)
    }
}

fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(Ok(value)) = value.map(|v| v.to_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.contains('/') && essence.ends_with("+json"))
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// One shared, connection-pooled client for all seller calls.
#[derive(Clone)]
pub struct UpstreamClient {
    /// `None` only if the TLS backend failed to initialise; every call then fails closed.
    client: Option<Client<Connector, Full<Bytes>>>,
    policy: EndpointPolicy,
    /// The connector's resolver, also asked when an endpoint is set.
    resolver: GuardedResolver,
}

const USER_AGENT_VALUE: HeaderValue =
    HeaderValue::from_static(concat!("crochet-gateway/", env!("CARGO_PKG_VERSION")));

impl UpstreamClient {
    /// No redirects, no proxies, the [`GuardedResolver`], rustls with the webpki roots,
    /// HTTP/1.1 with keep-alive, a 5 s connect timeout, idle connections kept 90 s.
    pub fn new(policy: EndpointPolicy, dns_overrides: HashMap<String, Vec<IpAddr>>) -> Self {
        let resolver = GuardedResolver::new(policy.allow_private, dns_overrides);
        let mut http = HttpConnector::new_with_resolver(resolver.clone());
        // The TLS layer below decides the scheme; plain http stays allowed here because
        // the endpoint policy (`require_https`) is what refuses it in production.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()));
        let client = match tls {
            Ok(tls) => Some(
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build(tls.https_or_http().enable_http1().wrap_connector(http)),
            ),
            Err(e) => {
                tracing::error!(error = %e, "seller HTTP client failed to initialise; seller calls will fail");
                None
            }
        };
        Self {
            client,
            policy,
            resolver,
        }
    }

    /// The endpoint policy this client enforces.
    pub fn policy(&self) -> EndpointPolicy {
        self.policy
    }

    /// [`check_url`], and when private addresses are refused, the addresses the host name
    /// resolves to now: any forbidden one refuses the URL. A name that does not resolve
    /// (yet) is accepted; every connection is checked again by the resolver.
    pub async fn check_endpoint(&self, raw: &str) -> Result<Url, EndpointUrlError> {
        let url = check_url(raw, &self.policy)?;
        if self.policy.allow_private {
            return Ok(url);
        }
        if let Some(host) = url.domain() {
            let found = tokio::time::timeout(SET_TIME_LOOKUP, self.resolver.addresses(host))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if let Some(ip) = found.into_iter().find(|ip| is_forbidden_ip(*ip)) {
                return Err(EndpointUrlError::AddressNotAllowed(ip));
            }
        }
        Ok(url)
    }

    /// Checks the URL, POSTs the body and reads the answer within the time and size limits.
    /// Redirects are returned as ordinary 3xx responses, never followed.
    pub async fn send(&self, req: UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        // Also catches IP literals, which the connector connects to without asking the
        // resolver.
        check_parsed_url(req.url, &self.policy)?;
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| UpstreamError::Other("HTTP client unavailable".into()))?;
        // A URL that passed the checks is a valid URI; the message never echoes it.
        let uri: Uri = req
            .url
            .as_str()
            .parse()
            .map_err(|_| EndpointUrlError::Invalid("not a valid request URI".into()))?;
        let mut request = Request::new(Full::new(req.body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        *headers = req.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.entry(USER_AGENT).or_insert(USER_AGENT_VALUE);
        let limit = req.max_response_bytes;
        let started = Instant::now();
        let exchange = async {
            let resp = client
                .request(request)
                .await
                .map_err(|e| map_client_error(&e, e.is_connect()))?;
            let too_large = || UpstreamError::ResponseTooLarge { limit };
            let announced = resp
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if announced.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let status = resp.status().as_u16();
            let json_type = is_json_content_type(resp.headers().get(CONTENT_TYPE));
            let mut incoming = resp.into_body();
            let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize));
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| map_client_error(&e, false))?;
                if let Ok(chunk) = frame.into_data() {
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
            }
            let is_json =
                json_type && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
            Ok(UpstreamResponse {
                status,
                body,
                is_json,
                latency: started.elapsed(),
            })
        };
        tokio::time::timeout(req.timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }
}

#[cfg(test)]
mod tests;
