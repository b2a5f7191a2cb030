//! A small blocking HTTP client over `wasi:http/outgoing-handler` (0.2), for adapters and
//! providers.
//!
//! The host decides which hosts a request may reach; a refused request comes back as a
//! transport error such as `HttpRequestDenied`.

use crate::url::parse_http_url;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

/// The request method, as wasi:http names it.
pub use wasi::http::types::Method;

/// `blocking-write-and-flush` takes at most 4 096 bytes a call.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;

/// What a request may go wrong with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request could not be built (bad URL, bad header…).
    Request(String),
    /// The request did not get a response: refused by the host, DNS, connection, timeout…
    Transport(String),
    /// The response body exceeds the given limit (bytes).
    TooLarge(usize),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Request(e) => write!(f, "bad request: {e}"),
            Error::Transport(e) => f.write_str(e),
            Error::TooLarge(limit) => write!(f, "the response exceeds {limit} bytes"),
        }
    }
}

/// A response: its status and its whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<&'a [u8]>,
    /// Connect, first-byte and between-bytes timeouts, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The largest response body accepted.
    pub max_response_bytes: usize,
}

impl<'a> Request<'a> {
    /// A POST of `body` to `url`, with a 30 s timeout and an 8 MiB response limit.
    pub fn post(url: &'a str, body: &'a [u8]) -> Self {
        Request {
            method: Method::Post,
            url,
            headers: Vec::new(),
            body: Some(body),
            timeout_ms: Some(30_000),
            max_response_bytes: 8 << 20,
        }
    }

    /// A GET of `url`, with a 30 s timeout and an 8 MiB response limit.
    pub fn get(url: &'a str) -> Self {
        Request {
            method: Method::Get,
            body: None,
            ..Request::post(url, &[])
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        send(self)
    }
}

/// A readable account of a wasi:http error code, e.g. `HttpRequestDenied`.
pub fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "HttpRequestDenied: the host does not allow this destination".to_string()
        }
        other => format!("{other:?}")
            .trim_start_matches("ErrorCode::")
            .to_string(),
    }
}

fn stream_error(e: StreamError) -> Error {
    match e {
        StreamError::Closed => Error::Transport("the stream was closed".to_string()),
        StreamError::LastOperationFailed(err) => match wasi::http::types::http_error_code(&err) {
            Some(code) => Error::Transport(describe(&code)),
            None => Error::Transport(err.to_debug_string()),
        },
    }
}

fn send(request: Request<'_>) -> Result<Response, Error> {
    let url = parse_http_url(request.url).map_err(Error::Request)?;
    let mut entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    // A fixed length rather than a chunked body: not every upstream accepts chunked requests.
    let payload = request.body.unwrap_or_default();
    entries.push((
        "content-length".to_string(),
        payload.len().to_string().into_bytes(),
    ));
    let headers = Fields::from_list(&entries)
        .map_err(|e| Error::Request(format!("invalid header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let refused = |what: &str| Error::Request(format!("the host refused the {what}"));
    outgoing
        .set_method(&request.method)
        .map_err(|()| refused("method"))?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(&url.authority))
        .map_err(|()| refused("authority"))?;
    outgoing
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| refused("path"))?;

    let options = request.timeout_ms.map(|ms| {
        let options = RequestOptions::new();
        let ns = Some(ms.saturating_mul(1_000_000));
        // A host that does not support a timeout refuses to set it; its own limits apply then.
        let _ = options.set_connect_timeout(ns);
        let _ = options.set_first_byte_timeout(ns);
        let _ = options.set_between_bytes_timeout(ns);
        options
    });

    let body = outgoing.body().map_err(|()| refused("body"))?;
    // The body is written after `handle`, so the host is already reading it.
    let future = outgoing_handler::handle(outgoing, options)
        .map_err(|code| Error::Transport(describe(&code)))?;
    let written = write_body(&body, payload);
    let finished = match written {
        Ok(()) => {
            OutgoingBody::finish(body, None).map_err(|code| Error::Transport(describe(&code)))
        }
        Err(e) => {
            drop(body);
            Err(e)
        }
    };

    let result = {
        let pollable = future.subscribe();
        pollable.block();
        future.get()
    };
    let response = match result {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(Error::Transport(describe(&code))),
        Some(Err(())) => return Err(Error::Transport("the response was already taken".into())),
        None => return Err(Error::Transport("no response".into())),
    };
    // A body that could not be sent matters only when the upstream still answered.
    finished?;

    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| Error::Transport("the response body was already taken".into()))?;
    let bytes = read_body(&incoming, request.max_response_bytes);
    drop(IncomingBody::finish(incoming));
    drop(response);
    Ok(Response {
        status,
        body: bytes?,
    })
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    let stream = body
        .write()
        .map_err(|()| Error::Transport("the request body was already taken".into()))?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(stream_error)?;
    }
    Ok(())
}

fn read_body(body: &IncomingBody, limit: usize) -> Result<Vec<u8>, Error> {
    let stream = body
        .stream()
        .map_err(|()| Error::Transport("the response body was already taken".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(Error::TooLarge(limit));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(e) => return Err(stream_error(e)),
        }
    }
}

/// Sends an adapter's request and returns the upstream's 2xx body as text, with the
/// milliseconds it took; every failure becomes the adapter error the WIT defines (a refused or
/// unreachable host is `upstream-unreachable`, a non-2xx status `upstream-status` with an
/// excerpt of the body).
#[cfg(feature = "adapter")]
pub fn exchange(request: Request<'_>) -> Result<(String, u64), crate::adapter::AdapterError> {
    use crate::adapter::AdapterError;
    /// How much of an error body goes into `upstream-status`.
    const EXCERPT_BYTES: usize = 512;
    let started = std::time::Instant::now();
    let response = request.send().map_err(|e| match e {
        Error::Request(e) => AdapterError::InvalidConfig(format!("endpoint: {e}")),
        Error::Transport(e) => AdapterError::UpstreamUnreachable(e),
        e @ Error::TooLarge(_) => AdapterError::BadResponse(e.to_string()),
    })?;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !(200..300).contains(&response.status) {
        return Err(AdapterError::UpstreamStatus((
            response.status,
            crate::openai::excerpt(&response.body, EXCERPT_BYTES),
        )));
    }
    let text = String::from_utf8(response.body)
        .map_err(|_| AdapterError::BadResponse("the response is not UTF-8".to_string()))?;
    Ok((text, duration_ms))
}
