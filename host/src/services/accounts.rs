//! Accounts: registration, password login, and the `X-Auth-Token` tokens that authenticate
//! every other call.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;

use super::ServiceError;
use crate::domain::accounts::{
    API_KEY_PREFIX, Account, ApiKeyRequest, ApiKeyView, IssuedToken, MAX_API_KEYS, NewApiKey,
    RegisterAccount, Registered, TOKEN_PREFIX, check_password, check_phone, check_username,
    hash_token,
};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{AccountId, Caller, DomainError, Role, new_id};
use crate::store::Store;
use crate::store::accounts::{AccountInsert, StoredApiKey};

/// How long a validated token is trusted from memory before the database is asked again.
const TOKEN_CACHE_TTL_MS: i64 = 30_000;
const TOKEN_CACHE_CAPACITY: usize = 100_000;

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

    /// Self-registration (`POST /v1/account/register`): an enterprise account. Operator and
    /// data-space accounts are created by an operator with `liutong account create`.
    pub async fn register_enterprise(
        &self,
        req: &RegisterAccount,
    ) -> Result<Registered, ServiceError> {
        let user_id = self
            .register(
                &req.username,
                &req.password,
                Some(&req.phone),
                Role::Enterprise,
            )
            .await?;
        Ok(Registered { user_id })
    }

    /// Creates an account after checking the username, password policy and phone number.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        phone: Option<&str>,
        role: Role,
    ) -> Result<AccountId, ServiceError> {
        check_username(username)?;
        check_password(password)?;
        if let Some(phone) = phone {
            check_phone(phone)?;
        }
        let password_hash = hash_password(password.to_owned()).await?;
        let account = Account {
            id: AccountId::generate(),
            username: username.to_owned(),
            password_hash,
            phone: phone.map(str::to_owned),
            role,
            created_at: now_millis(),
        };
        match self.store.insert_account(&account).await? {
            AccountInsert::Created => Ok(account.id),
            AccountInsert::UsernameTaken => Err(DomainError::Conflict(format!(
                "username '{username}' is already registered"
            ))
            .into()),
        }
    }

    /// Creates the `operator` account with this password unless an operator exists already.
    /// Returns whether it created one.
    pub async fn bootstrap_operator(&self, password: &str) -> Result<bool, ServiceError> {
        if self.store.any_account_with_role(Role::Operator).await? {
            return Ok(false);
        }
        match self
            .register("operator", password, None, Role::Operator)
            .await
        {
            Ok(_) => Ok(true),
            // Another replica bootstrapped it between our check and insert.
            Err(ServiceError::Refused(DomainError::Conflict(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn issue_token(
        &self,
        username: &str,
        password: &str,
    ) -> Result<IssuedToken, ServiceError> {
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
            _ => return Err(denied().into()),
        };
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("rng: {e}")))?;
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
            expires_at: to_rfc3339(from_millis(expires_at_ms)),
        })
    }

    /// Resolves a presented token or API key to its account, or refuses it.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ServiceError> {
        let unknown = || DomainError::Unauthenticated("X-Auth-Token is unknown".to_owned());
        let is_key = token.starts_with(API_KEY_PREFIX);
        if !(is_key || token.starts_with(TOKEN_PREFIX)) || token.len() > 128 {
            return Err(unknown().into());
        }
        let now = now_millis();
        let key = hash_token(token);
        if let Some(hit) = self.cache.get(&key) {
            if now < hit.cached_until_ms && now < hit.expires_at_ms {
                return Ok(hit.caller);
            }
            self.cache.remove(&key);
        }
        if is_key {
            let caller = self.store.api_key_caller(&key).await?.ok_or_else(unknown)?;
            self.cache.insert(
                key,
                CachedCaller {
                    caller: caller.clone(),
                    expires_at_ms: i64::MAX,
                    cached_until_ms: now + TOKEN_CACHE_TTL_MS,
                },
            );
            return Ok(caller);
        }
        let grant = self.store.token(&key).await?.ok_or_else(unknown)?;
        if grant.expires_at <= now {
            return Err(DomainError::Unauthenticated(
                "X-Auth-Token has expired; request a new one".to_owned(),
            )
            .into());
        }
        let caller = grant.caller;
        self.cache.insert(
            key,
            CachedCaller {
                caller: caller.clone(),
                expires_at_ms: grant.expires_at,
                cached_until_ms: now + TOKEN_CACHE_TTL_MS,
            },
        );
        Ok(caller)
    }
}

impl Accounts {
    /// Creates an API key for the caller: shown once in the answer, stored as its SHA-256.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        req: &ApiKeyRequest,
    ) -> Result<NewApiKey, ServiceError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("rng: {e}")))?;
        let api_key = format!(
            "{API_KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let stored = StoredApiKey {
            id: new_id("key_"),
            account_id: caller.account_id.to_string(),
            name: req.name.clone(),
            key_sha256: hash_token(&api_key),
            key_prefix: api_key.chars().take(API_KEY_PREFIX.len() + 6).collect(),
            created_at: now_millis(),
        };
        if !self.store.insert_api_key(&stored, MAX_API_KEYS).await? {
            return Err(DomainError::Conflict(format!(
                "an account may have at most {MAX_API_KEYS} API keys; delete one first"
            ))
            .into());
        }
        Ok(NewApiKey {
            key_id: stored.id,
            name: stored.name,
            api_key,
            created_at: to_rfc3339(from_millis(stored.created_at)),
        })
    }

    pub async fn api_keys(&self, caller: &Caller) -> Result<Vec<ApiKeyView>, ServiceError> {
        Ok(self
            .store
            .api_keys(caller.account_id.as_str())
            .await?
            .into_iter()
            .map(|k| ApiKeyView {
                key_id: k.id,
                name: k.name,
                key_prefix: k.key_prefix,
                created_at: to_rfc3339(from_millis(k.created_at)),
            })
            .collect())
    }

    /// Deletes one of the caller's API keys; it stops working at once on this server (other
    /// servers of a deployment trust their 30 s cache of it until it runs out).
    pub async fn delete_api_key(&self, caller: &Caller, key_id: &str) -> Result<(), ServiceError> {
        let hash = self
            .store
            .delete_api_key(caller.account_id.as_str(), key_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no API key '{key_id}'")))?;
        self.cache.remove(&hash);
        Ok(())
    }
}

async fn hash_password(password: String) -> Result<String, ServiceError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h: PasswordHash| h.to_string())
            .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, ServiceError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ServiceError::Internal(format!("stored password hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))?
}

/// An argon2 hash of a random password nobody knows, for constant-work login failures.
fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5n4W8o0w2o4xb6CM0c0s3cUZbTY2yT1A3m5V3J0u0bU"
}
