//! Building blocks of a trade, done the way a client does them: age keys generated locally,
//! data encrypted before upload, delivery keys sealed to the escrow recipient of `/v1/keys`.

use base64::Engine as _;
use serde_json::{Value, json};

use super::TestApp;
use super::fixtures::register_data;

pub fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub use liutong_testkit::age::{
    decrypt as age_decrypt, encrypt as age_encrypt, identity_file, parse_identity_file,
};

/// An account with a token and its own age identity.
pub struct Party {
    pub name: String,
    pub token: String,
    pub identity: age::x25519::Identity,
}

impl Party {
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }
}

/// A published resource whose data file and delivery key are in place.
pub struct Listing {
    pub registration_id: String,
    pub identity: age::x25519::Identity,
    pub ciphertext: Vec<u8>,
}

impl TestApp {
    pub async fn keys(&self) -> Value {
        self.get("/v1/keys", None, &[]).await.ok().clone()
    }

    pub async fn escrow_recipient(&self) -> String {
        self.keys().await["escrowRecipient"]
            .as_str()
            .expect("escrowRecipient")
            .to_owned()
    }

    /// An enterprise account with a token and an age identity (not yet registered as its
    /// delivery key).
    pub async fn party(&self, name: &str) -> Party {
        Party {
            name: name.to_owned(),
            token: self.user(name).await,
            identity: age::x25519::Identity::generate(),
        }
    }

    /// A buyer whose delivery key is set.
    pub async fn buyer(&self, name: &str) -> Party {
        let party = self.party(name).await;
        self.set_delivery_key(&party).await;
        party
    }

    pub async fn set_delivery_key(&self, party: &Party) {
        let resp = self
            .send(
                self.client
                    .put(self.url("/v1/account/deliveryKey"))
                    .header("X-Auth-Token", &party.token)
                    .json(&json!({"publicKey": party.recipient()})),
            )
            .await;
        assert_eq!(resp.ok()["publicKey"], party.recipient());
    }

    pub async fn credit(&self, username: &str, amount: f64, reference: &str) -> super::Resp {
        let operator = self.operator().await;
        self.post(
            "/v1/admin/accounts/credit",
            Some(&operator),
            &json!({"username": username, "amount": amount, "reference": reference}),
        )
        .await
    }

    pub async fn balance(&self, token: &str) -> f64 {
        self.get("/v1/account/balance", Some(token), &[]).await.ok()["balance"]
            .as_f64()
            .expect("balance")
    }

    pub async fn upload(&self, token: &str, registration_id: &str, bytes: Vec<u8>) -> super::Resp {
        self.send(
            self.client
                .put(self.url("/v1/data/file"))
                .query(&[("registrationID", registration_id)])
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/octet-stream")
                .body(bytes),
        )
        .await
    }

    pub async fn deposit(&self, token: &str, registration_id: &str, sealed: &[u8]) -> super::Resp {
        self.send(
            self.client
                .put(self.url("/v1/data/deliveryKey"))
                .query(&[("registrationID", registration_id)])
                .header("X-Auth-Token", token)
                .json(&json!({"sealedIdentity": b64().encode(sealed)})),
        )
        .await
    }

    /// Registers a resource with a fresh identity as its public_key, publishes it at `price`
    /// (free when `None`), uploads `plaintext` encrypted to it and deposits the identity sealed
    /// to the escrow recipient.
    pub async fn listing(
        &self,
        owner: &Party,
        data_id: &str,
        price: Option<f64>,
        plaintext: &[u8],
    ) -> Listing {
        let identity = age::x25519::Identity::generate();
        let listing = self
            .listing_with(owner, data_id, price, plaintext, identity, |_| {})
            .await;
        let resp = self
            .upload(
                &owner.token,
                &listing.registration_id,
                listing.ciphertext.clone(),
            )
            .await;
        assert_eq!(resp.ok()["size"], listing.ciphertext.len());
        listing
    }

