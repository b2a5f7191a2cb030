//! `liutong gateway`: the enterprise side of the identifier gateway (compute-provider-access
//! §3). Each cycle it collects the records of the provider's cloud-management API, maps them
//! to standard identifiers (`domain::gateway_mapping`), validates each against the identifier
//! schema, appends the good ones to a durable local backlog, and forwards the backlog to the
//! platform in batches signed with the enterprise's key.
//!
//! Nothing is lost: a record is acknowledged in the backlog only after the platform answered
//! for its batch. Nothing is doubled: the platform stores an identifier once per
//! (code, observedAt), so a batch sent again after a crash or a lost answer adds nothing.
//!
//! The state directory holds:
//! - `backlog.jsonl`: one identifier per line, appended and synced before forwarding;
//! - `backlog.offset`: the byte offset up to which the platform has answered;
//! - `rejects.jsonl`: records that did not map or validate, and identifiers the platform
//!   refused, each with why (never forwarded, never retried).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

use crate::crypto::batch;
use crate::domain::gateway_mapping::{GatewayFile, Mapping};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::schema::Schemas;

use super::gateway::IDENTIFIER_SCHEMA;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{0}")]
    Io(String),
    #[error("collecting from the source failed: {0}")]
    Source(String),
    #[error("forwarding to the platform failed: {0}")]
    Platform(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::Io(format!("{}: {e}", path.display()))
}

/// What one cycle did, for the log and for `--once`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    pub collected: usize,
    pub queued: usize,
    pub rejected: usize,
    pub forwarded: usize,
    pub accepted: usize,
    pub duplicates: usize,
    pub refused_by_platform: usize,
}

pub struct Agent {
    file: GatewayFile,
    mapping: Mapping,
    key: SigningKey,
    key_id: String,
    schemas: Schemas,
    client: reqwest::Client,
    secret: Option<String>,
    spool: Spool,
    /// The observedAt last queued per code: an unchanged record polled again is not queued
    /// again (the platform would drop it anyway).
    last_queued: HashMap<String, String>,
}

impl Agent {
    /// Reads and checks the configuration file and its key (no network, no state, no secret):
    /// `liutong gateway check`. Returns the signing key's id.
    pub fn check(config: &Path) -> Result<String, AgentError> {
        let (_, _, key) = Self::read(config)?;
        Ok(batch::key_id(&key.verifying_key()))
    }

