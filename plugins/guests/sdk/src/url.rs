//! A small parser of `http://` and `https://` URLs into what wasi:http's outgoing-request wants.

/// The parts of an absolute HTTP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    /// `host` or `host:port`, as written (the port is left out when the URL has none).
    pub authority: String,
    /// Path and query, at least `/`; the fragment is dropped.
    pub path_with_query: String,
}

/// Parses `url`; only `http` and `https`, no user info.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let url = url.trim();
    let (https, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
        Some((scheme, _)) => return Err(format!("unsupported URL scheme `{scheme}`")),
        None => return Err(format!("not an absolute http(s) URL: `{url}`")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("URL without a host: `{url}`"));
    }
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".to_string());
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        || tail.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid characters in URL `{url}`"));
    }
    let path_with_query = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok(HttpUrl {
        https,
        authority: authority.to_string(),
        path_with_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> (bool, String, String) {
        let u = parse_http_url(url).unwrap();
        (u.https, u.authority, u.path_with_query)
    }

    #[test]
    fn parses() {
        assert_eq!(
            p("https://api.openai.com/v1/chat/completions"),
            (true, "api.openai.com".into(), "/v1/chat/completions".into())
        );
        assert_eq!(
            p(" HTTP://127.0.0.1:8080"),
            (false, "127.0.0.1:8080".into(), "/".into())
        );
        assert_eq!(
            p("http://h:1?a=1#frag"),
            (false, "h:1".into(), "/?a=1".into())
        );
        assert_eq!(
            p("http://[::1]:9/x?y"),
            (false, "[::1]:9".into(), "/x?y".into())
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "ftp://x/",
            "localhost:80/x",
            "http:///x",
            "http://u:p@h/",
            "http://h /x",
            "http://h/a b",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }
}
