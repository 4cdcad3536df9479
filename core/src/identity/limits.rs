//! Spend limits of an API key: what a key may buy, checked by the gateway, and what it
//! has spent in its current windows.
//!
//! A key carries limits when its profile gives it some (`POST /api-keys` with `limits`,
//! changed later with `PATCH /api-keys/{id}`): the highest price per call, a cap per UTC
//! day and per 30 days, the listings (by id or slug) or categories it may call, the
//! sellers it may buy from, and an expiry. A profile gives a sub-agent its own limited
//! key; a limited key cannot manage keys itself, so it cannot lift its own limits.
//!
//! The scope and price limits are checked before a call is charged (before a payment
//! requirement is issued). The caps are counted when a call is charged, by one
//! conditional `UPDATE` of the key's row ([`super::store::count_spend`]), in the
//! transaction that consumes the payment: racing calls cannot overshoot a cap, on either
//! backend and across instances. The day window is the UTC calendar day; the 30-day
//! window starts at the key's creation and rolls every 30 days. Every key's spend is
//! counted, limited or not, so `GET /api-keys` shows it; a refunded call gives its amount
//! back to the window it was counted in ([`super::store::return_spend`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::IdentityError;
use crate::storage::rfc3339;

/// One UTC day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The length of the monthly window.
pub const MONTH_MS: i64 = 30 * DAY_MS;
/// Entries in one allow-list, at most.
const MAX_LIST: usize = 100;

/// `limits` of `POST /api-keys` and `PATCH /api-keys/{id}`, and of a key as shown: each
/// field optional, an absent one does not limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyLimits {
    /// The highest listing price per call, in cents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price_cents: Option<i64>,
    /// Spend per UTC calendar day, in cents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_cents: Option<i64>,
    /// Spend per 30 days (windows counted from the key's creation), in cents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cents: Option<i64>,
    /// The listings (ids or slugs) the key may call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing_ids: Option<Vec<String>>,
    /// The categories (slugs) of listings the key may call. With `listing_ids` too, a
    /// listing named by either may be called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// The sellers (profile ids) the key may buy from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_ids: Option<Vec<String>>,
    /// When the key stops working (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl ApiKeyLimits {
    /// Checks the limits and returns them as stored; `now` is the current time (ms).
    pub fn validate(self, now: i64) -> Result<KeyLimits, IdentityError> {
        let cents = |field: &'static str, v: Option<i64>| match v {
            Some(c) if c < 0 => Err(IdentityError::invalid(field, "must be 0 or more cents")),
            other => Ok(other),
        };
        let list = |field: &'static str, v: Option<Vec<String>>| -> Result<_, IdentityError> {
            let Some(items) = v else { return Ok(None) };
            if items.is_empty() || items.len() > MAX_LIST {
                return Err(IdentityError::invalid(
                    field,
                    format!("must name 1 to {MAX_LIST} entries (leave it out to allow any)"),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let item = item.trim();
                if item.is_empty()
                    || item.len() > 128
                    || !item
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(IdentityError::invalid(
                        field,
                        "entries must be ids or slugs: 1 to 128 letters, digits, '-' or '_'",
                    ));
                }
                if !out.iter().any(|o| o == item) {
                    out.push(item.to_owned());
                }
            }
            Ok(Some(out))
        };
        let expires_at = match self.expires_at.as_deref() {
            None => None,
            Some(s) => {
                let t = time::OffsetDateTime::parse(
                    s.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| IdentityError::invalid("limits.expires_at", "must be RFC 3339"))?;
                let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                if ms <= now {
                    return Err(IdentityError::invalid(
                        "limits.expires_at",
                        "must be in the future",
                    ));
                }
                Some(ms)
            }
        };
        Ok(KeyLimits {
            max_price_cents: cents("limits.max_price_cents", self.max_price_cents)?,
            daily_cents: cents("limits.daily_cents", self.daily_cents)?,
            monthly_cents: cents("limits.monthly_cents", self.monthly_cents)?,
            listing_ids: list("limits.listing_ids", self.listing_ids)?,
            categories: list("limits.categories", self.categories)?,
            seller_ids: list("limits.seller_ids", self.seller_ids)?,
            expires_at,
        })
    }
}

