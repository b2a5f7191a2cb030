//! Keyword matching (clause 7.3 a).
//!
//! Every published resource and demand is indexed by its normalised terms: keywords,
//! categories and description terms. Normalisation is Unicode NFKC, full case folding, trimming
//! and collapsing inner whitespace. Descriptions are segmented with jieba, so Chinese text
//! yields words ("医疗影像数据" → "医疗", "影像", "数据") as English text does.
//!
//! A resource and a demand match when they have the same `data_type` and share at least one
//! keyword. The score ranks matches:
//!
//! `score = 10 × shared keywords + 3 × shared categories + 1 × shared description terms`
//!
//! Ties go to the most recently registered item.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;
use std::sync::{Arc, RwLock};

use icu_casemap::CaseMapper;
use jieba_rs::Jieba;
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use super::demand::Demand;
use super::match_index::MatchIndex;
use super::supply::{PublishedDataView, Resource};
use super::{DomainError, PublicationStatus};
use crate::store::{Store, StoreError};

pub const KEYWORD_WEIGHT: i64 = 10;
pub const CATEGORY_WEIGHT: i64 = 3;
pub const DESCRIPTION_WEIGHT: i64 = 1;
/// Description terms indexed per item; descriptions are long, matching needs only the gist.
pub const MAX_DESCRIPTION_TERMS: usize = 64;

static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// Words too common to say anything about a match.
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "with", "from", "that", "this", "are", "was", "were", "has", "have",
    "into", "its", "our", "your", "their", "not", "but", "all", "any", "can", "use", "used", "的",
    "了", "和", "与", "及", "在", "是", "等", "用于", "以及", "或", "对", "为", "中", "数据",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TermField {
    Keyword,
    Category,
    Description,
}

impl TermField {
    pub fn code(self) -> &'static str {
        match self {
            TermField::Keyword => "k",
            TermField::Category => "c",
            TermField::Description => "d",
        }
    }
}

/// Which side of the market an indexed item is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Resource,
    Demand,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Resource => "resource",
            Side::Demand => "demand",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Resource => Side::Demand,
            Side::Demand => Side::Resource,
        }
    }
}

/// NFKC, full case folding, trimmed, inner whitespace collapsed to one space.
pub fn normalize(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let folded = CaseMapper::new().fold_string(&nfkc);
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The normalised, de-duplicated values of a keyword or category list.
pub fn normalize_all(values: &[String]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| normalize(v))
        .filter(|v| !v.is_empty())
        .collect()
}

/// The description's meaningful words: segmented, normalised, without punctuation, single
/// characters and stop words; at most `MAX_DESCRIPTION_TERMS`, in order of appearance.
pub fn description_terms(description: &str) -> BTreeSet<String> {
    let normalized = normalize(description);
    let mut seen = BTreeSet::new();
    let mut ordered = Vec::new();
    for token in JIEBA.cut_for_search(&normalized, true) {
        let word = token.word.trim();
        if word.chars().count() < 2
            || !word.chars().any(char::is_alphanumeric)
            || STOP_WORDS.contains(&word)
        {
            continue;
        }
        if seen.insert(word.to_owned()) {
            ordered.push(word.to_owned());
            if ordered.len() == MAX_DESCRIPTION_TERMS {
                break;
            }
        }
    }
    ordered.into_iter().collect()
}

/// All index terms of an item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    pub keywords: BTreeSet<String>,
    pub categories: BTreeSet<String>,
    pub description: BTreeSet<String>,
}

impl Terms {
    pub fn of(keywords: &[String], categories: &[String], description: Option<&str>) -> Terms {
        Terms {
            keywords: normalize_all(keywords),
            categories: normalize_all(categories),
            description: description.map(description_terms).unwrap_or_default(),
        }
    }

    /// Every term with its field, as stored in the index.
    pub fn entries(&self) -> impl Iterator<Item = (TermField, &str)> {
        let k = self
            .keywords
            .iter()
            .map(|t| (TermField::Keyword, t.as_str()));
        let c = self
            .categories
            .iter()
            .map(|t| (TermField::Category, t.as_str()));
        let d = self
            .description
            .iter()
            .map(|t| (TermField::Description, t.as_str()));
        k.chain(c).chain(d)
    }
}

pub fn score(shared_keywords: i64, shared_categories: i64, shared_description: i64) -> i64 {
    KEYWORD_WEIGHT * shared_keywords
        + CATEGORY_WEIGHT * shared_categories
        + DESCRIPTION_WEIGHT * shared_description
}

