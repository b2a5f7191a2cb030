//! Notices of review outcomes (compute-provider-access §1 and §2): what is said, to whom, on
//! which channel, and when a failed delivery is tried again. Pure: the outbox rows are written
//! by the store in the decision's own transaction, and sent by `services::notifications`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::provider::ReviewStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// Where a notice stands in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeStatus {
    /// Not sent yet: waiting for its first attempt or for its next retry.
    Pending,
    Sent,
    /// Gave up after the configured number of attempts.
    Failed,
}

impl NoticeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeStatus::Pending => "pending",
            NoticeStatus::Sent => "sent",
            NoticeStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeStatus> {
        match s {
            "pending" => Some(NoticeStatus::Pending),
            "sent" => Some(NoticeStatus::Sent),
            "failed" => Some(NoticeStatus::Failed),
            _ => None,
        }
    }
}

/// Which channels are configured (`[notifications] smtp_url`, `sms_url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channels {
    pub email: bool,
    pub sms: bool,
}

/// What was decided, as the notices tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Certification {
        status: ReviewStatus,
        reason: Option<String>,
        enterprise_id: Option<String>,
    },
    Identifier {
        status: ReviewStatus,
        reason: Option<String>,
        code: Option<String>,
    },
}

/// One notice to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

impl Outcome {
    /// The subject line and the text of the notice (the same text for e-mail and SMS).
    pub fn text(&self) -> (String, String) {
        match self {
            Outcome::Certification {
                status: ReviewStatus::Approved,
                enterprise_id,
                ..
            } => (
                "企业实名认证已通过 / Certification approved".to_owned(),
                format!(
                    "您的企业实名认证已通过，企业编号 {id}。Your enterprise certification was \
                     approved; your enterprise id is {id}.",
                    id = enterprise_id.as_deref().unwrap_or("-")
                ),
            ),
            Outcome::Certification { reason, .. } => (
                "企业实名认证未通过 / Certification rejected".to_owned(),
                format!(
                    "您的企业实名认证未通过，原因：{r}。Your enterprise certification was \
                     rejected: {r}",
                    r = reason.as_deref().unwrap_or("-")
                ),
            ),
            Outcome::Identifier {
                status: ReviewStatus::Approved,
                code,
                ..
            } => (
                "算力标识编码已核发 / Identifier code issued".to_owned(),
                format!(
                    "您的算力标识编码申请已通过，编码 {c}。Your identifier code application was \
                     approved; your code is {c}.",
                    c = code.as_deref().unwrap_or("-")
                ),
            ),
            Outcome::Identifier { reason, .. } => (
                "算力标识编码申请未通过 / Identifier application rejected".to_owned(),
                format!(
                    "您的算力标识编码申请未通过，原因：{r}。Your identifier code application was \
                     rejected: {r}",
                    r = reason.as_deref().unwrap_or("-")
                ),
            ),
        }
    }

    /// The notices of this outcome: by e-mail to the certification's contact address and by
    /// SMS to the account's phone, on the channels configured and for the addresses known.
    pub fn notices(
        &self,
        channels: Channels,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Vec<Notice> {
        let (subject, body) = self.text();
        let mut out = Vec::new();
        if let (true, Some(email)) = (channels.email, email) {
            out.push(Notice {
                channel: Channel::Email,
                recipient: email.to_owned(),
                subject: subject.clone(),
                body: body.clone(),
            });
        }
        if let (true, Some(phone)) = (channels.sms, phone) {
            out.push(Notice {
                channel: Channel::Sms,
                recipient: phone.to_owned(),
                subject,
                body,
            });
        }
        out
    }
}

/// When to try again after `attempts` failed attempts: `initial` doubled each time, at most
/// `max`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_carry_the_outcome_and_the_code() {
        let approved = Outcome::Identifier {
            status: ReviewStatus::Approved,
            reason: None,
            code: Some("1000144031650007".into()),
        };
        let all = Channels {
            email: true,
            sms: true,
        };
        let notices = approved.notices(all, Some("ops@x.example"), Some("13812345678"));
        assert_eq!(notices.len(), 2);
        assert!(notices.iter().all(|n| n.body.contains("1000144031650007")));
        let rejected = Outcome::Certification {
            status: ReviewStatus::Rejected,
            reason: Some("营业执照不清晰".into()),
            enterprise_id: None,
        };
        let notices = rejected.notices(
            Channels {
                email: true,
                sms: false,
            },
            Some("ops@x.example"),
            Some("13812345678"),
        );
        assert_eq!(notices.len(), 1);
        assert!(notices[0].body.contains("营业执照不清晰"));
        assert!(
            rejected
                .notices(Channels::default(), Some("a@b.c"), None)
                .is_empty()
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1), s(60)), s(1));
        assert_eq!(backoff(2, s(1), s(60)), s(2));
        assert_eq!(backoff(4, s(1), s(60)), s(8));
        assert_eq!(backoff(30, s(1), s(60)), s(60));
    }
}