/// A key's limits as stored and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub max_price_cents: Option<i64>,
    pub daily_cents: Option<i64>,
    pub monthly_cents: Option<i64>,
    pub listing_ids: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
    pub seller_ids: Option<Vec<String>>,
    /// Unix ms.
    pub expires_at: Option<i64>,
}

impl KeyLimits {
    /// Whether anything is limited.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the key has a spend cap (counted at settlement).
    pub fn has_cap(&self) -> bool {
        self.daily_cents.is_some() || self.monthly_cents.is_some()
    }

    /// The wire form.
    pub fn view(&self) -> ApiKeyLimits {
        ApiKeyLimits {
            max_price_cents: self.max_price_cents,
            daily_cents: self.daily_cents,
            monthly_cents: self.monthly_cents,
            listing_ids: self.listing_ids.clone(),
            categories: self.categories.clone(),
            seller_ids: self.seller_ids.clone(),
            expires_at: self.expires_at.map(rfc3339),
        }
    }

    /// Whether the key may call this listing at all (scope only: listings, categories,
    /// sellers). Checked for every call, free ones too.
    pub fn allows(&self, listing: &ListingFacts<'_>) -> Result<(), LimitRefusal> {
        if let Some(sellers) = &self.seller_ids
            && !sellers.iter().any(|s| s == listing.seller_id)
        {
            return Err(LimitRefusal::SellerNotAllowed {
                seller_id: listing.seller_id.to_owned(),
            });
        }
        let by_listing = self
            .listing_ids
            .as_ref()
            .map(|ids| ids.iter().any(|i| i == listing.id || i == listing.slug));
        let by_category = self.categories.as_ref().map(|cats| {
            listing
                .category
                .is_some_and(|c| cats.iter().any(|x| x.eq_ignore_ascii_case(c)))
        });
        let allowed = match (by_listing, by_category) {
            (None, None) => true,
            (a, b) => a.unwrap_or(false) || b.unwrap_or(false),
        };
        if allowed {
            Ok(())
        } else {
            Err(LimitRefusal::ListingNotAllowed {
                listing_id: listing.id.to_owned(),
                category: listing.category.map(str::to_owned),
            })
        }
    }

    /// The price limit, and whether the caps leave room for `price_cents` given what
    /// the key has spent (`spend`): checked before a payment is asked for. The caps are
    /// counted for real, atomically, when the call is charged.
    pub fn affords(&self, price_cents: i64, spend: &Spend, now: i64) -> Result<(), LimitRefusal> {
        self.allows_price(price_cents)?;
        for window in [Window::Day, Window::Month] {
            if let Some(cap) = self.cap(window) {
                let spent = spend.spent(window, now);
                if spent + price_cents > cap {
                    return Err(LimitRefusal::spend(
                        window,
                        cap,
                        spent,
                        price_cents,
                        spend,
                        now,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The price limit alone (`max_price_cents`).
    pub fn allows_price(&self, price_cents: i64) -> Result<(), LimitRefusal> {
        match self.max_price_cents {
            Some(max) if price_cents > max => Err(LimitRefusal::PriceTooHigh {
                max_price_cents: max,
                price_cents,
            }),
            _ => Ok(()),
        }
    }

    fn cap(&self, window: Window) -> Option<i64> {
        match window {
            Window::Day => self.daily_cents,
            Window::Month => self.monthly_cents,
        }
    }
}

/// What the scope check needs of a listing.
pub struct ListingFacts<'a> {
    pub id: &'a str,
    pub slug: &'a str,
    pub seller_id: &'a str,
    pub category: Option<&'a str>,
}

/// A spend window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The UTC calendar day.
    Day,
    /// 30 days from the key's creation, rolling.
    Month,
}

impl Window {
    /// The limit's field name.
    pub fn field(self) -> &'static str {
        match self {
            Window::Day => "daily_cents",
            Window::Month => "monthly_cents",
        }
    }
}

/// A key's spend in its windows, as stored, and when the key was created (the monthly
/// window's origin).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    pub key_created_at: i64,
    pub day_start: i64,
    pub day_cents: i64,
    pub month_start: i64,
    pub month_cents: i64,
}

impl Spend {
    /// The first millisecond of `window` at `now`.
    pub fn window_start(&self, window: Window, now: i64) -> i64 {
        match window {
            Window::Day => now - now.rem_euclid(DAY_MS),
            Window::Month => {
                let since = (now - self.key_created_at).max(0);
                self.key_created_at + since - since % MONTH_MS
            }
        }
    }

    /// When `window` ends.
    pub fn resets_at(&self, window: Window, now: i64) -> i64 {
        self.window_start(window, now)
            + match window {
                Window::Day => DAY_MS,
                Window::Month => MONTH_MS,
            }
    }

    /// Cents spent in the current `window` (0 once a new window began).
    pub fn spent(&self, window: Window, now: i64) -> i64 {
        let (start, cents) = match window {
            Window::Day => (self.day_start, self.day_cents),
            Window::Month => (self.month_start, self.month_cents),
        };
        if start == self.window_start(window, now) {
            cents
        } else {
            0
        }
    }

    /// The wire form, with the limits' caps.
    pub fn view(&self, limits: Option<&KeyLimits>, now: i64) -> KeySpend {
        let window = |w: Window| {
            let spent = self.spent(w, now);
            let limit = limits.and_then(|l| l.cap(w));
            SpendWindow {
                spent_cents: spent,
                limit_cents: limit,
                remaining_cents: limit.map(|l| (l - spent).max(0)),
                started_at: rfc3339(self.window_start(w, now)),
                resets_at: rfc3339(self.resets_at(w, now)),
            }
        };
        KeySpend {
            day: window(Window::Day),
            month: window(Window::Month),
        }
    }
}

/// What a key has spent in its current windows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeySpend {
    /// The current UTC day.
    pub day: SpendWindow,
    /// The current 30-day window.
    pub month: SpendWindow,
}

/// One spend window of a key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpendWindow {
    pub spent_cents: i64,
    /// The cap, when the key has one.
    pub limit_cents: Option<i64>,
    pub remaining_cents: Option<i64>,
    pub started_at: String,
    pub resets_at: String,
}

