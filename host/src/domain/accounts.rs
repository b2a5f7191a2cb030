//! Accounts (registration fields of compute-provider access §1: username, phone, password) and
//! the `X-Auth-Token` tokens that authenticate every other call.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{CONTROLLED_OWNER, Caller, DomainError, Role, new_id};
use crate::store::accounts::{AccountRow, USERNAME_TAKEN};
use crate::store::{Store, StoreError, now_millis};

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
/// Names that would impersonate a fixed value of the standard or the bootstrap account.
const RESERVED_USERNAMES: &[&str] = &[CONTROLLED_OWNER];
/// How long a validated token is trusted from memory before the database is asked again.
const TOKEN_CACHE_TTL_MS: i64 = 30_000;
const TOKEN_CACHE_CAPACITY: usize = 100_000;
const TOKEN_PREFIX: &str = "lt_";

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
    if !password.chars().any(|c| c.is_alphabetic()) || !password.chars().any(|c| c.is_numeric()) {
        return Err(DomainError::invalid(
            "/password",
            "must contain at least one letter and one digit",
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

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at_ms: i64,
}

#[derive(Clone)]
struct CachedCaller {
    caller: Caller,
    expires_at_ms: i64,
    cached_until_ms: i64,
}

/// Account registration, password login and token verification.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    token_ttl: Duration,
    cache: Arc<quick_cache::sync::Cache<String, CachedCaller>>,
}

impl Accounts {
    pub fn new(store: Store, token_ttl: Duration) -> Self {
        Accounts {
            store,
            token_ttl,
            cache: Arc::new(quick_cache::sync::Cache::new(TOKEN_CACHE_CAPACITY)),
        }
    }

    /// Creates an account after checking the username, password policy and phone number.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        phone: Option<&str>,
        role: Role,
    ) -> Result<String, DomainError> {
        check_username(username)?;
        check_password(password)?;
        if let Some(phone) = phone {
            check_phone(phone)?;
        }
        let password_hash = hash_password(password.to_owned()).await?;
        let account = AccountRow {
            id: new_id("usr_"),
            username: username.to_owned(),
            password_hash,
            phone: phone.map(str::to_owned),
            role: role.as_str().to_owned(),
            created_at: now_millis(),
        };
        match self.store.insert_account(&account).await {
            Ok(()) => Ok(account.id),
            Err(e) if e.is_unique(USERNAME_TAKEN) => Err(DomainError::Conflict(format!(
                "username '{username}' is already registered"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the `operator` account with this password unless an operator exists already.
    /// Returns whether it created one.
    pub async fn bootstrap_operator(&self, password: &str) -> Result<bool, DomainError> {
        if self
            .store
            .any_account_with_role(Role::Operator.as_str())
            .await?
        {
            return Ok(false);
        }
        match self
            .register("operator", password, None, Role::Operator)
            .await
        {
            Ok(_) => Ok(true),
            // Another replica bootstrapped it between our check and insert.
            Err(DomainError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn issue_token(
        &self,
        username: &str,
        password: &str,
    ) -> Result<IssuedToken, DomainError> {
        let denied = || DomainError::Unauthenticated("wrong username or password".to_owned());
        let account = self.store.account_by_username(username).await?;
        // Verify against a real hash even for unknown users so timing does not tell which
        // usernames exist.
        let stored_hash = match &account {
            Some(a) => a.password_hash.clone(),
            None => dummy_hash().to_owned(),
        };
        let ok = verify_password(password.to_owned(), stored_hash).await?;
        let account = match account {
            Some(a) if ok => a,
            _ => return Err(denied()),
        };
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| DomainError::Internal(format!("rng: {e}")))?;
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let now = now_millis();
        let expires_at_ms = now + self.token_ttl.as_millis() as i64;
        self.store
            .insert_token(&hash_token(&token), &account.id, expires_at_ms, now)
            .await?;
        Ok(IssuedToken {
            token,
            expires_at_ms,
        })
    }

    /// Resolves a presented token to its account, or refuses it.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, DomainError> {
        let unknown = || DomainError::Unauthenticated("X-Auth-Token is unknown".to_owned());
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Err(unknown());
        }
        let now = now_millis();
        let key = hash_token(token);
        if let Some(hit) = self.cache.get(&key) {
            if now < hit.cached_until_ms && now < hit.expires_at_ms {
                return Ok(hit.caller);
            }
            self.cache.remove(&key);
        }
        let row = self.store.token(&key).await?.ok_or_else(unknown)?;
        if row.expires_at <= now {
            return Err(DomainError::Unauthenticated(
                "X-Auth-Token has expired; request a new one".to_owned(),
            ));
        }
        let role = Role::parse(&row.role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role '{}'", row.role)))?;
        let caller = Caller {
            account_id: row.account_id,
            username: row.username,
            role,
        };
        self.cache.insert(
            key,
            CachedCaller {
                caller: caller.clone(),
                expires_at_ms: row.expires_at,
                cached_until_ms: now + TOKEN_CACHE_TTL_MS,
            },
        );
        Ok(caller)
    }
}

async fn hash_password(password: String) -> Result<String, DomainError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h: PasswordHash| h.to_string())
            .map_err(|e| DomainError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| DomainError::Internal(format!("hashing task: {e}")))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, DomainError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| DomainError::Internal(format!("stored password hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| DomainError::Internal(format!("hashing task: {e}")))?
}

/// An argon2 hash of a random password nobody knows, for constant-work login failures.
fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5n4W8o0w2o4xb6CM0c0s3cUZbTY2yT1A3m5V3J0u0bU"
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
