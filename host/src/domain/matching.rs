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

use std::collections::BTreeSet;
use std::sync::LazyLock;

use icu_casemap::CaseMapper;
use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

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

/// The normalised keywords both sides have.
pub fn shared_keywords(query: &BTreeSet<String>, other: &[String]) -> Vec<String> {
    normalize_all(other)
        .into_iter()
        .filter(|k| query.contains(k))
        .collect()
}

pub fn score(shared_keywords: i64, shared_categories: i64, shared_description: i64) -> i64 {
    KEYWORD_WEIGHT * shared_keywords
        + CATEGORY_WEIGHT * shared_categories
        + DESCRIPTION_WEIGHT * shared_description
}

/// Paging of match results.
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// `GET /queryMatchResults` query: the matches of a demand, or of a resource.
#[derive(Debug, Deserialize)]
pub struct MatchQuery {
    #[serde(rename = "demandID")]
    pub demand_id: Option<String>,
    #[serde(rename = "registrationID")]
    pub registration_id: Option<String>,
    #[serde(rename = "dataID")]
    pub data_id: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A page of either side's matches.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Matches {
    Resources(MatchPage<MatchedResource>),
    Demands(MatchPage<MatchedDemand>),
}

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
