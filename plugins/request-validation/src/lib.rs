//! Request validation policy for gateway calls: body size, nesting depth, required
//! fields and a subset of JSON Schema. Identity (`auth`) routes are always allowed.
//!
//! Operator configuration (host `config()`; every key optional):
//!
//! ```json
//! {"max_body_bytes": 1048576, "max_depth": 32, "required_fields": []}
//! ```
//!
//! Listing configuration (the listing's own JSON for this plugin; optional):
//!
//! ```json
//! {"schema": {"type": "object", "required": ["input"]}, "required_fields": ["/input"],
//!  "min_buyer_score": 400}
//! ```
//!
//! `required_fields` are JSON pointers that must exist in the body. The schema subset:
//! `type` (a name or a list of names: object, array, string, number, integer, boolean,
//! null), `properties`, `required`, `additionalProperties` (boolean), `items` (one
//! schema), `enum`, `const`, `minLength`/`maxLength` (characters), `minimum`/`maximum`,
//! `minItems`/`maxItems`. Other keywords are ignored; `true`/`false` are schemas too.
//!
//! Every body refusal is `422 VALIDATION_FAILED` with `field` set to the JSON pointer of
//! the failing place (`""` for the body itself).
//!
//! `min_buyer_score` admits only buyers whose Crochet Score (given by the host in the
//! call context) is at least that (400 = Moderate); others, and buyers whose score the
//! host could not give, get `403 BUYER_SCORE_TOO_LOW`.
//!
//! The host calls `validate-config` when it loads the plugin: an operator configuration
//! with an unknown key or a malformed pointer stops the host from starting (or a reload
//! from going through) with this plugin's message.

wit_bindgen::generate!({
    path: "../../wit",
    world: "configurable-policy",
});

use crochet::plugin::host::{self, LogLevel};
use crochet::plugin::types::{CallKind, Denial};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The operator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorConfig {
    pub max_body_bytes: u64,
    pub max_depth: u32,
    pub required_fields: Vec<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1_048_576,
            max_depth: 32,
            required_fields: Vec::new(),
        }
    }
}

impl OperatorConfig {
    /// Parses the operator's JSON, checking its pointers.
    pub fn try_parse(json: &str) -> Result<Self, String> {
        let config = serde_json::from_str::<Self>(json).map_err(|e| e.to_string())?;
        check_pointers(&config.required_fields)?;
        Ok(config)
    }

    /// Parses the operator's JSON. On any error returns the defaults and the reason.
    pub fn parse(json: &str) -> (Self, Option<String>) {
        match Self::try_parse(json) {
            Ok(config) => (config, None),
            Err(err) => (
                Self::default(),
                Some(format!(
                    "invalid request-validation configuration ({err}); using the defaults"
                )),
            ),
        }
    }
}

/// The listing's configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListingConfig {
    pub schema: Option<Value>,
    pub required_fields: Vec<String>,
    /// Lowest buyer Crochet Score admitted (0-1000).
    pub min_buyer_score: Option<u32>,
}

/// The refusal of a buyer below the listing's `min_buyer_score`, if any.
/// `buyer` is the buyer's score and tier when the host knows them.
pub fn admit(listing: &ListingConfig, buyer: Option<(u32, &str)>) -> Option<Denial> {
    let min = listing.min_buyer_score?;
    let message = match buyer {
        Some((score, _)) if score >= min => return None,
        Some((score, tier)) => format!(
            "this listing admits buyers with a Crochet Score of at least {min}; yours is {score} ({tier})"
        ),
        None => format!(
            "this listing admits buyers with a Crochet Score of at least {min}; yours is not available"
        ),
    };
    Some(Denial {
        status: 403,
        code: "BUYER_SCORE_TOO_LOW".to_owned(),
        message,
        field: None,
        retry_after_seconds: None,
    })
}

