//! Pagination of list routes: the `page`/`limit` query and the `pagination` object
//! answered beside `data`. Domains use these without depending on the web layer.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::storage::Page;

/// `pagination` beside `data` on list routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
    pub total: i64,
}

/// `page` and `limit` (max 100) of list routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number.
    pub page: Option<u32>,
    /// Items per page, at most 100 (default 20).
    pub limit: Option<u32>,
}

impl PageQuery {
    /// The page this query asks for, with the defaults and cap applied.
    pub fn page(&self) -> Page {
        Page::new(self.page, self.limit)
    }
}