/// Paging of match results.
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// One ranked counterpart.
#[derive(Debug, Clone, Serialize)]
pub struct MatchResult<T: Serialize> {
    #[serde(flatten)]
    pub item: T,
    pub matched_keywords: Vec<String>,
    pub score: i64,
}

/// A page of match results.
#[derive(Debug, Clone, Serialize)]
pub struct MatchPage<T: Serialize> {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub results: Vec<MatchResult<T>>,
}

/// What a resource looks like in a demand's match results.
#[derive(Debug, Clone, Serialize)]
pub struct MatchedResource {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    #[serde(rename = "dataID")]
    pub data_id: String,
    pub owner: String,
    pub data_type: String,
    pub key_words: Vec<String>,
    pub data_category: Vec<String>,
    pub description: Option<String>,
    pub free: Option<&'static str>,
    pub price: Option<f64>,
}

/// What a demand looks like in a resource's match results.
#[derive(Debug, Clone, Serialize)]
pub struct MatchedDemand {
    #[serde(rename = "demandID")]
    pub demand_id: String,
    pub demander: String,
    pub data_type: String,
    pub key_words: Vec<String>,
    pub data_category: Vec<String>,
    pub description: Option<String>,
}

/// An item's `data_type` and its normalised terms, as read back from `match_terms`.
type ItemTerms<'a> = (&'a str, Vec<(TermField, &'a str)>);

#[derive(Clone)]
pub struct Matcher {
    store: Store,
    index: Arc<RwLock<MatchIndex>>,
    /// One catch-up at a time; the others wait for it instead of repeating it.
    syncing: Arc<tokio::sync::Mutex<()>>,
}

impl Matcher {
    pub fn new(store: Store) -> Self {
        Matcher {
            store,
            index: Arc::new(RwLock::new(MatchIndex::default())),
            syncing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Brings the in-memory index up to the latest committed change of the database. Called
    /// before every query (one indexed read when nothing changed) and at start, where it loads
    /// the whole index. Returns the number of items it (re)applied.
    pub async fn sync(&self) -> Result<usize, DomainError> {
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
            .map_err(|_| DomainError::Internal("match index lock poisoned".into()))?;
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

    fn read_index(&self) -> Result<std::sync::RwLockReadGuard<'_, MatchIndex>, DomainError> {
        self.index
            .read()
            .map_err(|_| DomainError::Internal("match index lock poisoned".into()))
    }

    /// Published resources matching a published demand, best first.
    pub async fn resources_for_demand(
        &self,
        demand: &Demand,
        limit: i64,
        offset: i64,
    ) -> Result<MatchPage<MatchedResource>, DomainError> {
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
    ) -> Result<MatchPage<MatchedDemand>, DomainError> {
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
    ) -> Result<MatchPage<T>, DomainError>
    where
        T: Serialize,
    {
        if !source.published {
            return Err(DomainError::InvalidState(format!(
                "{} '{}' is not published, so it has no matches",
                source.what, source.id
            )));
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
                    matched_keywords: shared(&source.terms.keywords, keywords(&item)),
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

/// The normalised keywords both sides have.
fn shared(query: &BTreeSet<String>, other: &[String]) -> Vec<String> {
    normalize_all(other)
        .into_iter()
        .filter(|k| query.contains(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_width_case_and_space() {
        assert_eq!(normalize("  Ｍｅｄｉｃａｌ   Imaging "), "medical imaging");
        assert_eq!(normalize("STRASSE"), normalize("straße"));
        assert_eq!(normalize("医疗"), "医疗");
    }

    #[test]
    fn segments_chinese_descriptions() {
        let terms = description_terms("本数据集包含医疗影像数据，用于训练诊断模型。");
        assert!(terms.contains("医疗"), "{terms:?}");
        assert!(terms.contains("影像"), "{terms:?}");
        assert!(terms.contains("诊断"), "{terms:?}");
        assert!(!terms.contains("，"));
        assert!(!terms.contains("的"));
    }

    #[test]
    fn english_descriptions_drop_noise() {
        let terms = description_terms("The CT scans, for training a model.");
        assert!(terms.contains("ct") && terms.contains("scans") && terms.contains("training"));
        assert!(!terms.contains("the") && !terms.contains("a") && !terms.contains(","));
    }
}
