//! `http-json`: POSTs the subscriber's JSON input to the publication's endpoint and returns
//! the response JSON. See `plugins/guests/README.md`.

use liutong_plugin_sdk::adapter::{AdapterError, Guest, Invocation, Outcome, Publication, Usage};
use liutong_plugin_sdk::http::{self, Request};
use liutong_plugin_sdk::openai::is_header_safe;
use serde::Deserialize;

fn default_timeout() -> u64 {
    30_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    /// When set and present among the secrets: `Authorization: Bearer <value>`.
    #[serde(default)]
    api_key_secret: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    max_response_bytes: Option<usize>,
}

struct HttpJson;

impl Guest for HttpJson {
    fn invoke(publication: Publication, invocation: Invocation) -> Result<Outcome, AdapterError> {
        let config: Config = liutong_plugin_sdk::config::parse_config(&publication.config)
            .map_err(AdapterError::InvalidConfig)?;
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&invocation.input) {
            return Err(AdapterError::InvalidInput(format!(
                "the input is not JSON: {e}"
            )));
        }

        let mut request = Request::post(&publication.endpoint, invocation.input.as_bytes())
            .header("content-type", "application/json")
            .header("accept", "application/json");
        request.timeout_ms = Some(config.timeout_ms);
        if let Some(limit) = config.max_response_bytes {
            request.max_response_bytes = limit;
        }
        if let Some(name) = &config.api_key_secret
            && let Some(key) = publication.secret(name)
        {
            let value = format!("Bearer {}", key.trim());
            if !is_header_safe(&value) {
                return Err(AdapterError::InvalidConfig(format!(
                    "secret `{name}` is not usable in a header"
                )));
            }
            request = request.header("authorization", &value);
        }
        if is_header_safe(&invocation.request_id) {
            request = request.header("x-request-id", &invocation.request_id);
        }

        let (output, duration_ms) = http::exchange(request)?;
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&output) {
            return Err(AdapterError::BadResponse(format!(
                "the response is not JSON: {e}"
            )));
        }
        Ok(Outcome {
            output,
            usage: Usage {
                calls: 1,
                input_tokens: 0,
                output_tokens: 0,
                duration_ms,
            },
        })
    }
}

liutong_plugin_sdk::export_adapter!(HttpJson);
