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
    /// How many items match the filters. Routes over tables that grow without bound
    /// (browsing the catalog, gateway history, the ledger, receipts) count at most 1,000:
    /// past that, `total` is 1,000 and `total_exact` is false. A catalog search counts
    /// every match (it ranks them all anyway).
    pub total: i64,
    /// False when `total` is a lower bound (more items match than were counted). Pages
    /// past it still answer: page on until a page comes back short.
    pub total_exact: bool,
}

/// How many items a list route's filters match, as `pagination` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub count: i64,
    pub exact: bool,
}

impl Total {
    /// The most items a capped count counts: counting stops there, so a total costs at
    /// most this many index entries whatever the size of the table.
    pub const CAP: i64 = 1_000;

    /// A count known to be exact.
    pub fn exact(count: i64) -> Self {
        Self { count, exact: true }
    }

    /// Wraps `SELECT 1 FROM … WHERE …` (the route's filter) into a count that stops one
    /// past [`Total::CAP`]; read its result with [`Total::from_capped_count`].
    pub fn capped_count(select_one: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM ({select_one} LIMIT {}) AS capped",
            Self::CAP + 1
        )
    }

    /// The total a capped count's result stands for.
    pub fn from_capped_count(count: i64) -> Self {
        if count > Self::CAP {
            Self {
                count: Self::CAP,
                exact: false,
            }
        } else {
            Self::exact(count)
        }
    }
}

impl From<i64> for Total {
    fn from(count: i64) -> Self {
        Self::exact(count)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_count_is_exact_up_to_the_cap() {
        assert_eq!(Total::from_capped_count(0), Total::exact(0));
        assert_eq!(
            Total::from_capped_count(Total::CAP),
            Total::exact(Total::CAP)
        );
        assert_eq!(
            Total::from_capped_count(Total::CAP + 1),
            Total {
                count: Total::CAP,
                exact: false
            }
        );
        assert_eq!(
            Total::capped_count("SELECT 1 FROM t WHERE a = $1"),
            "SELECT COUNT(*) FROM (SELECT 1 FROM t WHERE a = $1 LIMIT 1001) AS capped"
        );
    }
}
