//! Sends the notices of the outbox (`store::notifications`): a background worker takes due
//! notices, sends each by e-mail (SMTP through `lettre`, with STARTTLS or TLS as the URL says)
//! or SMS (an HTTP gateway), and records the outcome; a failure is tried again later with
//! exponential backoff, up to `max_attempts`. Reviews only write to the outbox, so a mail server
//! that is down delays a notice but never loses it nor blocks a review.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{ServiceError, page_number};
use crate::config::NotificationsConfig;
use crate::domain::notifications::{Channel, Channels, Notice, NoticeStatus, backoff};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{Caller, Role};
use crate::store::Store;
use crate::store::notifications::StoredNotice;

/// How long a claimed notice is reserved for the attempt in progress.
const LEASE: Duration = Duration::from_secs(120);
/// Notices taken per round.
const BATCH: i64 = 32;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeView {
    pub notification_id: String,
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub topic: String,
    pub topic_id: String,
    pub status: NoticeStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NoticesPage {
    pub notifications: Vec<NoticeView>,
}

/// `GET /v1/admin/notifications` query.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NoticesQuery {
    pub status: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

fn view(n: StoredNotice) -> NoticeView {
    NoticeView {
        notification_id: n.id,
        channel: n.notice.channel,
        recipient: n.notice.recipient,
        subject: n.notice.subject,
        body: n.notice.body,
        topic: n.topic,
        topic_id: n.topic_id,
        status: n.status,
        attempts: n.attempts,
        last_error: n.last_error,
        created_at: to_rfc3339(from_millis(n.created_at)),
        next_attempt_at: (n.status == NoticeStatus::Pending)
            .then(|| to_rfc3339(from_millis(n.next_attempt_at))),
        sent_at: n.sent_at.map(|t| to_rfc3339(from_millis(t))),
    }
}

/// The configured senders.
struct Senders {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    sms: Option<SmsGateway>,
}

struct SmsGateway {
    url: String,
    method: reqwest::Method,
    template: String,
    content_type: String,
    auth: Option<(String, String)>,
    client: reqwest::Client,
}

/// The value of a secret reference: `env:NAME` (an environment variable) or `file:PATH` (a
/// file's content, trimmed: a mounted secret).
fn read_secret(reference: &str) -> anyhow::Result<String> {
    if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name).map_err(|_| {
            anyhow::anyhow!("notifications.sms_auth_secret: environment variable {name} is not set")
        })
    } else if let Some(path) = reference.strip_prefix("file:") {
        Ok(std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("notifications.sms_auth_secret: {path}: {e}"))?
            .trim()
            .to_owned())
    } else {
        anyhow::bail!("notifications.sms_auth_secret must be env:NAME or file:PATH")
    }
}

/// A JSON string literal of `text`, for the SMS body template.
fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

