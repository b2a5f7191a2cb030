//! Outbound HTTP of adapter plugins (`wasi:http/outgoing-handler`), allowed host by host.
//!
//! A request goes out only if its `host:port` matches a pattern of the manifest's
//! `[capabilities] http` AND a pattern the operator granted. Private, loopback and link-local
//! destinations (IP literals and every resolved address) are refused unless a granted pattern
//! names that host explicitly, because `*` must never reach the host's own network. The client
//! connects to the very address it checked (no second DNS lookup that could be rebound).

use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::HostPattern;

/// An outbound request the runtime refused, with what to change to allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRefusal {
    /// `host:port` of the refused request.
    pub host: String,
    pub hint: String,
}

/// The allow-lists of one loaded adapter.
#[derive(Debug)]
pub(crate) struct HttpPolicy {
    pub manifest: Vec<HostPattern>,
    pub granted: Vec<HostPattern>,
    pub tls: Arc<rustls::ClientConfig>,
}

/// The `WasiHttpHooks` of one call: checks each request and records the first refusal.
pub(crate) struct HttpGuard {
    pub policy: Arc<HttpPolicy>,
    pub refusal: Arc<Mutex<Option<HttpRefusal>>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS client configuration with the Mozilla roots and the ring provider (explicitly, so it
/// does not depend on a process-wide default provider).
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether an address is not on the public internet: loopback, private, link-local,
/// carrier-grade NAT, unspecified, multicast, broadcast, reserved, or an IPv6 form of these.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: may embed a private IPv4
        }
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl HttpGuard {
    fn refuse(&self, host: String, hint: String) -> HttpError {
        tracing::warn!(%host, %hint, "plugin HTTP request refused");
        if let Ok(mut slot) = self.refusal.lock()
            && slot.is_none()
        {
            *slot = Some(HttpRefusal { host, hint });
        }
        HttpError::HttpRequestDenied
    }

    async fn send(
        self,
        mut req: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<
        (
            http::Response<WasiBody>,
            Box<dyn Future<Output = Result<(), HttpError>> + Send>,
        ),
        HttpError,
    > {
        let uri = req.uri().clone();
        let use_tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(HttpError::HttpRequestUriInvalid),
        };
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
        let target = authority(&host, port);

        let policy = self.policy.clone();
        if !policy.manifest.iter().any(|p| p.matches(&host, port)) {
            return Err(self.refuse(
                target.clone(),
                format!(
                    "add \"{target}\" to [capabilities] http in plugin.toml and ask the operator to grant it"
                ),
            ));
        }
        let granted: Vec<&HostPattern> = policy
            .granted
            .iter()
            .filter(|p| p.matches(&host, port))
            .collect();
        if granted.is_empty() {
            return Err(self.refuse(
                target.clone(),
                format!(
                    "plugin.toml requests it but the operator has not granted it: ask the operator to grant \"{target}\" to this plugin"
                ),
            ));
        }
        let explicit = granted.iter().any(|p| p.is_explicit());
        let private_hint = || {
            format!(
                "\"{target}\" is a private, loopback or link-local address, which a wildcard grant never reaches: the operator must grant \"{target}\" by name"
            )
        };

        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT)
            .min(CONNECT_TIMEOUT);
        // The head of the response must come within the guest's first-byte timeout (the
        // plugin's own time limit bounds it otherwise): an upstream that never answers is a
        // `connection-read-timeout` the adapter can report, not a trapped plugin.
        let first_byte_timeout = options.and_then(|o| o.first_byte_timeout);
        let mut addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                match tokio::time::timeout(
                    connect_timeout,
                    tokio::net::lookup_host((host.as_str(), port)),
                )
                .await
                {
                    Err(_) => return Err(HttpError::DnsTimeout),
                    Ok(Err(e)) => {
                        return Err(HttpError::DnsError {
                            rcode: Some(e.to_string()),
                            info_code: None,
                        });
                    }
                    Ok(Ok(found)) => found.collect(),
                }
            }
        };
        if !explicit {
            addrs.retain(|a| !is_private(a.ip()));
            if addrs.is_empty() {
                return Err(self.refuse(target.clone(), private_hint()));
            }
        }
        if addrs.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }

        let mut stream = None;
        let mut last_err = None;
        for addr in &addrs {
            match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last_err = Some(HttpError::Connect(e)),
                Err(_) => last_err = Some(HttpError::ConnectionTimeout),
            }
        }
        let Some(stream) = stream else {
            return Err(last_err.unwrap_or(HttpError::ConnectionRefused));
        };
        let _ = stream.set_nodelay(true);

        // Absolute-form URIs are for proxies: send origin-form.
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        *req.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;

        if use_tls {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let connector = tokio_rustls::TlsConnector::from(policy.tls.clone());
            let tls = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
            send_on(tls, req, connect_timeout, first_byte_timeout).await
        } else {
            send_on(stream, req, connect_timeout, first_byte_timeout).await
        }
    }
}

/// HTTP/1.1 over an established stream, driving the connection while waiting for the head of
/// the response, then handing the connection future to wasi-http (which keeps polling it
/// while the guest reads the body).
async fn send_on<S>(
    stream: S,
    req: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte_timeout: Option<Duration>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let send = sender.send_request(req);
    let mut send = pin!(send);
    let mut conn = Some(conn);
    let head = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(HttpError::from)),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = std::task::ready!(Pin::new(fut).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx).map_err(HttpError::from),
                Err(e) => Poll::Ready(Err(HttpError::from(e))),
            }
        }
    });
    let res = match first_byte_timeout {
        Some(limit) => tokio::time::timeout(limit, head)
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)??,
        None => head.await?,
    };
    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async move {
        match conn {
            Some(c) => c.await.map_err(HttpError::from),
            None => Ok(()),
        }
    });
    Ok((
        res.map(|body| body.map_err(HttpError::from).boxed_unsync()),
        io,
    ))
}

impl WasiHttpHooks for HttpGuard {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        let guard = HttpGuard {
            policy: self.policy.clone(),
            refusal: self.refusal.clone(),
        };
        Box::new(guard.send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