/// Why a key's limits refuse a call. Nothing is forwarded and nothing is charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitRefusal {
    #[error(
        "this API key may not call listing {listing_id} (its limits name other listings or categories)"
    )]
    ListingNotAllowed {
        listing_id: String,
        category: Option<String>,
    },
    #[error("this API key may not buy from seller {seller_id}")]
    SellerNotAllowed { seller_id: String },
    #[error(
        "the listing's price ({price_cents} cents) is above this API key's max_price_cents ({max_price_cents})"
    )]
    PriceTooHigh {
        max_price_cents: i64,
        price_cents: i64,
    },
    #[error("this call ({price_cents} cents) would take this API key past its {} limit ({limit_cents} cents; {remaining_cents} left until {})", .window.field(), rfc3339(*.resets_at))]
    SpendLimit {
        window: Window,
        limit_cents: i64,
        spent_cents: i64,
        remaining_cents: i64,
        price_cents: i64,
        /// Unix ms.
        resets_at: i64,
    },
    #[error(
        "this API key has a spend cap, so it pays through the payment provider or the balance, not with x402 (whose settlement comes after the seller answers)"
    )]
    X402WithCap,
}

impl LimitRefusal {
    fn spend(
        window: Window,
        cap: i64,
        spent: i64,
        price_cents: i64,
        spend: &Spend,
        now: i64,
    ) -> Self {
        Self::SpendLimit {
            window,
            limit_cents: cap,
            spent_cents: spent,
            remaining_cents: (cap - spent).max(0),
            price_cents,
            resets_at: spend.resets_at(window, now),
        }
    }

    /// The refusal of a charge the conditional `UPDATE` refused: which cap it hit,
    /// worked out from the spend read after it.
    pub fn at_settlement(limits: &KeyLimits, price_cents: i64, spend: &Spend, now: i64) -> Self {
        for window in [Window::Day, Window::Month] {
            if let Some(cap) = limits.cap(window) {
                let spent = spend.spent(window, now);
                if spent + price_cents > cap {
                    return Self::spend(window, cap, spent, price_cents, spend, now);
                }
            }
        }
        // The UPDATE refused, so one cap was hit; a window that rolled over since is
        // reported as the day's.
        Self::spend(
            Window::Day,
            limits.daily_cents.or(limits.monthly_cents).unwrap_or(0),
            spend.spent(Window::Day, now),
            price_cents,
            spend,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn listing<'a>(category: Option<&'a str>) -> ListingFacts<'a> {
        ListingFacts {
            id: "l-1",
            slug: "weather",
            seller_id: "s-1",
            category,
        }
    }