impl ListingConfig {
    /// Parses the listing's JSON. On error returns an empty configuration (no listing
    /// checks) and the reason.
    pub fn parse(json: Option<&str>) -> (Self, Option<String>) {
        let Some(json) = json else {
            return (Self::default(), None);
        };
        let parsed = serde_json::from_str::<Self>(json)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                check_pointers(&config.required_fields)?;
                match &config.schema {
                    None | Some(Value::Object(_) | Value::Bool(_)) => Ok(config),
                    Some(_) => Err("`schema` must be an object or a boolean".to_owned()),
                }
            });
        match parsed {
            Ok(config) => (config, None),
            Err(err) => (
                Self::default(),
                Some(format!(
                    "invalid listing configuration ({err}); skipping the listing's checks"
                )),
            ),
        }
    }
}

fn check_pointers(pointers: &[String]) -> Result<(), String> {
    match pointers
        .iter()
        .find(|p| !p.is_empty() && !p.starts_with('/'))
    {
        Some(p) => Err(format!(
            "required field `{p}` is not a JSON pointer (it must start with `/`)"
        )),
        None => Ok(()),
    }
}

/// A validation failure: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A JSON pointer, `""` for the body itself.
    pub field: String,
    /// What is wrong there, e.g. `must be at most 2000 characters`.
    pub reason: String,
}

impl Failure {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// `"/input/text: must be at most 2000 characters"`; `"body: ..."` for the root.
    pub fn message(&self) -> String {
        let place = if self.field.is_empty() {
            "body"
        } else {
            &self.field
        };
        format!("{place}: {}", self.reason)
    }

    fn into_decision(self) -> Decision {
        Decision::Deny(Denial {
            status: 422,
            code: "VALIDATION_FAILED".to_owned(),
            message: self.message(),
            field: Some(self.field),
            retry_after_seconds: None,
        })
    }
}

/// Runs every check on one body, in order: size, depth, required fields, schema.
pub fn validate(
    operator: &OperatorConfig,
    listing: &ListingConfig,
    body_size: u64,
    body_json: &str,
) -> Result<(), Failure> {
    if body_size > operator.max_body_bytes {
        return Err(Failure::new(
            "",
            format!(
                "is {body_size} bytes, more than the {} allowed",
                operator.max_body_bytes
            ),
        ));
    }
    let body: Value = match serde_json::from_str(body_json) {
        Ok(body) => body,
        // serde_json refuses documents nested deeper than 128 levels.
        Err(err) if err.to_string().starts_with("recursion limit exceeded") => {
            return Err(Failure::new(
                "",
                format!(
                    "is nested more than {} levels deep",
                    operator.max_depth.min(128)
                ),
            ));
        }
        Err(err) => return Err(Failure::new("", format!("is not valid JSON ({err})"))),
    };
    if let Some(field) = deeper_than(&body, operator.max_depth) {
        return Err(Failure::new(
            &field,
            format!("is nested more than {} levels deep", operator.max_depth),
        ));
    }
    for pointer in operator
        .required_fields
        .iter()
        .chain(&listing.required_fields)
    {
        if body.pointer(pointer).is_none() {
            return Err(Failure::new(pointer, "is required"));
        }
    }
    if let Some(schema) = &listing.schema {
        check_schema(schema, &body, &mut String::new())?;
    }
    Ok(())
}

/// The nesting depth of a value: 0 for a scalar, 1 for `[]` or `{}` or a container of
/// scalars, and so on. Returns the pointer of the first container deeper than `max`.
/// Iterative, so a deep document cannot exhaust the stack.
pub fn deeper_than(value: &Value, max: u32) -> Option<String> {
    // (value, its depth if it is a container, its pointer)
    let mut stack: Vec<(&Value, u32, String)> = vec![(value, 1, String::new())];
    while let Some((value, depth, pointer)) = stack.pop() {
        let children: Vec<(String, &Value)> = match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            Value::Object(map) => map.iter().map(|(k, v)| (escape(k), v)).collect(),
            _ => continue,
        };
        if depth > max {
            return Some(pointer);
        }
        // Reversed, so that the first offending place in document order is found.
        for (segment, child) in children.into_iter().rev() {
            if child.is_array() || child.is_object() {
                stack.push((child, depth + 1, format!("{pointer}/{segment}")));
            }
        }
    }
    None
}

