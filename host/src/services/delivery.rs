//! Delivery (A.3.5, A.3.6) and what it needs from providers and buyers: delivery keys and data
//! files. See `domain::delivery` for the flow.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::Stream;
use serde_json::Value;

use super::ServiceError;
use super::licensing;
use super::supply::Supply;
use super::trading::{Trading, no_confirmation};
use crate::crypto::{KeyRing, sealing};
use crate::domain::delivery::{
    AccountDeliveryKey, DataRef, Deliver, DeliveryMode, DepositDeliveryKey, DepositView, UploadView,
};
use crate::domain::supply::{Resource, ResourceRef};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::trading::{
    ConfirmationStatus, DeliveryProof, DeliveryRecord, PROOF_SIGNATURE_FIELD,
};
use crate::domain::{CONTROLLED_REGISTRATION_ID, Caller, DomainError, new_id};
use crate::files::fetch::{FetchError, Fetcher, is_fetchable};
use crate::files::{ByteStream, Expected, Files, FilesError, read_to_vec};
use crate::store::Store;
use crate::store::delivery::{DeliveryContext, ResourceFile, SealedKey};

pub enum Content {
    Bytes(Vec<u8>),
    Stream { size: u64, stream: ByteStream },
}

/// A delivery: its signed proof and the encrypted bytes.
pub struct Delivered {
    pub proof: Value,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub max_json_delivery: u64,
    pub fetch_resource_urls: bool,
}

#[derive(Clone)]
pub struct Delivery {
    store: Store,
    supply: Supply,
    trading: Trading,
    keys: Arc<KeyRing>,
    files: Files,
    fetcher: Fetcher,
    config: Arc<DeliveryConfig>,
}

/// Where the bytes of one delivery come from, with their size and digest known in advance.
struct Source {
    size: u64,
    sha256: String,
    stream: ByteStream,
    origin: &'static str,
}

