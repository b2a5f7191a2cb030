//! Keyword matching (clause 7.3 a): the in-memory index of every server, kept in step with the
//! database's change feed, and the ranked pages of counterparts it answers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::ServiceError;
use super::demand::Demands;
use super::supply::Supply;
use crate::domain::demand::Demand;
use crate::domain::match_index::MatchIndex;
use crate::domain::matching::{
    DEFAULT_LIMIT, MAX_LIMIT, MatchPage, MatchQuery, MatchResult, MatchedDemand, MatchedResource,
    Matches, Side, TermField, Terms, shared_keywords,
};
use crate::domain::supply::{PublishedDataView, Resource, ResourceRef};
use crate::domain::{DomainError, PublicationStatus};
use crate::store::{Store, StoreError};

/// An item's `data_type` and its normalised terms, as read back from `match_terms`.
type ItemTerms<'a> = (&'a str, Vec<(TermField, &'a str)>);

#[derive(Clone)]
pub struct Matcher {
    store: Store,
    supply: Supply,
    demands: Demands,
    index: Arc<RwLock<MatchIndex>>,
    /// One catch-up at a time; the others wait for it instead of repeating it.
    syncing: Arc<tokio::sync::Mutex<()>>,
}

impl Matcher {
    pub fn new(store: Store) -> Self {
        Matcher {
            supply: Supply::new(store.clone()),
            demands: Demands::new(store.clone()),
            store,
            index: Arc::new(RwLock::new(MatchIndex::default())),
            syncing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Brings the in-memory index up to the latest committed change of the database. Called
    /// before every query (one indexed read when nothing changed) and at start, where it loads
    /// the whole index. Returns the number of items it (re)applied.
    pub async fn sync(&self) -> Result<usize, ServiceError> {
        let latest = self.store.match_version().await?;
        if latest <= self.read_index()?.version {
            return Ok(0);
        }
        let _turn = self.syncing.lock().await;
        let applied_up_to = self.read_index()?.version;
        if latest <= applied_up_to {
            return Ok(0);
        }
        // Everything after what is applied, even past `latest`: an item's row shows only its
        // newest version, so stopping at `latest` could skip an item changed twice.
        let changes = self.store.match_changes(applied_up_to).await?;
        let newest = changes.iter().map(|c| c.version).max().unwrap_or(latest);
        let mut terms_by_side = Vec::new();
        for side in [Side::Resource, Side::Demand] {
            let live: Vec<String> = changes
                .iter()
                .filter(|c| c.side == side && c.live)
                .map(|c| c.item_id.clone())
                .collect();
            terms_by_side.push((side, self.store.match_item_terms(side, &live).await?));
        }
        let mut index = self
            .index
            .write()
            .map_err(|_| ServiceError::Internal("match index lock poisoned".into()))?;
        for change in changes.iter().filter(|c| !c.live) {
            index.remove(change.side, &change.item_id);
        }
        for (side, rows) in &terms_by_side {
            let mut by_item: HashMap<&str, ItemTerms<'_>> = HashMap::new();
            for row in rows {
                by_item
                    .entry(row.item_id.as_str())
                    .or_insert_with(|| (row.data_type.as_str(), Vec::new()))
                    .1
                    .push((row.field, row.term.as_str()));
            }
            for change in changes.iter().filter(|c| c.side == *side && c.live) {
                match by_item.remove(change.item_id.as_str()) {
                    Some((data_type, terms)) => {
                        index.insert(*side, &change.item_id, data_type, terms)
                    }
                    // Revoked between the two reads: the next sync sees its tombstone.
                    None => index.remove(*side, &change.item_id),
                }
            }
        }
        index.version = index.version.max(newest).max(latest);
        Ok(changes.len())
    }

    fn read_index(&self) -> Result<std::sync::RwLockReadGuard<'_, MatchIndex>, ServiceError> {
        self.index
            .read()
            .map_err(|_| ServiceError::Internal("match index lock poisoned".into()))
    }

    /// Clause 7.3 a: the ranked matches of a published demand (resources) or of a published
    /// resource (demands), as the query names one or the other.
    pub async fn query(&self, q: MatchQuery) -> Result<Matches, ServiceError> {
        // The schema bounds limit to 1..=MAX_LIMIT and names exactly one side.
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let offset = q.offset.unwrap_or(0);
        match (q.demand_id, q.registration_id) {
            (Some(demand_id), None) => {
                if q.data_id.is_some() {
                    return Err(ServiceError::invalid(
                        "/dataID",
                        "only goes with registrationID",
                    ));
                }
                let demand = self.demands.find(&demand_id).await?;
                Ok(Matches::Resources(
                    self.resources_for_demand(&demand, limit, offset).await?,
                ))
            }
            (None, Some(registration_id)) => {
                let resource = self
                    .supply
                    .find(&ResourceRef {
                        registration_id,
                        data_id: q.data_id,
                    })
                    .await?;
                Ok(Matches::Demands(
                    self.demands_for_resource(&resource, limit, offset).await?,
                ))
            }
            _ => Err(ServiceError::invalid(
                "/",
                "exactly one of demandID or registrationID is required",
            )),
        }
    }

    /// Published resources matching a published demand, best first.
    pub async fn resources_for_demand(
        &self,
        demand: &Demand,
        limit: i64,
        offset: i64,
    ) -> Result<MatchPage<MatchedResource>, ServiceError> {
        let source = Source {
            what: "demand",
            seeks: Side::Resource,
            id: &demand.id,
            published: demand.status == PublicationStatus::Published,
            data_type: &demand.data_type,
            terms: demand.index_terms(),
        };
        self.page(
            &source,
            limit,
            offset,
            async |ids| self.store.resources_by_ids(ids).await,
            |r: &Resource| &r.key_words,
            |r| {
                let view = PublishedDataView::from(&r);
                MatchedResource {
                    registration_id: r.registration_id,
                    data_id: r.data_id,
                    owner: r.owner_name,
                    data_type: r.data_type,
                    key_words: r.key_words,
                    data_category: r.data_category,
                    description: r.description,
                    free: view.free,
                    price: view.price,
                }
            },
        )
        .await
    }

    /// Published demands matching a published resource, best first.
    pub async fn demands_for_resource(
        &self,
        resource: &Resource,
        limit: i64,
        offset: i64,
    ) -> Result<MatchPage<MatchedDemand>, ServiceError> {
        let source = Source {
            what: "resource",
            seeks: Side::Demand,
            id: &resource.registration_id,
            published: resource.status == PublicationStatus::Published,
            data_type: &resource.data_type,
            terms: resource.index_terms(),
        };
        self.page(
            &source,
            limit,
            offset,
            async |ids| self.store.demands_by_ids(ids).await,
            |d: &Demand| &d.key_words,
            |d| MatchedDemand {
                demand_id: d.id,
                demander: d.demander_name,
                data_type: d.data_type,
                key_words: d.key_words,
                data_category: d.data_category,
                description: d.description,
            },
        )
        .await
    }

    /// Ranks the counterparts of `source` on `side`, loads the page's items and shapes them.
    async fn page<I, T>(
        &self,
        source: &Source<'_>,
        limit: i64,
        offset: i64,
        load: impl AsyncFnOnce(&[String]) -> Result<HashMap<String, I>, StoreError>,
        keywords: impl Fn(&I) -> &[String],
        view: impl Fn(I) -> T,
    ) -> Result<MatchPage<T>, ServiceError>
    where
        T: Serialize,
    {
        if !source.published {
            return Err(DomainError::InvalidState(format!(
                "{} '{}' is not published, so it has no matches",
                source.what, source.id
            ))
            .into());
        }
        self.sync().await?;
        let (candidates, total) = self.read_index()?.rank(
            source.seeks,
            source.data_type,
            &source.terms,
            usize::try_from(limit).unwrap_or(0),
            usize::try_from(offset).unwrap_or(0),
        );
        let ids: Vec<String> = candidates.iter().map(|c| c.item_id.clone()).collect();
        let mut items = load(&ids).await?;
        let results = candidates
            .into_iter()
            .filter_map(|c| {
                // An item revoked between the two reads simply drops out of this page.
                let item = items.remove(&c.item_id)?;
                Some(MatchResult {
                    matched_keywords: shared_keywords(&source.terms.keywords, keywords(&item)),
                    score: c.score,
                    item: view(item),
                })
            })
            .collect();
        Ok(MatchPage {
            total: total as i64,
            limit,
            offset,
            results,
        })
    }
}

/// The item whose counterparts are sought.
struct Source<'a> {
    what: &'static str,
    /// The side of the market its counterparts are on.
    seeks: Side,
    id: &'a str,
    published: bool,
    data_type: &'a str,
    terms: Terms,
}
