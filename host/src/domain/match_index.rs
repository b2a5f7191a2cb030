//! The in-memory inverted index behind matching.
//!
//! Ranking needs the overlap of one item's terms with every candidate sharing a keyword; popular
//! keywords and boilerplate description words have posting lists of tens of thousands of items,
//! which an SQL aggregate has to walk row by row. Here each posting list is a compressed bitmap
//! (roaring) of dense item numbers, so a query is a union of the keyword bitmaps and one bitmap
//! intersection per category or description term.
//!
//! The database stays the source of truth: `match_terms` holds the terms, and the change feed
//! (`match_state`, `match_items`) says which items changed after a version. `Matcher` brings
//! this index up to the latest version before every query, so every server sharing a database
//! sees a publication as soon as it is committed.

use std::cmp::Ordering;
use std::collections::HashMap;

use roaring::RoaringBitmap;

use super::matching::{Side, TermField, Terms, score};

/// Interned strings: each distinct term or data type is stored once and named by a number.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(s.to_owned(), id);
        id
    }
}

/// A posting list's key: data type, field and term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    data_type: u32,
    field: TermField,
    term: u32,
}

struct Entry {
    item_id: String,
    keys: Vec<Key>,
}

#[derive(Default)]
struct SideIndex {
    /// Dense number → the item while it is indexed.
    items: Vec<Option<Entry>>,
    numbers: HashMap<String, u32>,
    postings: HashMap<Key, RoaringBitmap>,
}

/// One ranked counterpart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    pub item_id: String,
    pub shared_keywords: i64,
    pub shared_categories: i64,
    pub shared_description: i64,
    pub score: i64,
}

#[derive(Default)]
pub struct MatchIndex {
    /// Every change of the feed up to this version is applied.
    pub version: i64,
    data_types: Interner,
    terms: Interner,
    resources: SideIndex,
    demands: SideIndex,
}

impl MatchIndex {
    fn side(&self, side: Side) -> &SideIndex {
        match side {
            Side::Resource => &self.resources,
            Side::Demand => &self.demands,
        }
    }

    /// Number of indexed items of a side.
    pub fn len(&self, side: Side) -> usize {
        self.side(side).items.iter().filter(|e| e.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len(Side::Resource) == 0 && self.len(Side::Demand) == 0
    }

    /// Takes an item out of the index (nothing happens if it is not in it).
    pub fn remove(&mut self, side: Side, item_id: &str) {
        let index = match side {
            Side::Resource => &mut self.resources,
            Side::Demand => &mut self.demands,
        };
        let Some(&number) = index.numbers.get(item_id) else {
            return;
        };
        let Some(entry) = index.items.get_mut(number as usize).and_then(Option::take) else {
            return;
        };
        for key in entry.keys {
            if let Some(bitmap) = index.postings.get_mut(&key) {
                bitmap.remove(number);
                if bitmap.is_empty() {
                    index.postings.remove(&key);
                }
            }
        }
    }

    /// Indexes (or re-indexes) an item with its terms.
    pub fn insert<'a>(
        &mut self,
        side: Side,
        item_id: &str,
        data_type: &str,
        terms: impl IntoIterator<Item = (TermField, &'a str)>,
    ) {
        self.remove(side, item_id);
        let data_type = self.data_types.intern(data_type);
        let mut keys: Vec<Key> = terms
            .into_iter()
            .map(|(field, term)| Key {
                data_type,
                field,
                term: self.terms.intern(term),
            })
            .collect();
        keys.sort_by_key(|k| (k.field as u8, k.term));
        keys.dedup();
        let index = match side {
            Side::Resource => &mut self.resources,
            Side::Demand => &mut self.demands,
        };
        let number = match index.numbers.get(item_id) {
            Some(n) => *n,
            None => {
                let n = index.items.len() as u32;
                index.items.push(None);
                index.numbers.insert(item_id.to_owned(), n);
                n
            }
        };
        for key in &keys {
            index.postings.entry(*key).or_default().insert(number);
        }
        index.items[number as usize] = Some(Entry {
            item_id: item_id.to_owned(),
            keys,
        });
    }

    /// The items of `side` with this data type sharing at least one keyword with `terms`,
    /// ranked by score (ties: the larger item id, i.e. the more recent, first); returns the
    /// page `offset..offset + limit` and the number of matches.
    pub fn rank(
        &self,
        side: Side,
        data_type: &str,
        terms: &Terms,
        limit: usize,
        offset: usize,
    ) -> (Vec<Ranked>, usize) {
        let Some(data_type) = self.data_types.get(data_type) else {
            return (Vec::new(), 0);
        };
        let index = self.side(side);
        let postings = |field: TermField, values: &std::collections::BTreeSet<String>| {
            values
                .iter()
                .filter_map(|v| self.terms.get(v))
                .filter_map(move |term| {
                    index.postings.get(&Key {
                        data_type,
                        field,
                        term,
                    })
                })
                .collect::<Vec<_>>()
        };
        let keyword_lists = postings(TermField::Keyword, &terms.keywords);
        let mut candidates = RoaringBitmap::new();
        for list in &keyword_lists {
            candidates |= *list;
        }
        let total = candidates.len() as usize;
        if total == 0 || offset >= total {
            return (Vec::new(), total);
        }
        // Position of each candidate in `counts`, by dense number.
        let mut position = vec![u32::MAX; index.items.len()];
        for (i, number) in candidates.iter().enumerate() {
            position[number as usize] = i as u32;
        }
        let mut counts = vec![[0i64; 3]; total];
        let fields = [
            (0, keyword_lists),
            (1, postings(TermField::Category, &terms.categories)),
            (2, postings(TermField::Description, &terms.description)),
        ];
        for (slot, lists) in fields {
            for list in lists {
                for number in list & &candidates {
                    counts[position[number as usize] as usize][slot] += 1;
                }
            }
        }
        let mut ranked: Vec<(i64, &str, usize)> = candidates
            .iter()
            .zip(&counts)
            .filter_map(|(number, c)| {
                let entry = index.items.get(number as usize)?.as_ref()?;
                Some((
                    score(c[0], c[1], c[2]),
                    entry.item_id.as_str(),
                    number as usize,
                ))
            })
            .collect();
        let order = |a: &(i64, &str, usize), b: &(i64, &str, usize)| -> Ordering {
            b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1))
        };
        let end = (offset + limit).min(ranked.len());
        if end < ranked.len() {
            ranked.select_nth_unstable_by(end, order);
            ranked.truncate(end);
        }
        ranked.sort_unstable_by(order);
        let page = ranked
            .into_iter()
            .skip(offset)
            .map(|(score, item_id, number)| {
                let c = counts[position[number] as usize];
                Ranked {
                    item_id: item_id.to_owned(),
                    shared_keywords: c[0],
                    shared_categories: c[1],
                    shared_description: c[2],
                    score,
                }
            })
            .collect();
        (page, total)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// An item as the property test generates it.
    #[derive(Debug, Clone)]
    struct Item {
        id: String,
        data_type: &'static str,
        terms: Terms,
    }