fn files_err(e: FilesError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

impl Delivery {
    pub fn new(
        store: Store,
        trading: Trading,
        files: Files,
        fetcher: Fetcher,
        config: DeliveryConfig,
    ) -> Self {
        Delivery {
            supply: Supply::new(store.clone()),
            keys: Arc::clone(trading.keys()),
            store,
            trading,
            files,
            fetcher,
            config: Arc::new(config),
        }
    }

    /// Sets the caller's own age recipient, to which settlements encrypt delivery keys.
    pub async fn set_account_key(
        &self,
        caller: &Caller,
        req: &AccountDeliveryKey,
    ) -> Result<String, ServiceError> {
        let recipient = sealing::parse_recipient(&req.public_key)
            .map_err(|e| DomainError::invalid("/publicKey", e.to_string()))?
            .to_string();
        self.store
            .set_account_delivery_key(&caller.account_id, &recipient, now_millis())
            .await?;
        Ok(recipient)
    }

    /// A provider's own, non-controlled resource.
    async fn owned(
        &self,
        caller: &Caller,
        registration_id: &str,
    ) -> Result<Resource, ServiceError> {
        if registration_id == CONTROLLED_REGISTRATION_ID {
            return Err(DomainError::invalid(
                "/registrationID",
                "controlled data stays in its trusted data space and is delivered through \
                 POST /deliverDatasets",
            )
            .into());
        }
        let resource = self
            .supply
            .find(&ResourceRef {
                registration_id: registration_id.to_owned(),
                data_id: None,
            })
            .await?;
        if resource.owner_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "registrationID '{registration_id}' belongs to another owner"
            ))
            .into());
        }
        Ok(resource)
    }

    /// Deposits the resource's delivery identity, sealed to the escrow recipient. It must open
    /// with the operator's escrow keys and be the identity of the registered `public_key`.
    pub async fn deposit_key(
        &self,
        caller: &Caller,
        data: &DataRef,
        req: &DepositDeliveryKey,
    ) -> Result<DepositView, ServiceError> {
        let resource = self.owned(caller, &data.registration_id).await?;
        let compact: String = req
            .sealed_identity
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|_| DomainError::invalid("/sealedIdentity", "is not base64"))?;
        let identity = sealing::unseal_identity(self.keys.escrow_identities(), &raw)
            .map_err(|e| DomainError::invalid("/sealedIdentity", e.to_string()))?;
        let recipient = identity.to_public().to_string();
        let registered = resource.public_key.clone().unwrap_or_default();
        if recipient != registered {
            return Err(DomainError::invalid(
                "/sealedIdentity",
                format!(
                    "holds the identity of {recipient}, not of the registered public_key \
                     {registered}"
                ),
            )
            .into());
        }
        self.store
            .set_resource_delivery_key(
                &resource.id,
                &SealedKey {
                    sealed: base64::engine::general_purpose::STANDARD.encode(&raw),
                    recipient: recipient.clone(),
                },
                now_millis(),
            )
            .await?;
        Ok(DepositView {
            registration_id: resource.registration_id,
            recipient,
        })
    }

    /// Stores the resource's encrypted data file from a stream, replacing an earlier upload
    /// once the new one is complete.
    pub async fn upload<S>(
        &self,
        caller: &Caller,
        data: &DataRef,
        body: S,
    ) -> Result<UploadView, ServiceError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send,
    {
        let resource = self.owned(caller, &data.registration_id).await?;
        // One flat name per upload: a directory per resource cost a second inode (and a
        // block) for every upload. Keys stored with a '/' by earlier versions still resolve.
        let key = format!("{}-{}", resource.id, new_id("up_"));
        let stored = self
            .files
            .put_stream(&key, body)
            .await
            .map_err(|e| match e {
                FilesError::Upload(e) => {
                    ServiceError::invalid("/", format!("the upload was interrupted: {e}"))
                }
                other => files_err(other),
            })?;
        let size = i64::try_from(stored.size)
            .map_err(|_| DomainError::TooLarge("the file is too large".to_owned()))?;
        let replaced = match self
            .store
            .set_resource_file(&ResourceFile {
                resource_id: resource.id.clone(),
                object_key: key.clone(),
                size,
                sha256: stored.sha256.clone(),
                blake3: Some(stored.blake3.clone()),
                uploaded_at: now_millis(),
            })
            .await
        {
            Ok(replaced) => replaced,
            Err(e) => {
                let _ = self.files.delete(&key).await;
                return Err(e.into());
            }
        };
        if let Some(old) = replaced
            && let Err(e) = self.files.delete(&old).await
        {
            // The new file is recorded; an orphan old one costs space, not correctness.
            tracing::warn!(error = %e, key = %old, "could not delete a replaced upload");
        }
        Ok(UploadView {
            registration_id: resource.registration_id,
            size: stored.size,
            sha256: stored.sha256,
        })
    }

    /// A.3.5: checks the presented license and delivers the encrypted data with a signed proof.
    pub async fn deliver(
        &self,
        caller: &Caller,
        req: &Deliver,
        mode: DeliveryMode,
    ) -> Result<Delivered, ServiceError> {
        let now = now_millis();
        let (verified, record) =
            licensing::present(&self.store, &self.keys, &req.licenses, Some(caller), now).await?;
        let DeliveryContext {
            confirmation,
            resource_url,
            file,
        } = self
            .store
            .delivery_context(&record.confirm_id)
            .await?
            .ok_or_else(|| no_confirmation(&record.confirm_id))?;
        if confirmation.status != ConfirmationStatus::Settled {
            return Err(DomainError::Forbidden(format!(
                "confirmation '{}' is not settled",
                confirmation.id
            ))
            .into());
        }
        if confirmation.controlled {
            return Err(DomainError::invalid(
                "/licenses/registrationID",
                "controlled data is delivered by its trusted data space through \
                 POST /deliverDatasets (A.3.7), not /deliver",
            )
            .into());
        }
        let source = self.source(file, resource_url.as_deref()).await?;
        if mode == DeliveryMode::Json && source.size > self.config.max_json_delivery {
            return Err(DomainError::TooLarge(format!(
                "the data file is {} bytes, above the {} bytes /deliver returns inside JSON; \
                 ask for the raw bytes with 'Accept: application/octet-stream'",
                source.size, self.config.max_json_delivery
            ))
            .into());
        }
        let content = match mode {
            DeliveryMode::Json => Content::Bytes(
                read_to_vec(source.stream, source.size)
                    .await
                    .map_err(|e| ServiceError::Internal(format!("reading the data file: {e}")))?,
            ),
            DeliveryMode::Stream => Content::Stream {
                size: source.size,
                stream: source.stream,
            },
        };

        let delivery_id = new_id("dlv_");
        let proof = self
            .keys
            .sign(
                &DeliveryProof {
                    kind: "delivery_proof",
                    delivery_id: &delivery_id,
                    licenses_id: &record.id,
                    confirm_id: &confirmation.id,
                    registration_id: &confirmation.registration_id,
                    data_id: &confirmation.data_id,
                    licensor: &confirmation.seller_name,
                    licensee: &confirmation.buyer_name,
                    sha256: &source.sha256,
                    size: source.size,
                    source: source.origin,
                    delivered_at: to_rfc3339(from_millis(now)),
                    digital_watermarking: &verified.watermark,
                },
                PROOF_SIGNATURE_FIELD,
            )
            .map_err(|e| ServiceError::Internal(format!("signing: {e}")))?;
        self.store
            .insert_delivery(&DeliveryRecord {
                id: delivery_id,
                confirm_id: confirmation.id.clone(),
                license_id: record.id.clone(),
                proof: proof.clone(),
                delivered_at: now,
            })
            .await?;
        Ok(Delivered { proof, content })
    }

    /// The uploaded file if there is one, else the fetched `resource_url`.
    async fn source(
        &self,
        file: Option<ResourceFile>,
        resource_url: Option<&str>,
    ) -> Result<Source, ServiceError> {
        if let Some(file) = file {
            let size = u64::try_from(file.size).unwrap_or_default();
            let stream = self
                .files
                .open_verified(
                    &file.object_key,
                    size,
                    Expected::best(&file.sha256, file.blake3.as_deref()),
                )
                .await
                .map_err(files_err)?;
            return Ok(Source {
                size,
                sha256: file.sha256,
                stream,
                origin: "upload",
            });
        }
        let url = resource_url.unwrap_or_default();
        if !self.config.fetch_resource_urls || !is_fetchable(url) {
            return Err(DomainError::InvalidState(
                "the provider has not uploaded the data file and its resource_url cannot be \
                 fetched"
                    .to_owned(),
            )
            .into());
        }
        let spooled = self.fetcher.spool(url).await.map_err(|e| match e {
            FetchError::Spool(e) => ServiceError::Internal(format!("spooling: {e}")),
            other => ServiceError::Unavailable(format!(
                "the provider's resource_url could not be fetched ({other}); retry later"
            )),
        })?;
        let (size, sha256) = (spooled.size, spooled.sha256.clone());
        let stream = spooled
            .into_stream()
            .await
            .map_err(|e| ServiceError::Internal(format!("spool: {e}")))?;
        Ok(Source {
            size,
            sha256,
            stream,
            origin: "resource_url",
        })
    }

    /// A.3.6: the delivery proofs of a confirmation; buyer, seller or operator.
    pub async fn query(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<Vec<Value>, ServiceError> {
        let confirmation = self.trading.find_confirmation(confirm_id).await?;
        confirmation.check_party(caller)?;
        Ok(self.store.delivery_proofs(&confirmation.id).await?)
    }
}