    #[test]
    fn limits_are_validated() {
        let ok = ApiKeyLimits {
            daily_cents: Some(50),
            categories: Some(vec![" data ".into(), "data".into()]),
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            ..ApiKeyLimits::default()
        }
        .validate(NOW)
        .unwrap();
        assert_eq!(ok.categories.as_deref(), Some(&["data".to_owned()][..]));
        assert!(ok.has_cap());
        assert_eq!(
            ok.view().expires_at.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        for bad in [
            ApiKeyLimits {
                daily_cents: Some(-1),
                ..ApiKeyLimits::default()
            },
            ApiKeyLimits {
                listing_ids: Some(vec![]),
                ..ApiKeyLimits::default()
            },
            ApiKeyLimits {
                seller_ids: Some(vec!["a b".into()]),
                ..ApiKeyLimits::default()
            },
            ApiKeyLimits {
                expires_at: Some("tomorrow".into()),
                ..ApiKeyLimits::default()
            },
            ApiKeyLimits {
                expires_at: Some("2020-01-01T00:00:00Z".into()),
                ..ApiKeyLimits::default()
            },
        ] {
            assert!(bad.clone().validate(NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scope_allows_named_listings_categories_and_sellers() {
        let any = KeyLimits::default();
        assert!(any.allows(&listing(None)).is_ok());
        let by_category = KeyLimits {
            categories: Some(vec!["data".into()]),
            ..KeyLimits::default()
        };
        assert!(by_category.allows(&listing(Some("Data"))).is_ok());
        assert!(matches!(
            by_category.allows(&listing(Some("ai"))),
            Err(LimitRefusal::ListingNotAllowed { .. })
        ));
        assert!(by_category.allows(&listing(None)).is_err());
        let by_slug_or_category = KeyLimits {
            listing_ids: Some(vec!["weather".into()]),
            ..by_category.clone()
        };
        assert!(by_slug_or_category.allows(&listing(Some("ai"))).is_ok());
        let sellers = KeyLimits {
            seller_ids: Some(vec!["s-2".into()]),
            ..KeyLimits::default()
        };
        assert!(matches!(
            sellers.allows(&listing(None)),
            Err(LimitRefusal::SellerNotAllowed { .. })
        ));
    }

    #[test]
    fn windows_roll_over() {
        let created = NOW - 45 * DAY_MS;
        let day = NOW - NOW % DAY_MS;
        let spend = Spend {
            key_created_at: created,
            day_start: day,
            day_cents: 40,
            month_start: created + MONTH_MS,
            month_cents: 90,
        };
        assert_eq!(spend.window_start(Window::Month, NOW), created + MONTH_MS);
        assert_eq!(spend.spent(Window::Day, NOW), 40);
        assert_eq!(spend.spent(Window::Day, NOW + DAY_MS), 0);
        assert_eq!(spend.spent(Window::Month, NOW), 90);
        assert_eq!(spend.spent(Window::Month, created + 2 * MONTH_MS), 0);
        assert_eq!(spend.resets_at(Window::Day, NOW), day + DAY_MS);
        let limits = KeyLimits {
            daily_cents: Some(50),
            max_price_cents: Some(20),
            ..KeyLimits::default()
        };
        assert!(limits.affords(10, &spend, NOW).is_ok());
        assert!(matches!(
            limits.affords(11, &spend, NOW),
            Err(LimitRefusal::SpendLimit {
                window: Window::Day,
                remaining_cents: 10,
                ..
            })
        ));
        assert!(matches!(
            limits.affords(21, &spend, NOW + DAY_MS),
            Err(LimitRefusal::PriceTooHigh { .. })
        ));
        let view = spend.view(Some(&limits), NOW);
        assert_eq!(view.day.remaining_cents, Some(10));
        assert_eq!(view.month.limit_cents, None);
    }
}