impl SmsGateway {
    async fn send(&self, notice: &Notice) -> Result<(), String> {
        let body = self
            .template
            .replace("{phone}", &json_string(&notice.recipient))
            .replace("{message}", &json_string(&notice.body));
        let mut request = self
            .client
            .request(self.method.clone(), &self.url)
            .header(reqwest::header::CONTENT_TYPE, &self.content_type)
            .body(body);
        if let Some((name, value)) = &self.auth {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("SMS gateway: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("SMS gateway answered {}", response.status()))
        }
    }
}

#[derive(Clone)]
pub struct Notifications {
    store: Store,
    senders: Arc<Senders>,
    config: Arc<NotificationsConfig>,
    wake: Arc<tokio::sync::Notify>,
}

impl Notifications {
    pub fn new(store: Store, config: &NotificationsConfig) -> anyhow::Result<Self> {
        let smtp = match &config.smtp_url {
            None => None,
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("notifications.smtp_url: {e}"))?
                    .timeout(Some(Duration::from_millis(config.timeout_ms)))
                    .build();
                let from: Mailbox = config
                    .email_from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("notifications.email_from: {e}"))?;
                Some((transport, from))
            }
        };
        let sms = match &config.sms_url {
            None => None,
            Some(url) => {
                let auth = match (&config.sms_auth_header, &config.sms_auth_secret) {
                    (Some(header), Some(secret)) => Some((header.clone(), read_secret(secret)?)),
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "notifications.sms_auth_header and sms_auth_secret go together"
                    ),
                };
                Some(SmsGateway {
                    url: url.clone(),
                    method: config
                        .sms_method
                        .parse()
                        .map_err(|e| anyhow::anyhow!("notifications.sms_method: {e}"))?,
                    template: config.sms_body_template.clone(),
                    content_type: config.sms_content_type.clone(),
                    auth,
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_millis(config.timeout_ms))
                        .build()?,
                })
            }
        };
        Ok(Notifications {
            store,
            senders: Arc::new(Senders { smtp, sms }),
            config: Arc::new(config.clone()),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The channels notices are written for.
    pub fn channels(&self) -> Channels {
        Channels {
            email: self.senders.smtp.is_some(),
            sms: self.senders.sms.is_some(),
        }
    }

    /// Tells the worker a decision has just written notices, so they go out now rather than at
    /// the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn send(&self, notice: &Notice) -> Result<(), String> {
        match notice.channel {
            Channel::Email => {
                let (transport, from) = self
                    .senders
                    .smtp
                    .as_ref()
                    .ok_or("e-mail is not configured (notifications.smtp_url)")?;
                let to: Mailbox = notice
                    .recipient
                    .parse()
                    .map_err(|e| format!("recipient '{}': {e}", notice.recipient))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&notice.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(notice.body.clone())
                    .map_err(|e| format!("building the message: {e}"))?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("SMTP: {e}"))
            }
            Channel::Sms => {
                let gateway = self
                    .senders
                    .sms
                    .as_ref()
                    .ok_or("SMS is not configured (notifications.sms_url)")?;
                gateway.send(notice).await
            }
        }
    }

    /// One round: sends every due notice once. Returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, ServiceError> {
        let now = now_millis();
        let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let due = self
            .store
            .claim_due_notices(now, now.saturating_add(lease), BATCH)
            .await?;
        for stored in &due {
            let attempts = stored.attempts + 1;
            match self.send(&stored.notice).await {
                Ok(()) => {
                    self.store
                        .notice_sent(&stored.id, attempts, now_millis())
                        .await?;
                }
                Err(error) => {
                    let retry_at = (attempts < i64::from(self.config.max_attempts)).then(|| {
                        let wait = backoff(
                            u32::try_from(attempts).unwrap_or(u32::MAX),
                            Duration::from_millis(self.config.retry_initial_ms),
                            Duration::from_millis(self.config.retry_max_ms),
                        );
                        now_millis()
                            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
                    });
                    tracing::warn!(
                        notification = %stored.id,
                        channel = stored.notice.channel.as_str(),
                        attempts,
                        error = %error,
                        gave_up = retry_at.is_none(),
                        "notice not delivered"
                    );
                    self.store
                        .notice_failed(&stored.id, attempts, &error, retry_at)
                        .await?;
                }
            }
        }
        Ok(due.len())
    }

    /// The worker: a round at every wake-up and at least every `poll_interval_ms`, until
    /// `shutdown` resolves.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            match self.run_once().await {
                // A full batch: there may be more due right away.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "notification round failed"),
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// `GET /v1/admin/notifications`.
    pub async fn list(
        &self,
        caller: &Caller,
        q: &NoticesQuery,
    ) -> Result<NoticesPage, ServiceError> {
        caller.require_role(Role::Operator)?;
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(NoticeStatus::parse(s).ok_or_else(|| {
                ServiceError::invalid("/status", "must be pending, sent or failed")
            })?),
        };
        let limit = page_number("limit", q.limit.as_deref(), 100, (1, 1000))?;
        let offset = page_number("offset", q.offset.as_deref(), 0, (0, i64::MAX))?;
        let page = self.store.notices_page(status, limit, offset).await?;
        Ok(NoticesPage {
            notifications: page.into_iter().map(view).collect(),
        })
    }
}