/// Escapes one JSON pointer segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Checks `value` (at `pointer`) against `schema`. Recursion follows the schema, whose
/// depth, like the body's, serde_json bounds at 128.
fn check_schema(schema: &Value, value: &Value, pointer: &mut String) -> Result<(), Failure> {
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(Failure::new(pointer, "is not allowed")),
        Value::Object(schema) => schema,
        _ => return Ok(()),
    };

    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.is_empty() && !names.iter().any(|name| has_type(value, name)) {
            let expected = match names.as_slice() {
                [one] => format!("must be of type {one}"),
                many => format!("must be of type {}", many.join(" or ")),
            };
            return Err(Failure::new(pointer, expected));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.iter().any(|a| json_eq(a, value))
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(Failure::new(
            pointer,
            format!("must be one of {}", list.join(", ")),
        ));
    }
    if let Some(expected) = schema.get("const")
        && !json_eq(expected, value)
    {
        return Err(Failure::new(pointer, format!("must be {expected}")));
    }

    match value {
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                return Err(Failure::new(
                    pointer,
                    format!("must be at least {}", count(min, "character")),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                return Err(Failure::new(
                    pointer,
                    format!("must be at most {}", count(max, "character")),
                ));
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                return Err(Failure::new(
                    pointer,
                    format!("must be at least {}", schema["minimum"]),
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                return Err(Failure::new(
                    pointer,
                    format!("must be at most {}", schema["maximum"]),
                ));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                return Err(Failure::new(
                    pointer,
                    format!("must have at least {}", count(min, "item")),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                return Err(Failure::new(
                    pointer,
                    format!("must have at most {}", count(max, "item")),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    with_segment(pointer, &i.to_string(), |pointer| {
                        check_schema(item_schema, item, pointer)
                    })?;
                }
            }
        }
        Value::Object(object) => check_object(schema, object, pointer)?,
        Value::Bool(_) | Value::Null => {}
    }
    Ok(())
}

fn check_object(
    schema: &Map<String, Value>,
    object: &Map<String, Value>,
    pointer: &mut String,
) -> Result<(), Failure> {
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return with_segment(pointer, &escape(name), |pointer| {
                    Err(Failure::new(pointer, "is required"))
                });
            }
        }
    }
    if schema.get("additionalProperties") == Some(&Value::Bool(false))
        && let Some(extra) = object
            .keys()
            .find(|k| !properties.is_some_and(|p| p.contains_key(*k)))
    {
        return with_segment(pointer, &escape(extra), |pointer| {
            Err(Failure::new(pointer, "is not allowed"))
        });
    }
    if let Some(properties) = properties {
        for (name, property_schema) in properties {
            if let Some(value) = object.get(name) {
                with_segment(pointer, &escape(name), |pointer| {
                    check_schema(property_schema, value, pointer)
                })?;
            }
        }
    }
    Ok(())
}

/// `1 item`, `2 items`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Runs `f` with `/segment` appended to `pointer`, then restores it.
fn with_segment<T>(pointer: &mut String, segment: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(segment);
    let result = f(pointer);
    pointer.truncate(len);
    result
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        // An unknown type name matches nothing.
        _ => false,
    }
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Decides on one call.
pub fn decide(
    operator: &OperatorConfig,
    listing: &ListingConfig,
    kind: CallKind,
    body_size: u64,
    body_json: &str,
) -> Decision {
    if let CallKind::Auth = kind {
        return Decision::Allow;
    }
    match validate(operator, listing, body_size, body_json) {
        Ok(()) => Decision::Allow,
        Err(failure) => failure.into_decision(),
    }
}

struct Component;

/// The operator's configuration, read and parsed once per instance: it never changes
/// for an instance (a reload starts new ones), and an instance may serve many calls.
fn operator_config() -> &'static (OperatorConfig, Option<String>) {
    static CONFIG: std::sync::OnceLock<(OperatorConfig, Option<String>)> =
        std::sync::OnceLock::new();
    CONFIG.get_or_init(|| OperatorConfig::parse(&host::config()))
}

