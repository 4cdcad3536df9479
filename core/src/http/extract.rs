//! Extractors whose rejections are envelopes: JSON bodies, path and query parameters,
//! and the authenticated caller.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, RequestError};
use crate::app::AppState;
use crate::identity::Principal;

/// A JSON body; malformed JSON, wrong types, unknown fields, a missing content type and
/// an oversized body each get their own code. The body must be UTF-8 and sent as
/// `application/json` (optionally `; charset=utf-8`) or `application/*+json`; control
/// characters other than tab, line feed and carriage return are refused, raw or escaped.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = is_json_content_type(req.headers());
        // The body is read before the content type is refused: answering while the
        // client is still sending would break its keep-alive connection.
        let bytes = read_body(req, state).await?;
        if !json_type {
            return Err(RequestError::UnsupportedMediaType.into());
        }
        Ok(ApiJson(decode_json(&bytes)?))
    }
}

/// True when the request declares a JSON body: `application/json` or
/// `application/<anything>+json`, with no `charset` parameter other than UTF-8.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let json_subtype = subtype.eq_ignore_ascii_case("json")
        || (subtype.len() > 5
            && subtype.is_char_boundary(subtype.len() - 5)
            && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"));
    kind.eq_ignore_ascii_case("application")
        && json_subtype
        && parts.all(|param| match param.split_once('=') {
            Some((name, v)) if name.trim().eq_ignore_ascii_case("charset") => {
                let v = v.trim().trim_matches('"');
                v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
            }
            _ => true,
        })
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, RequestError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            RequestError::PayloadTooLarge
        } else if is_body_timeout(&e) {
            RequestError::BodyTimeout
        } else {
            RequestError::InvalidJson(e.body_text())
        }
    })
}

/// UTF-8, then no refused control character, then the JSON of `T`.
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RequestError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(RequestError::InvalidJson(format!(
            "not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    if let Some(at) = crate::text::find_json_control(bytes) {
        // Malformed JSON stays INVALID_JSON; otherwise name the field that holds it.
        return Err(match serde_json::from_slice::<Value>(bytes) {
            Err(e) => RequestError::InvalidJson(e.to_string()),
            Ok(v) => RequestError::InvalidCharacter {
                location: "body",
                field: field_with_control(&v, String::new()).filter(|f| !f.is_empty()),
                character: at.character,
            },
        });
    }
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(v)| v)
        .map_err(json_rejection)
}

/// The path (`a.b[2]`) of the first key or string value with a refused control character.
fn field_with_control(v: &Value, path: String) -> Option<String> {
    let refused = |s: &str| s.chars().any(crate::text::refused_in_json);
    match v {
        Value::String(s) => refused(s).then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| field_with_control(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let key = if refused(k) {
                k.escape_debug().to_string()
            } else {
                k.clone()
            };
            let child = if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            };
            if refused(k) {
                Some(child)
            } else {
                field_with_control(item, child)
            }
        }),
        _ => None,
    }
}

fn json_rejection(r: JsonRejection) -> RequestError {
    match r {
        JsonRejection::JsonDataError(e) => RequestError::Validation(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => RequestError::InvalidJson(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => RequestError::UnsupportedMediaType,
        JsonRejection::BytesRejection(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            RequestError::PayloadTooLarge
        }
        JsonRejection::BytesRejection(e) if is_body_timeout(&e) => RequestError::BodyTimeout,
        other => RequestError::InvalidJson(other.body_text()),
    }
}

/// Whether reading the body failed because the client stopped sending it
/// (`[server] body_read_timeout_ms`).
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A raw body; an oversized or stalled body gets its own code, anything else that
/// stops it `BAD_REQUEST`.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    RequestError::PayloadTooLarge.into()
                } else if is_body_timeout(&e) {
                    RequestError::BodyTimeout.into()
                } else {
                    RequestError::UnreadableBody(e.body_text()).into()
                }
            })
    }
}

/// The first control character (any Unicode `Cc`) in the given values, by name.
fn control_in<'a>(
    location: &'static str,
    values: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), RequestError> {
    for (name, value) in values {
        if let Some(character) = name.chars().chain(value.chars()).find(|c| c.is_control()) {
            return Err(RequestError::InvalidCharacter {
                location,
                field: Some(name.escape_debug().to_string()),
                character,
            });
        }
    }
    Ok(())
}

/// Path parameters; a control character in any of them is refused.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad_path = |e: PathRejection| RequestError::BadPath(e.body_text());
        let value = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(bad_path)?;
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| RequestError::BadPath(e.body_text()))?;
        control_in("path", &raw)?;
        Ok(ApiPath(value.0))
    }
}

