//! The keyword-matching index: `match_terms` holds the normalised terms of published items.

use std::collections::BTreeSet;

use sqlx::Row;
use sqlx::any::AnyArguments;
use sqlx::{Arguments, AssertSqlSafe};

use super::{Store, StoreError, Tx};
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

pub(crate) fn bind<'q, T>(args: &mut AnyArguments, value: T) -> Result<(), StoreError>
where
    T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    args.add(value)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
}

pub(crate) async fn delete_terms(tx: &mut Tx, side: Side, item_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM match_terms WHERE side = $1 AND item_id = $2")
        .bind(side.as_str())
        .bind(item_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Replaces an item's index entries with `terms`.
pub(crate) async fn replace_terms(
    tx: &mut Tx,
    side: Side,
    item_id: &str,
    data_type: &str,
    terms: &Terms,
) -> Result<(), StoreError> {
    delete_terms(tx, side, item_id).await?;
    let entries: Vec<(TermField, &str)> = terms.entries().collect();
    for chunk in entries.chunks(INSERT_BATCH) {
        let mut sql =
            String::from("INSERT INTO match_terms (side, data_type, field, term, item_id) VALUES ");
        let mut args = AnyArguments::default();
        for (i, (field, term)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&placeholders(i * 5 + 1, 5));
            sql.push(')');
            bind(&mut args, side.as_str())?;
            bind(&mut args, data_type.to_owned())?;
            bind(&mut args, field.code())?;
            bind(&mut args, (*term).to_owned())?;
            bind(&mut args, item_id.to_owned())?;
        }
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// One candidate of a match query with its per-field overlap counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub item_id: String,
    pub shared_keywords: i64,
    pub shared_categories: i64,
    pub shared_description: i64,
    pub score: i64,
}

/// What a match query asks: items of `side` with this data type sharing at least one keyword.
pub struct MatchQuery<'a> {
    pub side: Side,
    pub data_type: &'a str,
    pub terms: &'a Terms,
    pub exclude_item: Option<&'a str>,
    pub limit: i64,
    pub offset: i64,
}

impl Store {
    /// Ranks the published items sharing a keyword with `q.terms`, best first, one page at a time.
    /// Returns the page and the total number of matches.
    pub async fn match_candidates(
        &self,
        q: &MatchQuery<'_>,
    ) -> Result<(Vec<Candidate>, i64), StoreError> {
        if q.terms.keywords.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut args = AnyArguments::default();
        bind(&mut args, q.side.as_str())?;
        bind(&mut args, q.data_type.to_owned())?;
        let mut next = 3;
        let mut field_filter =
            |field: TermField, values: &BTreeSet<String>, args: &mut AnyArguments| {
                if values.is_empty() {
                    return Ok::<_, StoreError>(None);
                }
                let clause = format!(
                    "(field = '{}' AND term IN ({}))",
                    field.code(),
                    placeholders(next, values.len())
                );
                next += values.len();
                for v in values {
                    bind(args, v.clone())?;
                }
                Ok(Some(clause))
            };
        let clauses: Vec<String> = [
            field_filter(TermField::Keyword, &q.terms.keywords, &mut args)?,
            field_filter(TermField::Category, &q.terms.categories, &mut args)?,
            field_filter(TermField::Description, &q.terms.description, &mut args)?,
        ]
        .into_iter()
        .flatten()
        .collect();
        let exclude = match q.exclude_item {
            Some(id) => {
                bind(&mut args, id.to_owned())?;
                let clause = format!(" AND item_id <> ${next}");
                next += 1;
                clause
            }
            None => String::new(),
        };
        let (k, c, d) = (
            crate::domain::matching::KEYWORD_WEIGHT,
            crate::domain::matching::CATEGORY_WEIGHT,
            crate::domain::matching::DESCRIPTION_WEIGHT,
        );
        bind(&mut args, q.limit)?;
        bind(&mut args, q.offset)?;
        let sql = format!(
            "WITH hits AS ( \
               SELECT item_id, \
                 SUM(CASE WHEN field = 'k' THEN 1 ELSE 0 END) AS sk, \
                 SUM(CASE WHEN field = 'c' THEN 1 ELSE 0 END) AS sc, \
                 SUM(CASE WHEN field = 'd' THEN 1 ELSE 0 END) AS sd \
               FROM match_terms \
               WHERE side = $1 AND data_type = $2 AND ({}){exclude} \
               GROUP BY item_id \
             ), ranked AS ( \
               SELECT item_id, sk, sc, sd, ({k} * sk + {c} * sc + {d} * sd) AS score \
               FROM hits WHERE sk > 0 \
             ) \
             SELECT item_id, CAST(sk AS BIGINT) AS sk, CAST(sc AS BIGINT) AS sc, \
                    CAST(sd AS BIGINT) AS sd, CAST(score AS BIGINT) AS score, \
                    CAST(COUNT(*) OVER () AS BIGINT) AS total \
             FROM ranked ORDER BY score DESC, item_id DESC LIMIT ${} OFFSET ${}",
            clauses.join(" OR "),
            next,
            next + 1
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await?;
        let mut total = 0;
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            total = row.try_get("total")?;
            page.push(Candidate {
                item_id: row.try_get("item_id")?,
                shared_keywords: row.try_get("sk")?,
                shared_categories: row.try_get("sc")?,
                shared_description: row.try_get("sd")?,
                score: row.try_get("score")?,
            });
        }
        if page.is_empty() && q.offset > 0 {
            total = self.count_matches(q).await?;
        }
        Ok((page, total))
    }

    /// The total alone, for a page past the end (where the windowed count has no row to ride on).
    async fn count_matches(&self, q: &MatchQuery<'_>) -> Result<i64, StoreError> {
        let page = MatchQuery {
            side: q.side,
            data_type: q.data_type,
            terms: q.terms,
            exclude_item: q.exclude_item,
            limit: 1,
            offset: 0,
        };
        let (first, total) = Box::pin(self.match_candidates(&page)).await?;
        Ok(if first.is_empty() { 0 } else { total })
    }
}
