//! Demand (A.2): users register purchase demands and publish, query and revoke them.

use serde::{Deserialize, Serialize};

use super::matching::Terms;
use super::{AccountId, PublicationStatus};

#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub id: String,
    pub demander_account_id: AccountId,
    pub demander_name: String,
    pub data_category: Vec<String>,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub subscribe_confirm: Option<String>,
    pub status: PublicationStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Demand {
    pub fn index_terms(&self) -> Terms {
        Terms::of(
            &self.key_words,
            &self.data_category,
            self.description.as_deref(),
        )
    }
}

/// A.2.1 request.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterDemand {
    pub demander: String,
    pub data_category: Vec<String>,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub subscribe_confirm: Option<String>,
}

/// A.2.2 and A.2.4 requests.
#[derive(Debug, Clone, Deserialize)]
pub struct DemandAction {
    pub demander: String,
    #[serde(rename = "demandID")]
    pub demand_id: String,
}

/// A.2.3 request.
#[derive(Debug, Clone, Deserialize)]
pub struct DemandRef {
    #[serde(rename = "demandID")]
    pub demand_id: String,
}

/// A.2.3 response data.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedDemandView {
    #[serde(rename = "demandID")]
    pub demand_id: String,
    pub demander: String,
    pub publish_status: &'static str,
    pub data_category: Vec<String>,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub subscribe_confirm: Option<String>,
}

impl From<&Demand> for PublishedDemandView {
    fn from(d: &Demand) -> Self {
        PublishedDemandView {
            demand_id: d.id.clone(),
            demander: d.demander_name.clone(),
            publish_status: d.status.yes_no(),
            data_category: d.data_category.clone(),
            key_words: d.key_words.clone(),
            description: d.description.clone(),
            data_type: d.data_type.clone(),
            subscribe_confirm: d.subscribe_confirm.clone(),
        }
    }
}
