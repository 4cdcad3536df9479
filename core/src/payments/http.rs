//! `POST /payments/mock/{request_id}/settle`: the buyer completes a mock payment.

use axum::Json;
use axum::extract::State;
use crochet_payment_mock::{MockError, MockOutcome, MockPayment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiPath, Auth, OptionalJson};
use crate::http::{Envelope, ok};

/// The mock settle route, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(settle))
}

/// Optional body of the settle route.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// `settled` (default), `pending` or `failed`.
    #[schema(value_type = Option<String>)]
    pub outcome: Option<MockOutcome>,
}

/// A mock payment after the settle request.
#[derive(Debug, Serialize, ToSchema)]
pub struct MockPaymentView {
    pub request_id: String,
    pub listing_id: String,
    /// `awaiting_payment`, `pending`, `settled` or `failed`.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
}

impl From<MockPayment> for MockPaymentView {
    fn from(p: MockPayment) -> Self {
        Self {
            request_id: p.request_id,
            listing_id: p.listing_id,
            status: p.status,
            amount_cents: p.amount_cents,
            currency: p.currency,
        }
    }
}

/// Complete, stall or fail a mock payment (development and tests only; absent in production).
#[utoipa::path(post, path = "/payments/mock/{request_id}/settle", tag = "payments", security(("api_key" = [])),
    params(("request_id" = String, Path, description = "The relay_request_id from the 402")),
    request_body(content = Option<SettleRequest>, description = "Optional; default outcome `settled`"),
    responses(
        (status = 200, body = Envelope<MockPaymentView>),
        (status = 401, body = ErrorEnvelope),
        (status = 404, description = "No such payment for this buyer", body = ErrorEnvelope),
        (status = 409, description = "Already settled or failed", body = ErrorEnvelope),
    ))]
async fn settle(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(request_id): ApiPath<String>,
    OptionalJson(body): OptionalJson<SettleRequest>,
) -> Result<Json<Envelope<MockPaymentView>>, ApiError> {
    let mock = s
        .payments
        .mock()
        .ok_or_else(|| ApiError::internal("mock provider route without mock provider"))?;
    let outcome = body.and_then(|b| b.outcome).unwrap_or_default();
    let payment = mock
        .settle(&request_id, &who.profile_id, outcome)
        .await
        .map_err(|e| match e {
            MockError::NotFound => ApiError::PaymentNotFound,
            MockError::AlreadyFinal(status) => ApiError::PaymentFinal(status),
            MockError::Database(e) => ApiError::internal(e),
        })?;
    Ok(ok(payment.into()))
}