/// Query parameters; a control character in any name or value is refused.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Only a percent-escape can carry a control character into a query value.
        if parts.uri.query().is_some_and(|q| q.contains('%')) {
            let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map_err(|e| RequestError::BadQuery(e.body_text()))?;
            control_in(
                "query",
                pairs.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| RequestError::BadQuery(e.body_text()).into())
    }
}

/// The caller authenticated by `Authorization: Bearer am_k_…`.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| crate::identity::IdentityError::AuthMalformed)?,
            ),
        };
        Ok(Auth(state.identity.authenticate(header).await?))
    }
}

/// The marketplace's operator, authenticated by `Authorization: Bearer <admin token>`,
/// and the admin service. Only the admin routes use it, and they are mounted only when
/// an operator credential is configured.
pub struct AdminAuth {
    pub admin: crate::admin::Admin,
    pub operator: crate::admin::Operator,
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(admin) = state.admin.clone() else {
            let route = format!("{} {}", parts.method, parts.uri.path());
            return Err(RequestError::RouteNotFound(route).into());
        };
        // A header that is not visible ASCII carries no bearer credential.
        let header = match parts.headers.get(AUTHORIZATION).map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err(crate::admin::AdminError::TokenRequired.into()),
        };
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let operator = admin.authenticate(header, client, request_id)?;
        Ok(AdminAuth { admin, operator })
    }
}

/// The caller when an `Authorization` header is sent (then it must be valid), else `None`.
pub struct MaybeAuth(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            let Auth(who) = Auth::from_request_parts(parts, state).await?;
            Ok(MaybeAuth(Some(who)))
        } else {
            Ok(MaybeAuth(None))
        }
    }
}

/// A JSON body that may be absent: an empty body without a content type or with a JSON
/// one is `None`. Anything else follows the rules of [`ApiJson`] (so a non-JSON content
/// type is 415 even when empty, and a whitespace-only body is not JSON).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = req.headers().contains_key(CONTENT_TYPE);
        let json_type = is_json_content_type(req.headers());
        let bytes = read_body(req, state).await?;
        if declared && !json_type {
            return Err(RequestError::UnsupportedMediaType.into());
        }
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        if !json_type {
            return Err(RequestError::UnsupportedMediaType.into());
        }
        Ok(OptionalJson(Some(decode_json(&bytes)?)))
    }
}

/// The request headers the policy plugins are shown (`plugins.forward_headers`), read
/// from the request in place. Empty, without allocating, when none is forwarded.
pub struct PolicyHeaders(pub Vec<(String, String)>);

impl FromRequestParts<AppState> for PolicyHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            state.plugins.policies.forwarded_headers(&parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types() {
        let is_json = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            is_json_content_type(&h)
        };
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/problem+json",
            "application/vnd.api+json; charset=utf-8",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for refused in [
            "text/plain",
            "text/json",
            "application/json; charset=latin1",
            "application/+json",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "json",
            "",
        ] {
            assert!(!is_json(refused), "{refused}");
        }
        assert!(!is_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn json_bodies_refuse_controls_and_invalid_utf8() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            tags: Vec<String>,
        }
        let ok = decode_json::<Body>(br#"{"name":"a\nb\tc","tags":["x"]}"#);
        assert_eq!(ok.unwrap().name, "a\nb\tc");
        match decode_json::<Body>(br#"{"name":"a","tags":["x","\u0000"]}"#) {
            Err(RequestError::InvalidCharacter {
                location: "body",
                field: Some(f),
                character: '\0',
            }) => assert_eq!(f, "tags[1]"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_json::<Body>(b"{\"name\":\"\xff\xfe\",\"tags\":[]}"),
            Err(RequestError::InvalidJson(_))
        ));
        assert!(matches!(
            decode_json::<Body>(br#"{"name":"\u0000""#),
            Err(RequestError::InvalidJson(_))
        ));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            name: Option<String>,
            tags: Option<Vec<String>>,
        }

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map(any::<String>(), inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Arbitrary bytes as a JSON body: a request error, never a panic.
            #[test]
            fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode_json::<Body>(&bytes);
                let _ = decode_json::<Value>(&bytes);
            }

            /// Arbitrary JSON: decoded exactly when no string holds a refused control
            /// character, and otherwise refused with INVALID_CHARACTER.
            #[test]
            fn arbitrary_json_is_decoded_or_refused_for_its_characters(v in json_value()) {
                let bytes = serde_json::to_vec(&v).unwrap();
                let has_control = field_with_control(&v, String::new()).is_some();
                match decode_json::<Value>(&bytes) {
                    Ok(back) => {
                        prop_assert!(!has_control);
                        prop_assert_eq!(back, v);
                    }
                    Err(RequestError::InvalidCharacter { location: "body", .. }) => prop_assert!(has_control),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
                let _ = decode_json::<Body>(&bytes);
            }
        }
    }
}
