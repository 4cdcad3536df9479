//! Field rules of listings: names and texts, keywords, formats, prices, slugs and
//! per-plugin configuration.

use super::model::PricingModel;
use super::{CatalogError, Result};

/// Largest price: one million USD per call.
const MAX_PRICE_CENTS: i64 = 100_000_000;

/// Per-plugin listing settings, stored as JSON text (`None` when empty).
pub(super) fn policy_config(
    config: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<String>> {
    match config.filter(|c| !c.is_empty()) {
        Some(config) => bounded_json("policy_config", config).map(Some),
        None => Ok(None),
    }
}

/// A plugin configuration object as JSON text, refused past the size cap.
pub(super) fn bounded_json(
    field: &'static str,
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<String> {
    let text = serde_json::Value::Object(config).to_string();
    if text.len() > MAX_POLICY_CONFIG_BYTES {
        return Err(CatalogError::invalid(
            field,
            format!("must be at most {MAX_POLICY_CONFIG_BYTES} bytes of JSON"),
        ));
    }
    Ok(text)
}

/// Largest per-listing plugin configuration.
const MAX_POLICY_CONFIG_BYTES: usize = 16 * 1024;

/// The price in cents for a pricing model: free is 0; per_call is positive with at most
/// two decimals.
pub fn price_for(model: PricingModel, amount: Option<&serde_json::Number>) -> Result<i64> {
    let cents = match amount {
        None => 0,
        Some(n) => {
            let v = n.as_f64().filter(|v| v.is_finite() && *v >= 0.0);
            let v = v.ok_or_else(|| {
                CatalogError::invalid("pricing_amount", "must be a non-negative number")
            })?;
            let cents = (v * 100.0).round();
            if (cents / 100.0 - v).abs() > 1e-9 {
                return Err(CatalogError::invalid(
                    "pricing_amount",
                    "must have at most two decimals",
                ));
            }
            if cents > MAX_PRICE_CENTS as f64 {
                return Err(CatalogError::invalid(
                    "pricing_amount",
                    "must be at most 1000000",
                ));
            }
            cents as i64
        }
    };
    match model {
        PricingModel::Free if cents != 0 => Err(CatalogError::invalid(
            "pricing_amount",
            "must be 0 for free listings",
        )),
        PricingModel::PerCall if cents == 0 => Err(CatalogError::invalid(
            "pricing_amount",
            "must be greater than 0 for per_call listings",
        )),
        _ => Ok(cents),
    }
}

/// A URL-safe slug from a name: lowercase ASCII letters and digits joined by `-`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "listing".into()
    } else {
        slug.into()
    }
}

pub(super) fn text(field: &'static str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(CatalogError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(CatalogError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(v.to_owned()))
}

/// A listing name: [`text`] without invisible formatting characters
/// ([`crate::text::is_invisible`]).
pub(super) fn name_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>> {
    let v = text(field, value, max)?;
    if let Some(v) = &v
        && v.chars().any(crate::text::is_invisible)
    {
        return Err(CatalogError::invalid(
            field,
            "must not contain invisible formatting characters (bidirectional overrides, zero-width characters, ...)",
        ));
    }
    Ok(v)
}

pub(super) fn keyword(field: &'static str, v: &str) -> Result<String> {
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(CatalogError::invalid(
            field,
            "must be 1-32 lowercase letters, digits, '_' or '-'",
        ))
    }
}

pub(super) fn formats(list: Vec<String>) -> Result<String> {
    if list.len() > 10 {
        return Err(CatalogError::invalid(
            "formats",
            "must have at most 10 entries",
        ));
    }
    for f in &list {
        let ok = (1..=32).contains(&f.len())
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./+".contains(&b));
        if !ok {
            return Err(CatalogError::invalid(
                "formats",
                "entries must be short format names such as json",
            ));
        }
    }
    Ok(serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: &str) -> serde_json::Number {
        serde_json::from_str(v).unwrap()
    }

    #[test]
    fn prices_in_cents() {
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("0.01"))).unwrap(),
            1
        );
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("1"))).unwrap(),
            100
        );
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("19.99"))).unwrap(),
            1999
        );
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("0.29"))).unwrap(),
            29
        );
        assert!(price_for(PricingModel::PerCall, Some(&num("0.001"))).is_err());
        assert!(price_for(PricingModel::PerCall, Some(&num("-1"))).is_err());
        assert!(price_for(PricingModel::PerCall, Some(&num("0"))).is_err());
        assert!(price_for(PricingModel::PerCall, None).is_err());
        assert!(price_for(PricingModel::PerCall, Some(&num("1000001"))).is_err());
        assert_eq!(price_for(PricingModel::Free, None).unwrap(), 0);
        assert!(price_for(PricingModel::Free, Some(&num("1"))).is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Signal Router"), "signal-router");
        assert_eq!(slugify("  GPT-4o  summarizer!! "), "gpt-4o-summarizer");
        assert_eq!(slugify("日本語"), "listing");
        assert!(slugify(&"a".repeat(200)).len() <= 60);
    }
}
