//! Parsing the per-publication `config` JSON that the host passes to every plugin call.

use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// Parses `config` (a JSON object; empty text counts as `{}`) into `T`.
///
/// `T` should use `#[serde(deny_unknown_fields)]` so that a misspelt parameter is an error
/// rather than silently ignored. The error is a sentence meant for the operator, e.g.
/// ``invalid config: unknown field `feeBp`, expected `feeBps` at line 1 column 8``.
///
/// The text is deserialized straight into `T`, without a `serde_json::Value` in between: the
/// host calls a billing rule with its config at every settlement, and building the value
/// (a map and its strings) was most of a call's guest instructions.
pub fn parse_config<T: DeserializeOwned>(config: &str) -> Result<T, String> {
    let text = config.trim();
    let text = if text.is_empty() { "{}" } else { text };
    if !text.starts_with('{') {
        // Not an object: say so rather than what `T` would say about a number or a list, but
        // first whether it is JSON at all.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => "invalid config: expected a JSON object".to_string(),
            Err(e) => format!("invalid config: not JSON: {e}"),
        });
    }
    serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Data => format!("invalid config: {e}"),
        Category::Io | Category::Syntax | Category::Eof => {
            format!("invalid config: not JSON: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Cfg {
        #[serde(default)]
        fee_bps: u32,
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(parse_config::<Cfg>("").unwrap(), Cfg { fee_bps: 0 });
        assert_eq!(parse_config::<Cfg>(" {} ").unwrap(), Cfg { fee_bps: 0 });
        assert_eq!(
            parse_config::<Cfg>(r#"{"feeBps": 250}"#).unwrap(),
            Cfg { fee_bps: 250 }
        );
    }

    #[test]
    fn errors_are_clear() {
        let e = parse_config::<Cfg>(r#"{"feeBp": 1}"#).unwrap_err();
        assert!(
            e.starts_with("invalid config: unknown field `feeBp`"),
            "{e}"
        );
        assert!(
            parse_config::<Cfg>("[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(parse_config::<Cfg>("{").unwrap_err().contains("not JSON"));
        assert!(
            parse_config::<Cfg>("nope")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_config::<Cfg>("12")
                .unwrap_err()
                .contains("expected a JSON object")
        );
        assert!(
            parse_config::<Cfg>(r#"{"feeBps": 1} x"#)
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(parse_config::<Cfg>(r#"{"feeBps": -1}"#).is_err());
    }
}
