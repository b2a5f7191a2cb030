//! The keyword-matching index on disk: `match_terms` holds the normalised terms of published
//! items, and `match_state`/`match_items` form the change feed the in-memory index follows
//! (see `domain::match_index`).

use sqlx::{AssertSqlSafe, Row};

use super::batch::Batch;
use super::{Backend, Store, StoreError};
use crate::domain::matching::{Side, TermField, Terms};

/// Rows per multi-row INSERT; keeps every statement under both backends' parameter limits.
const INSERT_BATCH: usize = 150;

/// `$first, $first+1, …` for `count` parameters.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(…), (…)` for `rows` rows of `width` parameters, numbered from 1. SQLite gets anonymous
/// `?`s (see `gateway::marks`).
pub(crate) fn value_rows(backend: Backend, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| match backend {
            Backend::Sqlite => format!("({})", vec!["?"; width].join(", ")),
            Backend::Postgres => format!("({})", placeholders(r * width + 1, width)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn clear_terms(batch: &mut Batch, side: Side, item_id: &str) {
    batch
        .push("DELETE FROM match_terms WHERE side = $1 AND item_id = $2")
        .bind(side.as_str())
        .bind(item_id);
}

/// Records in the change feed that an item entered (`live`) or left the index. Taking the next
/// version locks the counter row until commit, so versions are handed out in commit order.
fn record_change(batch: &mut Batch, side: Side, item_id: &str, live: bool) {
    let item = match batch.backend() {
        // PostgreSQL takes the version in a data-modifying CTE: one statement.
        Backend::Postgres => batch.push(
            "WITH next AS (UPDATE match_state SET version = version + 1 WHERE id = 1 \
               RETURNING version) \
             INSERT INTO match_items (side, item_id, version, live) \
             SELECT $1, $2, next.version, $3 FROM next \
             ON CONFLICT (side, item_id) \
               DO UPDATE SET version = excluded.version, live = excluded.live",
        ),
        // SQLite has no DML in CTEs; the item reads the counter the statement before moved.
        Backend::Sqlite => {
            batch.push("UPDATE match_state SET version = version + 1 WHERE id = 1");
            batch.push(
                "INSERT INTO match_items (side, item_id, version, live) \
                 SELECT $1, $2, version, $3 FROM match_state WHERE id = 1 \
                 ON CONFLICT (side, item_id) \
                   DO UPDATE SET version = excluded.version, live = excluded.live",
            )
        }
    };
    item.bind(side.as_str()).bind(item_id).bind(i64::from(live));
}

/// Adds to `batch` what takes an item out of the index.
pub(crate) fn delete_terms(batch: &mut Batch, side: Side, item_id: &str) {
    clear_terms(batch, side, item_id);
    record_change(batch, side, item_id, false);
}

/// Adds to `batch` what replaces an item's index entries with `terms`.
pub(crate) fn replace_terms(
    batch: &mut Batch,
    side: Side,
    item_id: &str,
    data_type: &str,
    terms: &Terms,
) {
    clear_terms(batch, side, item_id);
    let entries: Vec<(TermField, &str)> = terms.entries().collect();
    for chunk in entries.chunks(INSERT_BATCH) {
        // Numbered parameters: a batch shifts them past the statements before it.
        let sql = format!(
            "INSERT INTO match_terms (side, data_type, field, term, item_id) VALUES {}",
            value_rows(Backend::Postgres, chunk.len(), 5)
        );
        let mut statement = batch.push(&sql);
        for (field, term) in chunk {
            statement = statement
                .bind(side.as_str())
                .bind(data_type)
                .bind(field.code())
                .bind(*term)
                .bind(item_id);
        }
    }
    record_change(batch, side, item_id, true);
}

/// An item whose index entry changed after some version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchChange {
    pub side: Side,
    pub item_id: String,
    pub version: i64,
    pub live: bool,
}

/// One indexed term of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedTerm {
    pub item_id: String,
    pub data_type: String,
    pub field: TermField,
    pub term: String,
}

fn indexed_term(row: &sqlx::any::AnyRow, item_id: String) -> Result<IndexedTerm, StoreError> {
    Ok(IndexedTerm {
        item_id,
        data_type: row.try_get("data_type")?,
        field: field_from(&row.try_get::<String, _>("field")?)?,
        term: row.try_get("term")?,
    })
}

/// Ids per `IN (…)` list when reading terms of many items.
const READ_BATCH: usize = 500;
/// Above this many items, `match_item_terms` reads the side's terms in one pass.
const FULL_SCAN_ITEMS: usize = 5_000;

fn side_from(s: &str) -> Result<Side, StoreError> {
    match s {
        "resource" => Ok(Side::Resource),
        "demand" => Ok(Side::Demand),
        other => Err(StoreError::Corrupt(format!("match side '{other}'"))),
    }
}

fn field_from(s: &str) -> Result<TermField, StoreError> {
    match s {
        "k" => Ok(TermField::Keyword),
        "c" => Ok(TermField::Category),
        "d" => Ok(TermField::Description),
        other => Err(StoreError::Corrupt(format!("match field '{other}'"))),
    }
}

impl Store {
    /// The version of the last committed change to the match index.
    pub async fn match_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM match_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("version")?)
    }

    /// Every item whose index entry changed after `version`, in version order.
    pub async fn match_changes(&self, version: i64) -> Result<Vec<MatchChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT side, item_id, version, live FROM match_items WHERE version > $1 \
             ORDER BY version",
        )
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let live: i64 = row.try_get("live")?;
                Ok(MatchChange {
                    side: side_from(&row.try_get::<String, _>("side")?)?,
                    item_id: row.try_get("item_id")?,
                    version: row.try_get("version")?,
                    live: live != 0,
                })
            })
            .collect()
    }

    /// The indexed terms of these items of one side: by id lists for a few items, in one pass
    /// over the side's terms for many (loading the index at start, catching up after a mass
    /// import), where hundreds of IN-list queries would be slow — PostgreSQL may plan each as a
    /// sequential scan.
    pub async fn match_item_terms(
        &self,
        side: Side,
        item_ids: &[String],
    ) -> Result<Vec<IndexedTerm>, StoreError> {
        if item_ids.len() > FULL_SCAN_ITEMS {
            self.match_item_terms_by_scan(side, item_ids).await
        } else {
            self.match_item_terms_by_ids(side, item_ids).await
        }
    }

    /// `match_item_terms` in one pass over the side's terms.
    pub async fn match_item_terms_by_scan(
        &self,
        side: Side,
        item_ids: &[String],
    ) -> Result<Vec<IndexedTerm>, StoreError> {
        let wanted: std::collections::HashSet<&str> = item_ids.iter().map(String::as_str).collect();
        let rows =
            sqlx::query("SELECT item_id, data_type, field, term FROM match_terms WHERE side = $1")
                .bind(side.as_str())
                .fetch_all(&self.pool)
                .await?;
        let mut terms = Vec::new();
        for row in rows {
            let item_id: String = row.try_get("item_id")?;
            if wanted.contains(item_id.as_str()) {
                terms.push(indexed_term(&row, item_id)?);
            }
        }
        Ok(terms)
    }

    /// `match_item_terms` by `IN (…)` lists of at most `READ_BATCH` ids.
    pub async fn match_item_terms_by_ids(
        &self,
        side: Side,
        item_ids: &[String],
    ) -> Result<Vec<IndexedTerm>, StoreError> {
        let mut terms = Vec::new();
        for chunk in item_ids.chunks(READ_BATCH) {
            let sql = format!(
                "SELECT item_id, data_type, field, term FROM match_terms \
                 WHERE side = $1 AND item_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(side.as_str());
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let item_id = row.try_get("item_id")?;
                terms.push(indexed_term(&row, item_id)?);
            }
        }
        Ok(terms)
    }
}
