//! `openai-chat`: calls an OpenAI-compatible chat-completions endpoint on the subscriber's
//! behalf. See `plugins/guests/README.md` for the config and the mapping of errors.

use liutong_plugin_sdk::adapter::{AdapterError, Guest, Invocation, Outcome, Publication, Usage};
use liutong_plugin_sdk::http::{self, Request};
use liutong_plugin_sdk::openai::{
    chat_completions_url, chat_request_body, chat_usage, is_header_safe,
};
use serde::Deserialize;

fn default_secret() -> String {
    "api-key".to_string()
}

fn default_timeout() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    /// Added to the request when the input does not name a model.
    #[serde(default)]
    model: Option<String>,
    /// The secret holding the API key, sent as `Authorization: Bearer <value>` when present.
    #[serde(default = "default_secret")]
    api_key_secret: String,
    /// Connect, first-byte and between-bytes timeout.
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// The largest response accepted.
    #[serde(default)]
    max_response_bytes: Option<usize>,
}

struct OpenAiChat;

impl Guest for OpenAiChat {
    fn invoke(publication: Publication, invocation: Invocation) -> Result<Outcome, AdapterError> {
        let config: Config = liutong_plugin_sdk::config::parse_config(&publication.config)
            .map_err(AdapterError::InvalidConfig)?;
        let body = chat_request_body(&invocation.input, config.model.as_deref())
            .map_err(AdapterError::InvalidInput)?;
        let url = chat_completions_url(&publication.endpoint);

        let mut request = Request::post(&url, body.as_bytes())
            .header("content-type", "application/json")
            .header("accept", "application/json");
        request.timeout_ms = Some(config.timeout_ms);
        if let Some(limit) = config.max_response_bytes {
            request.max_response_bytes = limit;
        }
        if let Some(key) = publication.secret(&config.api_key_secret) {
            let value = format!("Bearer {}", key.trim());
            if !is_header_safe(&value) {
                return Err(AdapterError::InvalidConfig(format!(
                    "secret `{}` is not usable in a header",
                    config.api_key_secret
                )));
            }
            request = request.header("authorization", &value);
        }
        if is_header_safe(&invocation.request_id) {
            request = request.header("x-request-id", &invocation.request_id);
        }

        let (output, duration_ms) = http::exchange(request)?;
        let json: serde_json::Value = serde_json::from_str(&output)
            .map_err(|e| AdapterError::BadResponse(format!("the response is not JSON: {e}")))?;
        let (input_tokens, output_tokens) = chat_usage(&json);
        Ok(Outcome {
            output,
            usage: Usage {
                calls: 1,
                input_tokens,
                output_tokens,
                duration_ms,
            },
        })
    }
}

liutong_plugin_sdk::export_adapter!(OpenAiChat);
