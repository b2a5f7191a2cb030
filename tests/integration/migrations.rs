//! The two migration sets (host/migrations/sqlite and host/migrations/postgres) define the same
//! schema: after migrating a fresh database of each kind, their tables, columns (name,
//! nullability, type family), primary keys, unique constraints and indexes (name, columns,
//! uniqueness, partial or not) are compared as the databases themselves report them.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use crate::support::{Backend, TestDb};

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// name → (type family, nullable)
    columns: BTreeMap<String, (&'static str, bool)>,
    primary_key: Vec<String>,
    unique: BTreeSet<Vec<String>>,
    /// Indexes created with CREATE [UNIQUE] INDEX: name → (columns, unique, partial).
    indexes: BTreeMap<String, (Vec<String>, bool, bool)>,
}

type Schema = BTreeMap<String, Table>;

/// What a declared type stores, in both dialects' words.
fn family(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") {
        "integer"
    } else if t.contains("char") || t.contains("text") || t.contains("clob") {
        "text"
    } else if t.contains("real") || t.contains("floa") || t.contains("doub") {
        "real"
    } else if t.contains("blob") || t.contains("bytea") {
        "blob"
    } else if t.contains("bool") {
        "boolean"
    } else {
        "other"
    }
}

async fn connect(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connects")
}

async fn migrated(backend: Backend) -> TestDb {
    let db = TestDb::create(backend).await;
    let store = liutong::store::Store::connect(&db.url(), 1)
        .await
        .expect("store");
    store.migrate().await.expect("migrations apply");
    db
}

async fn sqlite_schema(url: &str) -> Schema {
    let mut conn = connect(url).await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut schema = Schema::new();
    for name in names {
        let mut table = Table::default();
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\" AS not_null, pk FROM pragma_table_info($1)",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("columns");
        let mut primary: Vec<(i64, String)> = Vec::new();
        for c in columns {
            let column: String = c.get("name");
            let pk: i64 = c.get("pk");
            // A primary key column cannot be NULL in PostgreSQL; SQLite only says so when
            // NOT NULL is written out.
            let nullable = c.get::<i64, _>("not_null") == 0 && pk == 0;
            if pk > 0 {
                primary.push((pk, column.clone()));
            }
            table
                .columns
                .insert(column, (family(&c.get::<String, _>("type")), nullable));
        }
        primary.sort();
        table.primary_key = primary.into_iter().map(|(_, c)| c).collect();
        let indexes = sqlx::query(
            "SELECT name, \"unique\" AS is_unique, origin, partial FROM pragma_index_list($1)",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        for index in indexes {
            let index_name: String = index.get("name");
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index_name)
                    .fetch_all(&mut conn)
                    .await
                    .expect("index columns");
            let unique = index.get::<i64, _>("is_unique") == 1;
            let partial = index.get::<i64, _>("partial") == 1;
            match index.get::<String, _>("origin").as_str() {
                "c" => {
                    table.indexes.insert(index_name, (columns, unique, partial));
                }
                "u" => {
                    table.unique.insert(columns);
                }
                _ => {} // the primary key, read above
            }
        }
        schema.insert(name, table);
    }
    schema
}

async fn postgres_schema(url: &str) -> Schema {
    let mut conn = connect(url).await;
    let mut schema = Schema::new();
    let columns = sqlx::query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
                c.data_type::text AS data_type, c.is_nullable::text AS is_nullable \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
           AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    for c in columns {
        let table: String = c.get("table_name");
        schema.entry(table).or_default().columns.insert(
            c.get("column_name"),
            (
                family(&c.get::<String, _>("data_type")),
                c.get::<String, _>("is_nullable") == "YES",
            ),
        );
    }
    let indexes = sqlx::query(
        "SELECT t.relname::text AS table_name, i.relname::text AS index_name, \
                ix.indisunique AS is_unique, ix.indisprimary AS is_primary, \
                (ix.indpred IS NOT NULL) AS partial, \
                EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ix.indexrelid) \
                  AS constraint_backed, \
                array_to_string(ARRAY( \
                  SELECT a.attname::text \
                  FROM unnest(ix.indkey) WITH ORDINALITY AS key(attnum, position) \
                  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = key.attnum \
                  ORDER BY key.position), ',') AS columns \
         FROM pg_index ix \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    for index in indexes {
        let table = schema
            .entry(index.get::<String, _>("table_name"))
            .or_default();
        let columns: Vec<String> = index
            .get::<String, _>("columns")
            .split(',')
            .map(str::to_owned)
            .collect();
        let unique: bool = index.get("is_unique");
        if index.get::<bool, _>("is_primary") {
            table.primary_key = columns;
        } else if index.get::<bool, _>("constraint_backed") {
            table.unique.insert(columns);
        } else {
            table.indexes.insert(
                index.get("index_name"),
                (columns, unique, index.get::<bool, _>("partial")),
            );
        }
    }
    schema
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_define_the_same_schema() {
    let sqlite_db = migrated(Backend::Sqlite).await;
    let postgres_db = migrated(Backend::Postgres).await;
    let sqlite = sqlite_schema(&sqlite_db.url()).await;
    let postgres = postgres_schema(&postgres_db.url()).await;
    assert!(sqlite.len() >= 10, "too few tables read: {sqlite:?}");
    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "the two migration sets create different tables"
    );
    let mut differences = Vec::new();
    for (name, table) in &sqlite {
        let other = &postgres[name];
        if table != other {
            differences.push(format!(
                "table {name}:\n  SQLite:     {table:?}\n  PostgreSQL: {other:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
