//! Extractors whose rejections are envelopes: JSON bodies, path and query parameters,
//! and the authenticated caller.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, RequestError};
use crate::app::AppState;
use crate::identity::Principal;

/// A JSON body; malformed JSON, wrong types, unknown fields, a missing content type and
/// an oversized body each get their own code.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection).into()),
        }
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

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| RequestError::BadPath(e.body_text()).into())
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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

/// A JSON body that may be absent: an empty body is `None`; anything else must be valid
/// JSON of `T` (same codes as [`ApiJson`]).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    RequestError::PayloadTooLarge
                } else if is_body_timeout(&e) {
                    RequestError::BodyTimeout
                } else {
                    RequestError::InvalidJson(e.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| {
                if e.is_data() {
                    RequestError::Validation(e.to_string()).into()
                } else {
                    RequestError::InvalidJson(e.to_string()).into()
                }
            })
    }
}
