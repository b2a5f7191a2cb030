//! Accounts (registration fields of compute-provider access §1: username, phone, password) and
//! the rules their fields follow.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AccountId, CONTROLLED_OWNER, Caller, DomainError, Role};

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
/// Names that would impersonate a fixed value of the standard or the bootstrap account.
const RESERVED_USERNAMES: &[&str] = &[CONTROLLED_OWNER];
/// Every token liutong issues starts with this, so a stray string is refused without a lookup.
pub const TOKEN_PREFIX: &str = "lt_";
/// API keys (long-lived, for programs) start with this; tokens with `TOKEN_PREFIX`.
pub const API_KEY_PREFIX: &str = "ltk_";
/// An account has at most this many API keys.
pub const MAX_API_KEYS: i64 = 100;

/// `POST /v1/account/apiKeys` request.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyRequest {
    pub name: String,
}

/// A new API key: the key itself is in this answer only.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NewApiKey {
    pub key_id: String,
    pub name: String,
    pub api_key: String,
    pub created_at: String,
}

/// An API key as listed: never the key, only its first characters.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub key_id: String,
    pub name: String,
    pub key_prefix: String,
    pub created_at: String,
}

pub fn check_username(username: &str) -> Result<(), DomainError> {
    let len = username.chars().count();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len)
        || !username.chars().all(allowed)
        || !username.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(DomainError::invalid(
            "/username",
            format!(
                "must be {USERNAME_MIN}-{USERNAME_MAX} characters of letters, digits, '_', '.' \
                 or '-', starting with a letter or digit"
            ),
        ));
    }
    if RESERVED_USERNAMES.contains(&username) {
        return Err(DomainError::invalid("/username", "is reserved"));
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), DomainError> {
    let len = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
        return Err(DomainError::invalid(
            "/password",
            format!("must be {PASSWORD_MIN}-{PASSWORD_MAX} characters long"),
        ));
    }
    // The same rule as schemas/account.register.json, which can only speak of ASCII classes.
    if !password.chars().any(|c| c.is_ascii_alphabetic())
        || !password.chars().any(|c| c.is_ascii_digit())
    {
        return Err(DomainError::invalid(
            "/password",
            "must contain at least one letter (A-Z, a-z) and one digit (0-9)",
        ));
    }
    Ok(())
}

/// A mainland-China mobile number (11 digits starting 13–19, optionally +86) or any E.164
/// number (`+` then 8–15 digits).
pub fn check_phone(phone: &str) -> Result<(), DomainError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mainland = |s: &str| {
        s.len() == 11 && digits(s) && s.starts_with('1') && matches!(s.as_bytes()[1], b'3'..=b'9')
    };
    let national = phone.strip_prefix("+86").unwrap_or(phone);
    let e164 = phone
        .strip_prefix('+')
        .is_some_and(|s| (8..=15).contains(&s.len()) && digits(s) && !s.starts_with('0'));
    if mainland(national) || e164 {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "/phone",
            "must be a mobile number: 11 digits starting 13-19 (optionally +86), or E.164 '+' \
             and 8-15 digits",
        ))
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub phone: Option<String>,
    pub role: Role,
    pub created_at: i64,
}

/// A stored token: whose it is and until when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub caller: Caller,
    pub expires_at: i64,
}

/// What is stored of a token: its SHA-256, never the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token as issued: shown to its owner once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: String,
    /// RFC 3339.
    #[serde(rename = "expiresAt")]
    pub expires_at: String,
}

/// `POST /v1/account/register` response data.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    #[serde(rename = "userId")]
    pub user_id: AccountId,
}

/// `POST /v1/account/register` request.
#[derive(Debug, Deserialize)]
pub struct RegisterAccount {
    pub username: String,
    pub password: String,
    pub phone: String,
}

/// `POST /v1/account/token` request.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("a.b-c_9").is_ok());
        for bad in [
            "al",
            "-alice",
            "ali ce",
            "张三",
            CONTROLLED_OWNER,
            &"x".repeat(33),
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_rules() {
        assert!(check_password("s3cretpass").is_ok());
        for bad in ["short1", "lettersonly", "1234567890", &"a1".repeat(65)] {
            assert!(check_password(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_rules() {
        for good in ["13812345678", "+8613812345678", "+14155550123"] {
            assert!(check_phone(good).is_ok(), "{good}");
        }
        for bad in [
            "12812345678",
            "1381234567",
            "+0123456789",
            "phone",
            "+86 138",
        ] {
            assert!(check_phone(bad).is_err(), "{bad}");
        }
    }
}
