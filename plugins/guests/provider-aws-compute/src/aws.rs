//! Signed requests to the services of an AWS-compatible API, and reading their answers
//! (EC2's XML, EFS's and Cost Explorer's JSON, S3's XML errors).

#[cfg(target_arch = "wasm32")]
use liutong_plugin_sdk::http::{Method, Request};
use liutong_plugin_sdk::provider::ProviderError;

use crate::sigv4::{self, Credentials, Signable};

/// Where the services are and who signs: from the offering's config and secrets.
pub struct Client {
    /// `http[s]://host[:port]` of every service (an AWS-compatible endpoint), or `None` for
    /// AWS's own per-service endpoints.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub timeout_ms: u64,
}

/// A response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    fn base(&self, service: &str) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => match service {
                // Cost Explorer has one endpoint, in us-east-1.
                "ce" => "https://ce.us-east-1.amazonaws.com".to_string(),
                "elasticfilesystem" => {
                    format!("https://elasticfilesystem.{}.amazonaws.com", self.region)
                }
                other => format!("https://{other}.{}.amazonaws.com", self.region),
            },
        }
    }

    /// One signed request. `path` is percent-encoded already; `query` is not.
    pub fn send(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Reply, ProviderError> {
        let base = self.base(service);
        let host = base
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&base)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let https = base.starts_with("https://");
        // The authority the request carries, and so the Host header wasi:http sends: without
        // the scheme's default port.
        let host = match (https, host.strip_suffix(":443"), host.strip_suffix(":80")) {
            (true, Some(h), _) | (false, _, Some(h)) => h.to_string(),
            _ => host,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let amz_date = sigv4::amz_date(now);
        // The signing region of Cost Explorer is us-east-1 whatever the offering's region.
        let region = if service == "ce" {
            "us-east-1"
        } else {
            &self.region
        };
        let signed = sigv4::sign(
            &Signable {
                method,
                host: &host,
                path,
                query,
                headers,
                body,
                service,
                region,
                amz_date: &amz_date,
            },
            &Credentials {
                access_key: &self.access_key,
                secret_key: &self.secret_key,
            },
        );
        let q = sigv4::canonical_query(query);
        let url = if q.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{q}")
        };
        self.exchange(&url, method, headers, &signed, body, service)
    }

    /// Sends the signed request over wasi:http.
    #[cfg(target_arch = "wasm32")]
    fn exchange(
        &self,
        url: &str,
        method: &str,
        headers: &[(&str, String)],
        signed: &[(String, String)],
        body: &[u8],
        service: &str,
    ) -> Result<Reply, ProviderError> {
        let mut request = Request::get(url);
        request.method = match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_string()),
        };
        request.body = Some(body);
        request.timeout_ms = Some(self.timeout_ms);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        for (k, v) in signed {
            request = request.header(k, v);
        }
        let response = request
            .send()
            .map_err(|e| ProviderError::UpstreamUnreachable(format!("{service}: {e}")))?;
        Ok(Reply {
            status: response.status,
            body: response.body,
        })
    }

    /// Native builds (the unit tests) have no wasi:http.
    #[cfg(not(target_arch = "wasm32"))]
    fn exchange(
        &self,
        _url: &str,
        _method: &str,
        _headers: &[(&str, String)],
        _signed: &[(String, String)],
        _body: &[u8],
        service: &str,
    ) -> Result<Reply, ProviderError> {
        Err(ProviderError::UpstreamUnreachable(format!(
            "{service}: outbound HTTP needs wasm32-wasip2"
        )))
    }

    /// An EC2 Query API action (`Action=…&Version=2016-11-15&…`, form-encoded POST): the XML
    /// of a 2xx answer, or the error EC2 gave.
    pub fn ec2(&self, action: &str, params: &[(String, String)]) -> Result<String, Ec2Error> {
        let mut form = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), "2016-11-15".to_string()),
        ];
        form.extend(params.iter().cloned());
        let body = sigv4::canonical_query(&form);
        let reply = self
            .send(
                "ec2",
                "POST",
                "/",
                &[],
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8".to_string(),
                )],
                body.as_bytes(),
            )
            .map_err(Ec2Error::Other)?;
        let text = reply.text();
        if (200..300).contains(&reply.status) {
            return Ok(text);
        }
        let code = tag(&text, "Code").unwrap_or_default().to_string();
        let message = tag(&text, "Message").unwrap_or(&text).to_string();
        Err(Ec2Error::Api {
            status: reply.status,
            code,
            message,
        })
    }

    /// A JSON request (EFS's REST-JSON, Cost Explorer's JSON 1.1): the parsed 2xx answer, or
    /// the error the service gave.
    pub fn json(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, JsonError> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = self
            .send(service, method, path, query, headers, &bytes)
            .map_err(JsonError::Other)?;
        if (200..300).contains(&reply.status) {
            if reply.body.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            return serde_json::from_slice(&reply.body).map_err(|e| {
                JsonError::Other(ProviderError::BadResponse(format!(
                    "{service}: the answer is not JSON: {e}"
                )))
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let code = v
            .get("ErrorCode")
            .or_else(|| v.get("__type"))
            .or_else(|| v.get("code"))
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        // `__type` may be `namespace#Code`.
        let code = code.rsplit('#').next().unwrap_or_default().to_string();
        let message = v
            .get("Message")
            .or_else(|| v.get("message"))
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| reply.text());
        Err(JsonError::Api {
            status: reply.status,
            code,
            message,
        })
    }
}

/// An EC2 failure: the API's own error, or a transport failure.
pub enum Ec2Error {
    Api {
        status: u16,
        code: String,
        message: String,
    },
    Other(ProviderError),
}

impl From<Ec2Error> for ProviderError {
    fn from(e: Ec2Error) -> ProviderError {
        match e {
            Ec2Error::Api {
                status,
                code,
                message,
            } => ProviderError::UpstreamStatus((status, format!("{code}: {message}"))),
            Ec2Error::Other(e) => e,
        }
    }
}

/// An EFS or Cost Explorer failure.
pub enum JsonError {
    Api {
        status: u16,
        code: String,
        message: String,
    },
    Other(ProviderError),
}

impl From<JsonError> for ProviderError {
    fn from(e: JsonError) -> ProviderError {
        match e {
            JsonError::Api {
                status,
                code,
                message,
            } => ProviderError::UpstreamStatus((status, format!("{code}: {message}"))),
            JsonError::Other(e) => e,
        }
    }
}

/// The text of the first `<name>…</name>` element of `xml`.
pub fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// The XML after the first `<name>` element's opening tag, up to its closing tag.
pub fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    tag(xml, name)
}

/// Unescapes the five XML entities.
pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tags() {
        let xml = "<a><instanceState><code>16</code><name>running</name></instanceState><name>x</name></a>";
        assert_eq!(tag(xml, "code"), Some("16"));
        assert_eq!(
            element(xml, "instanceState").and_then(|s| tag(s, "name")),
            Some("running")
        );
        assert_eq!(tag(xml, "missing"), None);
        assert_eq!(unescape("a&amp;b&lt;"), "a&b<");
    }
}