    /// Like `listing` without the upload, letting the test adjust the registration body.
    pub async fn listing_with(
        &self,
        owner: &Party,
        data_id: &str,
        price: Option<f64>,
        plaintext: &[u8],
        identity: age::x25519::Identity,
        adjust: impl FnOnce(&mut Value),
    ) -> Listing {
        let recipient = identity.to_public().to_string();
        let mut body = register_data(&owner.name, data_id, &["ct", "lung"]);
        body["public_key"] = json!(recipient);
        adjust(&mut body);
        let registration_id = self.register_resource(&owner.token, &body).await;
        let publish = match price {
            Some(p) => {
                json!({"owner": owner.name, "registrationID": registration_id, "free": false, "price": p})
            }
            None => json!({"owner": owner.name, "registrationID": registration_id, "free": true}),
        };
        self.post("/publishData", Some(&owner.token), &publish)
            .await
            .ok();
        let escrow = self.escrow_recipient().await;
        let sealed = age_encrypt(&escrow, identity_file(&identity).as_bytes());
        self.deposit(&owner.token, &registration_id, &sealed)
            .await
            .ok();
        let ciphertext = age_encrypt(&recipient, plaintext);
        Listing {
            registration_id,
            identity,
            ciphertext,
        }
    }

    /// Publishes a demand of `buyer` and confirms `registration_id` for it; returns the
    /// confirmation id.
    pub async fn confirm(&self, buyer: &Party, registration_id: &str) -> String {
        let resp = self.try_confirm(buyer, registration_id).await;
        resp.ok()["confirmID"]
            .as_str()
            .expect("confirmID")
            .to_owned()
    }

    pub async fn try_confirm(&self, buyer: &Party, registration_id: &str) -> super::Resp {
        let demand = self
            .published_demand(&buyer.token, &buyer.name, &["ct"], "dataset")
            .await;
        self.post(
            "/confirmDemand",
            Some(&buyer.token),
            &json!({"demander": buyer.name, "demandID": demand, "registrationID": registration_id}),
        )
        .await
    }

    pub async fn settle(&self, token: &str, confirm_id: &str) -> super::Resp {
        self.post(
            "/settlement",
            Some(token),
            &json!({"confirmID": confirm_id}),
        )
        .await
    }

    pub async fn deliver_json(&self, token: &str, license: &Value) -> super::Resp {
        self.post("/deliver", Some(token), &json!({"licenses": license}))
            .await
    }

    /// Operator view of the ledger's invariants.
    pub async fn audit(&self) -> Value {
        let operator = self.operator().await;
        self.get("/v1/admin/ledger/audit", Some(&operator), &[])
            .await
            .ok()
            .clone()
    }

    /// A full trade up to settlement: returns (confirmID, settlement data).
    pub async fn settled_trade(&self, buyer: &Party, listing: &Listing) -> (String, Value) {
        let confirm_id = self.confirm(buyer, &listing.registration_id).await;
        let settled = self.settle(&buyer.token, &confirm_id).await;
        (confirm_id, settled.ok().clone())
    }
}

/// Verifies a signed document against `/v1/keys`, as any client can: base64 Ed25519 over the
/// RFC 8785 canonical JSON of the document without its signature field.
pub fn verify_signed(keys: &Value, doc: &Value, field: &str) -> bool {
    use ed25519_dalek::Verifier;
    let Some(key_id) = doc["keyId"].as_str() else {
        return false;
    };
    let Some(key) = keys["signingKeys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["keyId"] == key_id))
    else {
        return false;
    };
    let raw: [u8; 32] = b64()
        .decode(key["publicKey"].as_str().unwrap_or_default())
        .ok()
        .and_then(|v| v.try_into().ok())
        .expect("32-byte key");
    let public = ed25519_dalek::VerifyingKey::from_bytes(&raw).expect("public key");
    let mut unsigned = doc.clone();
    unsigned.as_object_mut().expect("object").remove(field);
    let canonical = serde_json_canonicalizer::to_vec(&unsigned).expect("jcs");
    let Ok(sig) = b64().decode(doc[field].as_str().unwrap_or_default()) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
        return false;
    };
    public.verify(&canonical, &sig).is_ok()
}
