//! Request bodies that pass validation, to vary one field at a time.

use serde_json::{Value, json};

use super::TestApp;

/// A syntactically valid age recipient (the example key of the age specification).
pub const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

pub fn register_data(owner: &str, data_id: &str, key_words: &[&str]) -> Value {
    json!({
        "owner": owner,
        "key_words": key_words,
        "dataID": data_id,
        "description": "Chest CT scans with radiologist labels",
        "data_type": "dataset",
        "data_format": "dicom",
        "data_size": 12.5,
        "data_category": ["healthcare"],
        "collection_time": "2024-05-01 08:30:00",
        "country": "CN",
        "provider_url": "https://provider.example/",
        "resource_url": "https://provider.example/data/ct.tar.age",
        "ownership_confirm": "https://provider.example/ownership",
        "public_key": RECIPIENT,
        "subscribe_confirm": "no"
    })
}

pub fn register_demand(demander: &str, key_words: &[&str], data_type: &str) -> Value {
    json!({
        "demander": demander,
        "data_category": ["healthcare"],
        "key_words": key_words,
        "description": "Need labelled CT scans",
        "data_type": data_type
    })
}

pub fn publish_datasets(
    data_id: &str,
    key_words: &[&str],
    free: bool,
    price: Option<f64>,
) -> Value {
    let mut body = json!({
        "owner": "trusted-data-space",
        "dataID": data_id,
        "registrationID": "TDS-CONTROLLED",
        "description": "Controlled clinical records",
        "protocol": "IDS",
        "isOpen": 0,
        "source": "hospital-a",
        "key_words": key_words,
        "free": free
    });
    if let Some(p) = price {
        body["price"] = json!(p);
    }
    body
}

impl TestApp {
    /// Registers a resource from `body` and returns its registration id.
    pub async fn register_resource(&self, token: &str, body: &Value) -> String {
        let resp = self.post("/registerData", Some(token), body).await;
        resp.ok()["registrationID"]
            .as_str()
            .expect("registrationID")
            .to_owned()
    }

    /// Registers and publishes a priced resource; returns its registration id.
    pub async fn published_resource(
        &self,
        token: &str,
        owner: &str,
        data_id: &str,
        key_words: &[&str],
        price: f64,
    ) -> String {
        let id = self
            .register_resource(token, &register_data(owner, data_id, key_words))
            .await;
        let resp = self
            .post(
                "/publishData",
                Some(token),
                &json!({"owner": owner, "registrationID": id, "free": false, "price": price}),
            )
            .await;
        assert_eq!(resp.ok()["publish_status"], "YES");
        id
    }

    pub async fn register_demand_from(&self, token: &str, body: &Value) -> String {
        let resp = self.post("/registerDemand", Some(token), body).await;
        resp.ok()["demandID"].as_str().expect("demandID").to_owned()
    }

    /// Registers and publishes a demand; returns its id.
    pub async fn published_demand(
        &self,
        token: &str,
        demander: &str,
        key_words: &[&str],
        data_type: &str,
    ) -> String {
        let id = self
            .register_demand_from(token, &register_demand(demander, key_words, data_type))
            .await;
        let resp = self
            .post(
                "/publishDemand",
                Some(token),
                &json!({"demander": demander, "demandID": id}),
            )
            .await;
        assert_eq!(resp.ok()["publish_status"], "YES");
        id
    }
}