impl Guest for Component {
    fn check(ctx: CallContext) -> Decision {
        if let CallKind::Auth = ctx.kind {
            return Decision::Allow;
        }
        let (operator, problem) = operator_config();
        if let Some(problem) = problem {
            // The host tries every policy before it serves: this refusal stops a bad
            // configuration at start-up or reload instead of running on defaults.
            host::log(LogLevel::Error, problem);
            return Decision::Deny(Denial {
                status: 500,
                code: "PLUGIN_CONFIG_INVALID".to_owned(),
                message: problem.clone(),
                field: None,
                retry_after_seconds: None,
            });
        }
        let (listing, warning) = ListingConfig::parse(ctx.listing_config.as_deref());
        if let Some(warning) = warning {
            let listing_id = ctx.listing_id.as_deref().unwrap_or("?");
            host::log(LogLevel::Warn, &format!("listing {listing_id}: {warning}"));
        }
        let buyer = ctx.buyer_score.as_ref().map(|s| (s.score, s.tier.as_str()));
        if let Some(denial) = admit(&listing, buyer) {
            return Decision::Deny(denial);
        }
        decide(operator, &listing, ctx.kind, ctx.body_size, &ctx.body_json)
    }

    fn validate_config(config: String) -> Result<(), String> {
        OperatorConfig::try_parse(&config)
            .map(drop)
            .map_err(|e| format!("invalid request-validation configuration: {e}"))
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(operator: &OperatorConfig, listing: &ListingConfig, body: &str) -> Result<(), Failure> {
        validate(operator, listing, body.len() as u64, body)
    }

    fn with_schema(schema: Value) -> ListingConfig {
        ListingConfig {
            schema: Some(schema),
            ..ListingConfig::default()
        }
    }

    #[test]
    fn buyers_below_the_minimum_score_are_refused() {
        let open = ListingConfig::default();
        assert!(admit(&open, None).is_none());
        let moderate = ListingConfig::parse(Some(r#"{"min_buyer_score": 400}"#)).0;
        assert_eq!(moderate.min_buyer_score, Some(400));
        assert!(admit(&moderate, Some((400, "Moderate"))).is_none());
        let low = admit(&moderate, Some((327, "Low"))).expect("refused");
        assert_eq!(
            (low.status, low.code.as_str()),
            (403, "BUYER_SCORE_TOO_LOW")
        );
        assert!(low.message.contains("327 (Low)"), "{}", low.message);
        assert!(
            admit(&moderate, None).is_some(),
            "an unknown score is refused"
        );
    }

    fn fails(schema: Value, body: Value) -> Failure {
        run(
            &OperatorConfig::default(),
            &with_schema(schema),
            &body.to_string(),
        )
        .expect_err("should fail")
    }

    fn passes(schema: Value, body: Value) {
        run(
            &OperatorConfig::default(),
            &with_schema(schema),
            &body.to_string(),
        )
        .expect("should pass");
    }

    #[test]
    fn configs_parse_with_defaults() {
        assert_eq!(
            OperatorConfig::parse("{}"),
            (OperatorConfig::default(), None)
        );
        let (config, warning) =
            OperatorConfig::parse(r#"{"max_depth": 4, "required_fields": ["/input"]}"#);
        assert!(warning.is_none());
        assert_eq!(config.max_depth, 4);
        assert_eq!(config.max_body_bytes, 1_048_576);
        for bad in [
            r#"{"max_depth": -1}"#,
            r#"{"required_fields": ["input"]}"#,
            r#"{"x": 1}"#,
            "[",
        ] {
            let (config, warning) = OperatorConfig::parse(bad);
            assert!(warning.is_some(), "{bad}");
            assert_eq!(config, OperatorConfig::default());
            let refused = Component::validate_config(bad.into()).unwrap_err();
            assert!(
                refused.starts_with("invalid request-validation configuration"),
                "{refused}"
            );
        }
        assert_eq!(ListingConfig::parse(None), (ListingConfig::default(), None));
        let (listing, warning) = ListingConfig::parse(Some(r#"{"schema": 3}"#));
        assert!(warning.is_some());
        assert_eq!(listing, ListingConfig::default());
    }

    #[test]
    fn auth_calls_are_allowed() {
        let operator = OperatorConfig {
            max_body_bytes: 0,
            ..OperatorConfig::default()
        };
        let decision = decide(
            &operator,
            &ListingConfig::default(),
            CallKind::Auth,
            10,
            "{}",
        );
        assert!(matches!(decision, Decision::Allow));
    }

    #[test]
    fn body_size() {
        let operator = OperatorConfig {
            max_body_bytes: 10,
            ..OperatorConfig::default()
        };
        let decision = decide(
            &operator,
            &ListingConfig::default(),
            CallKind::Gateway,
            11,
            r#"{"a": 123}"#,
        );
        let Decision::Deny(denial) = decision else {
            panic!("should deny")
        };
        assert_eq!(denial.status, 422);
        assert_eq!(denial.code, "VALIDATION_FAILED");
        assert_eq!(denial.field.as_deref(), Some(""));
        assert_eq!(
            denial.message,
            "body: is 11 bytes, more than the 10 allowed"
        );
        let decision = decide(
            &operator,
            &ListingConfig::default(),
            CallKind::Gateway,
            10,
            "{}",
        );
        assert!(matches!(decision, Decision::Allow));
    }

    #[test]
    fn depth() {
        let operator = OperatorConfig {
            max_depth: 3,
            ..OperatorConfig::default()
        };
        let listing = ListingConfig::default();
        run(&operator, &listing, r#"{"a": {"b": [1, 2, "x"]}}"#).unwrap();
        run(&operator, &listing, r#""just a string""#).unwrap();
        let failure = run(&operator, &listing, r#"{"a": {"b": [1, {"c/d": 1}]}}"#).unwrap_err();
        assert_eq!(failure.field, "/a/b/1");
        assert_eq!(
            failure.message(),
            "/a/b/1: is nested more than 3 levels deep"
        );
        assert_eq!(deeper_than(&json!([]), 0), Some(String::new()));
        assert_eq!(deeper_than(&json!(1), 0), None);
        assert_eq!(
            deeper_than(&json!({"a~b": {"x/y": {}}}), 2),
            Some("/a~0b/x~1y".to_owned())
        );
    }

    #[test]
    fn very_deep_bodies_fail_without_blowing_the_stack() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let failure =
            run(&OperatorConfig::default(), &ListingConfig::default(), &body).unwrap_err();
        assert_eq!(failure.field, "");
        assert!(
            failure.reason.contains("nested more than 32 levels"),
            "{failure:?}"
        );

        let body = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let failure =
            run(&OperatorConfig::default(), &ListingConfig::default(), &body).unwrap_err();
        assert_eq!(failure.field, format!("/{}", vec!["0"; 32].join("/")));
    }

    #[test]
    fn required_fields_from_operator_and_listing() {
        let operator = OperatorConfig {
            required_fields: vec!["/input".to_owned()],
            ..OperatorConfig::default()
        };
        let listing = ListingConfig {
            schema: None,
            required_fields: vec!["/input/text".to_owned()],
            min_buyer_score: None,
        };
        let failure = run(&operator, &listing, r#"{"task": "x"}"#).unwrap_err();
        assert_eq!(failure.field, "/input");
        assert_eq!(failure.message(), "/input: is required");
        let failure = run(&operator, &listing, r#"{"input": {}}"#).unwrap_err();
        assert_eq!(failure.field, "/input/text");
        run(&operator, &listing, r#"{"input": {"text": null}}"#).unwrap();
    }

    #[test]
    fn schema_types() {
        passes(json!({"type": "object"}), json!({}));
        passes(json!({"type": ["string", "null"]}), json!(null));
        passes(json!({"type": "integer"}), json!(3));
        passes(json!({"type": "integer"}), json!(3.0));
        passes(json!({"type": "number"}), json!(3.5));
        let failure = fails(json!({"type": "integer"}), json!(3.5));
        assert_eq!(failure.message(), "body: must be of type integer");
        let failure = fails(json!({"type": ["array", "boolean"]}), json!("x"));
        assert_eq!(failure.reason, "must be of type array or boolean");
    }

    #[test]
    fn schema_objects() {
        let schema = json!({
            "type": "object",
            "required": ["input"],
            "additionalProperties": false,
            "properties": {
                "task": {"type": "string", "enum": ["summarize", "translate"]},
                "input": {
                    "type": "object",
                    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 2000}}
                }
            }
        });
        passes(
            schema.clone(),
            json!({"input": {"text": "héllo"}, "task": "translate"}),
        );
        assert_eq!(
            fails(schema.clone(), json!({"task": "translate"})).field,
            "/input"
        );
        let failure = fails(schema.clone(), json!({"input": {}, "extra/x": 1}));
        assert_eq!(failure.field, "/extra~1x");
        assert_eq!(failure.reason, "is not allowed");
        let failure = fails(schema.clone(), json!({"input": {}, "task": "dance"}));
        assert_eq!(
            failure.message(),
            r#"/task: must be one of "summarize", "translate""#
        );
        let failure = fails(schema.clone(), json!({"input": {"text": "é".repeat(2001)}}));
        assert_eq!(
            failure.message(),
            "/input/text: must be at most 2000 characters"
        );
        // 2000 characters of two bytes each are fine: lengths count characters.
        passes(schema.clone(), json!({"input": {"text": "é".repeat(2000)}}));
        let failure = fails(schema, json!({"input": {"text": ""}}));
        assert_eq!(
            failure.message(),
            "/input/text: must be at least 1 character"
        );
    }

    #[test]
    fn schema_arrays_numbers_const() {
        let schema = json!({
            "type": "array", "minItems": 1, "maxItems": 3,
            "items": {"type": "number", "minimum": 0, "maximum": 1.5}
        });
        passes(schema.clone(), json!([0, 1.5, 1]));
        assert_eq!(
            fails(schema.clone(), json!([])).reason,
            "must have at least 1 item"
        );
        assert_eq!(
            fails(schema.clone(), json!([1, 1, 1, 1])).reason,
            "must have at most 3 items"
        );
        assert_eq!(
            fails(schema.clone(), json!([1, -1])).message(),
            "/1: must be at least 0"
        );
        assert_eq!(
            fails(schema, json!([2])).message(),
            "/0: must be at most 1.5"
        );
        passes(json!({"const": {"a": [1]}}), json!({"a": [1.0]}));
        assert_eq!(
            fails(json!({"const": "x"}), json!("y")).reason,
            r#"must be "x""#
        );
        passes(json!({"enum": [1, "a", null]}), json!(null));
        passes(
            json!({"unknownKeyword": 3, "format": "email"}),
            json!("not an email"),
        );
        assert_eq!(
            fails(json!({"properties": {"a": false}}), json!({"a": 1})).message(),
            "/a: is not allowed"
        );
        passes(json!(true), json!({"anything": 1}));
    }
}