    fn set(words: &[u8], prefix: &str) -> BTreeSet<String> {
        words.iter().map(|w| format!("{prefix}{w}")).collect()
    }

    fn item() -> impl Strategy<Value = Item> {
        (
            0u32..40,
            prop::sample::select(vec!["dataset", "model"]),
            prop::collection::vec(0u8..12, 0..5),
            prop::collection::vec(0u8..4, 0..3),
            prop::collection::vec(0u8..15, 0..6),
        )
            .prop_map(|(id, data_type, k, c, d)| Item {
                id: format!("item{id:03}"),
                data_type,
                terms: Terms {
                    keywords: set(&k, "k"),
                    categories: set(&c, "c"),
                    description: set(&d, "d"),
                },
            })
    }

    /// The definition, by brute force over every live item.
    fn reference(live: &HashMap<String, Item>, data_type: &str, q: &Terms) -> Vec<(i64, String)> {
        let mut out: Vec<(i64, String)> = live
            .values()
            .filter(|i| i.data_type == data_type)
            .filter_map(|i| {
                let k = i.terms.keywords.intersection(&q.keywords).count() as i64;
                let c = i.terms.categories.intersection(&q.categories).count() as i64;
                let d = i.terms.description.intersection(&q.description).count() as i64;
                (k > 0).then(|| (score(k, c, d), i.id.clone()))
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        out
    }

    proptest! {
        #[test]
        fn ranks_like_the_definition(
            ops in prop::collection::vec((item(), any::<bool>()), 1..80),
            query in item(),
            limit in 1usize..10,
            offset in 0usize..12,
        ) {
            let mut index = MatchIndex::default();
            let mut live = HashMap::new();
            for (item, publish) in ops {
                if publish {
                    index.insert(Side::Resource, &item.id, item.data_type, item.terms.entries());
                    live.insert(item.id.clone(), item);
                } else {
                    index.remove(Side::Resource, &item.id);
                    live.remove(&item.id);
                }
            }
            let expected = reference(&live, query.data_type, &query.terms);
            let (page, total) = index.rank(Side::Resource, query.data_type, &query.terms, limit, offset);
            prop_assert_eq!(total, expected.len());
            let got: Vec<(i64, String)> = page.into_iter().map(|r| (r.score, r.item_id)).collect();
            let want: Vec<(i64, String)> = expected.into_iter().skip(offset).take(limit).collect();
            prop_assert_eq!(got, want);
            // Demands are a separate index.
            prop_assert_eq!(index.rank(Side::Demand, query.data_type, &query.terms, 10, 0).1, 0);
        }
    }
}
