//! HTTP handlers of the review and score routes: parse, call
//! [`Reputation`](super::Reputation), answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{AgentScore, CreateReviewRequest, Review, ReviewPage, ReviewQuery};
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::http::{Envelope, Pagination, ok};

/// The reputation routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reviews, create_review))
        .routes(routes!(agent_score))
}

/// A listing's reviews, newest first, with its rating summary.
#[utoipa::path(get, path = "/reviews/{listing_id}", tag = "reputation", params(
        ("listing_id" = String, Path, description = "Listing UUID or slug"), ReviewQuery),
    responses((status = 200, body = ReviewPage), (status = 404, body = ErrorEnvelope)))]
async fn list_reviews(
    State(s): State<AppState>,
    ApiPath(listing): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReviewQuery>,
) -> Result<Json<ReviewPage>, ApiError> {
    let (items, page, summary) = s.reputation.reviews(&listing, q).await?;
    Ok(Json(ReviewPage {
        success: true,
        data: items,
        pagination: Pagination {
            page: page.page,
            limit: page.limit,
            total: summary.review_count,
            total_exact: true,
        },
        summary,
    }))
}

/// Review a listing: needs a successful gateway call to it in the review window, and
/// is allowed once per buyer and listing; sellers cannot review their own listings.
#[utoipa::path(post, path = "/reviews/{listing_id}", tag = "reputation", security(("api_key" = [])),
    params(("listing_id" = String, Path, description = "Listing UUID or slug")),
    request_body = CreateReviewRequest,
    responses(
        (status = 201, body = Envelope<Review>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "No qualifying purchase, or the caller sells this listing", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Already reviewed: do_not_retry_duplicate_review", body = ErrorEnvelope),
        (status = 422, description = "Rating or comment out of range", body = ErrorEnvelope),
    ))]
async fn create_review(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(listing): ApiPath<String>,
    ApiJson(req): ApiJson<CreateReviewRequest>,
) -> Result<(StatusCode, Json<Envelope<Review>>), ApiError> {
    let review = s.reputation.create_review(&who, &listing, req).await?;
    Ok((StatusCode::CREATED, ok(review)))
}

/// The public Crochet Score of an agent, its tier, the verified mark (score >= 800),
/// and the inputs and components that made it.
#[utoipa::path(get, path = "/agents/{id}/score", tag = "reputation",
    params(("id" = String, Path, description = "Agent (profile) id")),
    responses(
        (status = 200, body = Envelope<AgentScore>),
        (status = 404, body = ErrorEnvelope),
        (status = 503, description = "The scoring plugin failed and no earlier score exists", body = ErrorEnvelope),
    ))]
async fn agent_score(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AgentScore>>, ApiError> {
    Ok(ok(s.reputation.score(&id).await?))
}
