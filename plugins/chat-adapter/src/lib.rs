//! Seller adapter for chat-completions APIs (OpenAI-style `messages` in, `choices` out).
//!
//! Configuration (host `config()`; every key optional):
//!
//! ```json
//! {"model": "default", "system_prompt": null}
//! ```
//!
//! The buyer sends `{"task": "...", "input": ...}`. Without a `system_prompt` the task
//! becomes the system message and the input the user message; with one, the system
//! message is the `system_prompt` and the user message is `task + "\n\n" + input`. An
//! input that is not a string is sent as compact JSON (a missing input as `null`).
//!
//! The seller's `{"choices": [{"message": {"content": ...}}], "usage": ...}` comes back
//! to the buyer as `{"output": <content>, "usage": <usage or null>, "model": ...}`, with
//! `model` only when the seller named one.

wit_bindgen::generate!({
    path: "../../wit",
    world: "seller-adapter",
});

use crochet::plugin::host::{self, LogLevel};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The operator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: String,
    pub system_prompt: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: "default".to_owned(),
            system_prompt: None,
        }
    }
}

impl Config {
    /// Parses the operator's JSON. On any error returns the defaults and the reason.
    pub fn parse(json: &str) -> (Self, Option<String>) {
        match serde_json::from_str(json) {
            Ok(config) => (config, None),
            Err(err) => (
                Self::default(),
                Some(format!(
                    "invalid chat-adapter configuration ({err}); using the defaults"
                )),
            ),
        }
    }
}

/// The buyer's `{"task", "input"}` body to a chat-completions request body.
pub fn adapt_request(config: &Config, body: &str) -> Result<String, String> {
    const NO_TASK: &str = "body must have a string `task`";
    let body: Value = serde_json::from_str(body).map_err(|_| NO_TASK.to_owned())?;
    let task = body
        .get("task")
        .and_then(Value::as_str)
        .ok_or_else(|| NO_TASK.to_owned())?;
    let input = match body.get("input") {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => "null".to_owned(),
    };
    let (system, user) = match &config.system_prompt {
        Some(prompt) => (prompt.clone(), format!("{task}\n\n{input}")),
        None => (task.to_owned(), input),
    };
    let request = json!({
        "model": config.model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
    });
    Ok(request.to_string())
}

/// The seller's chat-completions reply to the buyer's `{"output", "usage", "model"}`.
pub fn adapt_response(status: u16, body: &str) -> Result<String, String> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if status >= 400 {
        // OpenAI-style errors: {"error": {"message": "..."}} or {"error": "..."}.
        let reason = parsed.as_ref().and_then(|v| {
            let error = v.get("error")?;
            error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.as_str())
                .map(str::to_owned)
        });
        return Err(match reason {
            Some(reason) => format!("the seller answered HTTP {status}: {reason}"),
            None => format!("the seller answered HTTP {status}"),
        });
    }
    let Some(Value::Object(reply)) = parsed else {
        return Err("the seller's reply is not a JSON object".to_owned());
    };
    let first = match reply.get("choices") {
        Some(Value::Array(choices)) => choices.first(),
        _ => None,
    }
    .ok_or_else(|| "the seller's reply has no `choices`".to_owned())?;
    let content = first
        .get("message")
        .and_then(|m| m.get("content"))
        .filter(|c| !c.is_null())
        .ok_or_else(|| "the seller's first choice has no `message.content`".to_owned())?;
    let mut out = Map::new();
    out.insert("output".to_owned(), content.clone());
    out.insert(
        "usage".to_owned(),
        reply.get("usage").cloned().unwrap_or(Value::Null),
    );
    if let Some(model) = reply.get("model") {
        out.insert("model".to_owned(), model.clone());
    }
    Ok(Value::Object(out).to_string())
}

struct Component;

impl Guest for Component {
    fn adapt_request(body: String) -> Result<String, String> {
        let (config, warning) = Config::parse(&host::config());
        if let Some(warning) = warning {
            host::log(LogLevel::Warn, &warning);
        }
        adapt_request(&config, &body)
    }

    fn adapt_response(status: u16, body: String) -> Result<String, String> {
        adapt_response(status, &body)
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn config() {
        assert_eq!(Config::parse("{}"), (Config::default(), None));
        let (config, warning) = Config::parse(r#"{"model": "m", "system_prompt": "be brief"}"#);
        assert!(warning.is_none());
        assert_eq!(config.model, "m");
        assert_eq!(config.system_prompt.as_deref(), Some("be brief"));
        let (config, warning) = Config::parse(r#"{"model": 3}"#);
        assert!(warning.is_some());
        assert_eq!(config, Config::default());
    }

    #[test]
    fn request_without_system_prompt() {
        let out = adapt_request(
            &Config::default(),
            r#"{"task": "Summarize", "input": "some text"}"#,
        )
        .unwrap();
        assert_eq!(
            parse(&out),
            json!({"model": "default", "messages": [
                {"role": "system", "content": "Summarize"},
                {"role": "user", "content": "some text"},
            ]})
        );
        let out = adapt_request(
            &Config::default(),
            r#"{"task": "t", "input": {"a": [1, 2]}}"#,
        )
        .unwrap();
        assert_eq!(parse(&out)["messages"][1]["content"], r#"{"a":[1,2]}"#);
        let out = adapt_request(&Config::default(), r#"{"task": "t"}"#).unwrap();
        assert_eq!(parse(&out)["messages"][1]["content"], "null");
    }

    #[test]
    fn request_with_system_prompt() {
        let config = Config {
            model: "gpt-x".to_owned(),
            system_prompt: Some("You are terse.".to_owned()),
        };
        let out = adapt_request(&config, r#"{"task": "Translate", "input": "bonjour"}"#).unwrap();
        assert_eq!(
            parse(&out),
            json!({"model": "gpt-x", "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Translate\n\nbonjour"},
            ]})
        );
    }

    #[test]
    fn request_without_task_is_refused() {
        for body in ["{}", r#"{"task": 3}"#, "null", "[]", "not json"] {
            assert_eq!(
                adapt_request(&Config::default(), body).unwrap_err(),
                "body must have a string `task`"
            );
        }
    }

    #[test]
    fn response() {
        let out = adapt_response(
            200,
            r#"{"id": "x", "model": "m-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                "usage": {"total_tokens": 5}}"#,
        )
        .unwrap();
        assert_eq!(
            parse(&out),
            json!({"output": "hi", "usage": {"total_tokens": 5}, "model": "m-1"})
        );
        let out = adapt_response(201, r#"{"choices": [{"message": {"content": "ok"}}]}"#).unwrap();
        assert_eq!(parse(&out), json!({"output": "ok", "usage": null}));
    }

    #[test]
    fn response_errors() {
        assert_eq!(
            adapt_response(429, r#"{"error": {"message": "slow down"}}"#).unwrap_err(),
            "the seller answered HTTP 429: slow down"
        );
        assert_eq!(
            adapt_response(500, "oops").unwrap_err(),
            "the seller answered HTTP 500"
        );
        assert!(
            adapt_response(200, r#"{"choices": []}"#)
                .unwrap_err()
                .contains("no `choices`")
        );
        assert!(
            adapt_response(200, "{}")
                .unwrap_err()
                .contains("no `choices`")
        );
        assert!(
            adapt_response(200, "[]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            adapt_response(200, r#"{"choices": [{"message": {"content": null}}]}"#)
                .unwrap_err()
                .contains("message.content")
        );
    }
}
