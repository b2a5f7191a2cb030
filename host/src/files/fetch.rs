//! Fetching a provider's http(s) `resource_url` at delivery time, when no file was uploaded.
//!
//! The response is spooled to a temporary file while its SHA-256 is computed, so the delivery
//! proof can name the exact bytes before they are sent, and memory stays flat at any size. The
//! spool file is deleted as soon as the delivery stream is dropped.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{ByteStream, CHUNK, Expected, Hashing, open_with_metadata, read_chunks, verified};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("resource_url is not an http(s) URL")]
    NotHttp,
    #[error("fetching resource_url failed: {0}")]
    Request(String),
    #[error("resource_url answered HTTP {0}")]
    Status(u16),
    #[error("spooling the fetched file failed: {0}")]
    Spool(std::io::Error),
}

/// Whether a `resource_url` is one delivery can fetch.
pub fn is_fetchable(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && reqwest::Url::parse(url.trim()).is_ok()
}

/// A fetched file on local disk.
pub struct Spooled {
    pub size: u64,
    pub sha256: String,
    blake3: String,
    path: tempfile::TempPath,
}

impl Spooled {
    /// Streams the spooled bytes, checked against the recorded digest; the spool file is
    /// deleted when the stream is dropped.
    pub async fn into_stream(self) -> Result<ByteStream, std::io::Error> {
        let (file, meta) = open_with_metadata(self.path.to_path_buf()).await?;
        Ok(verified(
            read_chunks(file, meta.len()),
            self.size,
            Expected::Blake3(self.blake3),
            None,
            Some(Box::new(self.path)),
        ))
    }
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    pub fn new() -> Result<Fetcher, FetchError> {
        // reqwest's TLS is rustls without a built-in provider: install ring (a no-op when the
        // app did it already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Between reads, not for the whole body: large files take as long as they take.
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("liutong/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Request(e.to_string()))?;
        Ok(Fetcher { client })
    }

    /// Downloads `url` to a spool file.
    pub async fn spool(&self, url: &str) -> Result<Spooled, FetchError> {
        if !is_fetchable(url) {
            return Err(FetchError::NotHttp);
        }
        let response = self
            .client
            .get(url.trim())
            .send()
            .await
            .map_err(|e| FetchError::Request(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let (file, path) = tempfile::NamedTempFile::new()
            .map_err(FetchError::Spool)?
            .into_parts();
        let mut out = tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file));
        let mut hasher = Hashing::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FetchError::Request(e.without_url().to_string()))?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(FetchError::Spool)?;
        }
        out.flush().await.map_err(FetchError::Spool)?;
        let stored = hasher.finish();
        Ok(Spooled {
            size: stored.size,
            sha256: stored.sha256,
            blake3: stored.blake3,
            path,
        })
    }
}