    fn read(config: &Path) -> Result<(GatewayFile, Mapping, SigningKey), AgentError> {
        let config_err = |message: String| AgentError::Config {
            path: config.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(config).map_err(|e| config_err(e.to_string()))?;
        let (file, mapping) = GatewayFile::parse(&text).map_err(|e| config_err(e.to_string()))?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let key_path = dir.join(&file.key_file);
        let pem = std::fs::read_to_string(&key_path)
            .map_err(|e| config_err(format!("key_file {}: {e}", key_path.display())))?;
        let key = batch::from_pem(&pem)
            .map_err(|e| config_err(format!("key_file {}: {e}", key_path.display())))?;
        Ok((file, mapping, key))
    }

    /// Loads the configuration file, the key, the source's secret and the state directory.
    pub fn load(config: &Path, formats: &[crate::schema::Format]) -> Result<Agent, AgentError> {
        let config_err = |message: String| AgentError::Config {
            path: config.to_owned(),
            message,
        };
        let (file, mapping, key) = Self::read(config)?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let secret = match &file.source.auth_secret_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                config_err(format!(
                    "source.auth_secret_env: the environment variable {var} is not set"
                ))
            })?),
        };
        let schemas = Schemas::load(formats).map_err(|e| AgentError::Io(e.to_string()))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(file.source.timeout_secs.max(1)))
            .user_agent(concat!("liutong-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AgentError::Io(e.to_string()))?;
        let spool = Spool::open(&dir.join(&file.state_dir))?;
        let key_id = batch::key_id(&key.verifying_key());
        Ok(Agent {
            file,
            mapping,
            key,
            key_id,
            schemas,
            client,
            secret,
            spool,
            last_queued: HashMap::new(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Runs cycles every `poll_interval_secs`, forwarding with backoff while the platform is
    /// unreachable, until `stop` resolves. With `once`, one cycle whose forwarding must
    /// succeed.
    pub async fn run(
        &mut self,
        once: bool,
        stop: impl Future<Output = ()>,
    ) -> Result<CycleReport, AgentError> {
        if once {
            let mut report = self.collect().await?;
            self.forward(&mut report).await?;
            return Ok(report);
        }
        tokio::pin!(stop);
        let interval = Duration::from_secs(self.file.poll_interval_secs);
        let mut next_collect = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(500);
        let mut next_forward = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_collect {
                next_collect = now + interval;
                if let Err(e) = self.collect().await {
                    tracing::warn!(error = %e, "collection failed; retrying next cycle");
                }
            }
            if now >= next_forward {
                let mut report = CycleReport::default();
                match self.forward(&mut report).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(500);
                        next_forward = next_collect;
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            retry_in_ms = backoff.as_millis() as u64,
                            pending_bytes = self.spool.pending_bytes(),
                            "forwarding failed; the backlog is kept"
                        );
                        next_forward = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            let wake = next_collect.min(next_forward);
            tokio::select! {
                () = &mut stop => return Ok(CycleReport::default()),
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Collects, maps and validates one round of records; queues the good ones.
    pub async fn collect(&mut self) -> Result<CycleReport, AgentError> {
        let mut report = CycleReport::default();
        let mut request = self.client.get(&self.file.source.url);
        if let (Some(header), Some(secret)) = (&self.file.source.auth_header, &self.secret) {
            request = request.header(header, format!("{}{secret}", self.file.source.auth_prefix));
        }
        let response = request
            .send()
            .await
            .map_err(|e| AgentError::Source(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(AgentError::Source(format!("status {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| AgentError::Source(e.without_url().to_string()))?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| AgentError::Source(format!("not JSON: {e}")))?;
        let records = value
            .pointer(&self.file.source.records)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                AgentError::Source(format!(
                    "no array at source.records '{}'",
                    self.file.source.records
                ))
            })?;
        let now = to_rfc3339(from_millis(now_millis()));
        let mut queue = Vec::new();
        let mut rejects = Vec::new();
        for (index, record) in records.iter().enumerate() {
            report.collected += 1;
            let mapped = match self.mapping.apply(record, &now) {
                Ok(m) => m,
                Err(e) => {
                    rejects.push(json!({
                        "at": now, "stage": "mapping", "index": index,
                        "path": format!("/{}", e.field), "message": e.message, "record": record,
                    }));
                    continue;
                }
            };
            let violations = self.schemas.validate(IDENTIFIER_SCHEMA, &mapped);
            if !violations.is_empty() {
                let detail: Vec<String> = violations.iter().map(ToString::to_string).collect();
                rejects.push(json!({
                    "at": now, "stage": "schema", "index": index,
                    "path": violations[0].path, "message": detail.join("; "),
                    "record": record, "identifier": mapped,
                }));
                continue;
            }
            let code = mapped["code"].as_str().unwrap_or_default().to_owned();
            let observed = mapped["observedAt"].as_str().unwrap_or_default().to_owned();
            if self.last_queued.get(&code) == Some(&observed) {
                continue;
            }
            self.last_queued.insert(code, observed);
            queue.push(mapped);
        }
        for r in &rejects {
            tracing::warn!(
                stage = r["stage"].as_str().unwrap_or_default(),
                index = r["index"].as_u64().unwrap_or_default(),
                path = r["path"].as_str().unwrap_or_default(),
                message = r["message"].as_str().unwrap_or_default(),
                "record rejected, not forwarded"
            );
        }
        report.rejected = rejects.len();
        report.queued = queue.len();
        self.spool.reject(&rejects)?;
        self.spool.append(&queue)?;
        tracing::info!(
            collected = report.collected,
            queued = report.queued,
            rejected = report.rejected,
            "collected"
        );
        Ok(report)
    }

    /// Sends the backlog, batch by batch, until it is empty or a batch fails.
    pub async fn forward(&mut self, report: &mut CycleReport) -> Result<(), AgentError> {
        loop {
            let (items, end) = self.spool.pending(self.file.batch_size)?;
            if items.is_empty() {
                return Ok(());
            }
            let body = serde_json::to_vec(&json!({ "identifiers": items }))
                .map_err(|e| AgentError::Io(e.to_string()))?;
            let signature = batch::sign(&self.key, &body);
            let url = format!(
                "{}/v1/gateway/identifiers",
                self.file.platform_url.trim_end_matches('/')
            );
            let response = self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .header(batch::KEY_ID_HEADER, &self.key_id)
                .header(batch::SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| AgentError::Platform(e.without_url().to_string()))?;
            let status = response.status();
            let answer: Value = response
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            if status.is_success() {
                let data = &answer["data"];
                let refused = data["rejected"].as_array().cloned().unwrap_or_default();
                let now = to_rfc3339(from_millis(now_millis()));
                let rejects: Vec<Value> = refused
                    .iter()
                    .map(|r| {
                        let index = r["index"].as_u64().unwrap_or_default() as usize;
                        json!({
                            "at": now, "stage": "platform", "index": index,
                            "path": r["path"], "reason": r["reason"], "message": r["message"],
                            "identifier": items.get(index),
                        })
                    })
                    .collect();
                for r in &rejects {
                    tracing::warn!(
                        reason = r["reason"].as_str().unwrap_or_default(),
                        path = r["path"].as_str().unwrap_or_default(),
                        message = r["message"].as_str().unwrap_or_default(),
                        "the platform refused an identifier"
                    );
                }
                self.spool.reject(&rejects)?;
                self.spool.ack(end)?;
                report.forwarded += items.len();
                report.accepted += data["accepted"].as_u64().unwrap_or_default() as usize;
                report.duplicates += data["duplicates"].as_u64().unwrap_or_default() as usize;
                report.refused_by_platform += rejects.len();
                tracing::info!(
                    sent = items.len(),
                    accepted = data["accepted"].as_u64().unwrap_or_default(),
                    duplicates = data["duplicates"].as_u64().unwrap_or_default(),
                    refused = rejects.len(),
                    "batch forwarded"
                );
            } else if matches!(status.as_u16(), 400 | 413) {
                // The platform refuses the batch as a whole, and would again: keep it in the
                // rejects (not lost) and go on with the rest.
                let now = to_rfc3339(from_millis(now_millis()));
                let rejects: Vec<Value> = items
                    .iter()
                    .map(|i| {
                        json!({"at": now, "stage": "platform", "status": status.as_u16(),
                               "message": answer["errorMsg"], "identifier": i})
                    })
                    .collect();
                tracing::error!(
                    status = status.as_u16(),
                    message = answer["errorMsg"].as_str().unwrap_or_default(),
                    "the platform refused a whole batch; moved to the rejects"
                );
                self.spool.reject(&rejects)?;
                self.spool.ack(end)?;
                report.refused_by_platform += items.len();
            } else {
                return Err(AgentError::Platform(format!(
                    "status {status}: {}",
                    answer["errorMsg"].as_str().unwrap_or_default()
                )));
            }
        }
    }
}

/// The durable backlog: an append-only JSON Lines file and the offset acknowledged so far.
struct Spool {
    backlog: PathBuf,
    offset_file: PathBuf,
    rejects: PathBuf,
    /// Bytes of `backlog` the platform has answered for.
    offset: u64,
    len: u64,
}

fn sync_dir(dir: &Path) {
    // Makes a rename durable; failing to sync a directory only weakens durability, so it is
    // not an error (some file systems refuse it).
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
}

impl Spool {
    fn open(dir: &Path) -> Result<Spool, AgentError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let backlog = dir.join("backlog.jsonl");
        let offset_file = dir.join("backlog.offset");
        let rejects = dir.join("rejects.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&backlog)
            .map_err(io(&backlog))?;
        let text = std::fs::read(&backlog).map_err(io(&backlog))?;
        // A line cut short by a crash is dropped: it was never acknowledged, and the next
        // collection queues its record again.
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        if whole < text.len() as u64 {
            file.set_len(whole).map_err(io(&backlog))?;
            file.sync_all().map_err(io(&backlog))?;
        }
        let offset = std::fs::read_to_string(&offset_file)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        // An offset past the end: the backlog was emptied after its last acknowledgement and
        // the offset not yet reset (a crash in between).
        let offset = if offset > whole { 0 } else { offset };
        Ok(Spool {
            backlog,
            offset_file,
            rejects,
            offset,
            len: whole,
        })
    }

    fn pending_bytes(&self) -> u64 {
        self.len - self.offset
    }

    fn append_lines(path: &Path, lines: &[Value]) -> Result<u64, AgentError> {
        if lines.is_empty() {
            return Ok(0);
        }
        let mut text = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut text, l).map_err(|e| AgentError::Io(e.to_string()))?;
            text.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        file.write_all(&text).map_err(io(path))?;
        file.sync_data().map_err(io(path))?;
        Ok(text.len() as u64)
    }

    fn append(&mut self, items: &[Value]) -> Result<(), AgentError> {
        self.len += Self::append_lines(&self.backlog, items)?;
        Ok(())
    }

    fn reject(&mut self, items: &[Value]) -> Result<(), AgentError> {
        Self::append_lines(&self.rejects, items)?;
        Ok(())
    }

    /// Up to `max` unacknowledged identifiers and the offset just after them.
    fn pending(&self, max: usize) -> Result<(Vec<Value>, u64), AgentError> {
        use std::io::{BufRead, Seek, SeekFrom};
        if self.offset >= self.len {
            return Ok((Vec::new(), self.offset));
        }
        let mut file = std::fs::File::open(&self.backlog).map_err(io(&self.backlog))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io(&self.backlog))?;
        let mut reader = std::io::BufReader::new(file);
        let mut items = Vec::new();
        let mut end = self.offset;
        let mut line = String::new();
        while items.len() < max && end < self.len {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io(&self.backlog))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            end += n as u64;
            let item: Value = serde_json::from_str(&line).map_err(|e| {
                AgentError::Io(format!("{}: corrupt line: {e}", self.backlog.display()))
            })?;
            items.push(item);
        }
        Ok((items, end))
    }

    /// Records that the platform answered for everything before `end`; empties the backlog
    /// once all of it is answered for.
    fn ack(&mut self, end: u64) -> Result<(), AgentError> {
        if end >= self.len {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.backlog)
                .map_err(io(&self.backlog))?;
            file.set_len(0).map_err(io(&self.backlog))?;
            file.sync_all().map_err(io(&self.backlog))?;
            self.len = 0;
            self.offset = 0;
        } else {
            self.offset = end;
        }
        let tmp = self.offset_file.with_extension("offset.tmp");
        std::fs::write(&tmp, self.offset.to_string()).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.offset_file).map_err(io(&self.offset_file))?;
        if let Some(dir) = self.offset_file.parent() {
            sync_dir(dir);
        }
        Ok(())
    }
}

/// `liutong gateway keygen`: writes a new private key (PKCS#8 PEM, mode 0600) and returns the
/// public key in the form `PUT /v1/provider/gateway-key` takes, and its key id.
pub fn keygen(out: &Path) -> Result<(String, String), AgentError> {
    let key = batch::generate().map_err(|e| AgentError::Io(e.to_string()))?;
    let pem = batch::to_pem(&key).map_err(|e| AgentError::Io(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(io(out))?;
    file.write_all(pem.as_bytes()).map_err(io(out))?;
    file.sync_all().map_err(io(out))?;
    let public = key.verifying_key();
    Ok((batch::encode_public_key(&public), batch::key_id(&public)))
}
