//! The pure parts of the adapters: endpoints, request bodies, usage, error excerpts.

use serde_json::{Map, Value};

/// The chat-completions URL of an OpenAI-compatible `endpoint`: used as is when it already ends
/// with `/chat/completions`; `…/v1` gets `/chat/completions`; anything else
/// `/v1/chat/completions` (a trailing `/` is dropped first).
pub fn chat_completions_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    let (base, query) = match endpoint.find('?') {
        Some(i) => endpoint.split_at(i),
        None => (endpoint, ""),
    };
    let base = base.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        format!("{base}{query}")
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions{query}")
    } else {
        format!("{base}/v1/chat/completions{query}")
    }
}

/// The request body for the subscriber's `input`:
///
/// - a JSON object with `messages`: passed through, with `"model": model` added when it has
///   none and a model is configured;
/// - any other JSON object: `Err` (it looks like a request but has no messages);
/// - a JSON string: its content as one user message;
/// - anything else (plain text, numbers, arrays…): the input text as one user message.
pub fn chat_request_body(input: &str, model: Option<&str>) -> Result<String, String> {
    let mut body = match serde_json::from_str::<Value>(input) {
        Ok(Value::Object(map)) if map.contains_key("messages") => map,
        Ok(Value::Object(_)) => {
            return Err("a JSON object input must have `messages`".to_string());
        }
        Ok(Value::String(text)) => user_message(&text),
        _ => user_message(input),
    };
    if let Some(model) = model
        && !body.contains_key("model")
    {
        body.insert("model".to_string(), Value::String(model.to_string()));
    }
    Ok(Value::Object(body).to_string())
}

fn user_message(text: &str) -> Map<String, Value> {
    let mut message = Map::new();
    message.insert("role".to_string(), Value::String("user".to_string()));
    message.insert("content".to_string(), Value::String(text.to_string()));
    let mut body = Map::new();
    body.insert(
        "messages".to_string(),
        Value::Array(vec![Value::Object(message)]),
    );
    body
}

/// `(prompt_tokens, completion_tokens)` of an OpenAI response's `usage`, 0 when absent.
pub fn chat_usage(response: &Value) -> (u64, u64) {
    let usage = response.get("usage");
    let count = |key: &str| {
        usage
            .and_then(|u| u.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (count("prompt_tokens"), count("completion_tokens"))
}

/// At most `max` bytes of `body` as text (lossy UTF-8, cut at a character boundary, `…` when
/// cut), for error messages.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Whether `value` is usable as an HTTP header value (visible ASCII and spaces).
pub fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        assert_eq!(
            chat_completions_url("https://api.openai.com"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            chat_completions_url("http://127.0.0.1:9000/"),
            "http://127.0.0.1:9000/v1/chat/completions"
        );
        assert_eq!(
            chat_completions_url("https://api.openai.com/v1"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            chat_completions_url("http://h/openai/deployments/x/chat/completions?api-version=1"),
            "http://h/openai/deployments/x/chat/completions?api-version=1"
        );
        assert_eq!(
            chat_completions_url("http://h/proxy"),
            "http://h/proxy/v1/chat/completions"
        );
    }

    fn body(input: &str, model: Option<&str>) -> Value {
        serde_json::from_str(&chat_request_body(input, model).unwrap()).unwrap()
    }

    #[test]
    fn bodies() {
        assert_eq!(
            body("hello", Some("gpt-x")),
            json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hello"}]})
        );
        assert_eq!(
            body("\"hi\"", None),
            json!({"messages": [{"role": "user", "content": "hi"}]})
        );
        assert_eq!(
            body("42", None),
            json!({"messages": [{"role": "user", "content": "42"}]})
        );
        let passthrough = r#"{"model": "m1", "messages": [{"role": "system", "content": "s"}], "temperature": 0}"#;
        assert_eq!(
            body(passthrough, Some("gpt-x")),
            serde_json::from_str::<Value>(passthrough).unwrap()
        );
        assert_eq!(
            body(r#"{"messages": []}"#, Some("gpt-x")),
            json!({"messages": [], "model": "gpt-x"})
        );
        assert!(chat_request_body(r#"{"prompt": "x"}"#, None).is_err());
    }

    #[test]
    fn usage_and_excerpts() {
        let r =
            json!({"usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}});
        assert_eq!(chat_usage(&r), (12, 34));
        assert_eq!(chat_usage(&json!({"choices": []})), (0, 0));
        assert_eq!(excerpt(b"  short ", 10), "short");
        assert_eq!(excerpt("ééé".as_bytes(), 3), "é…");
        assert_eq!(excerpt(&[0xff, b'a'], 10), "\u{fffd}a");
        assert!(is_header_safe("Bearer sk-abc"));
        assert!(!is_header_safe("a\nb"));
        assert!(!is_header_safe(""));
    }
}
