//! Installed plugin packages, active versions, defaults, per-publication billing rules and the
//! audit trail of plugin calls. Every change bumps `plugin_state.generation` in the same
//! transaction, so that each server notices it and reloads its registry.

use sqlx::Row;
use sqlx::any::AnyRow;

use liutong_plugin_runtime::PluginKind;

use super::matching::value_rows;
use super::{Constraint, Store, StoreError, Tx};
use crate::domain::plugins::{
    InstalledPlugin, InstalledVersion, PluginCallFilter, PluginCallRecord, ResourceRule,
};

const PLUGIN_VERSIONS_PKEY: Constraint = Constraint {
    name: "plugin_versions_pkey",
    sqlite_columns: "plugin_versions.plugin_id, plugin_versions.version",
};
const RESOURCE_BILLING_RESOURCE_FKEY: Constraint = Constraint {
    name: "resource_billing_resource_fkey",
    sqlite_columns: "",
};
const RESOURCE_POLICY_RESOURCE_FKEY: Constraint = Constraint {
    name: "resource_policy_resource_fkey",
    sqlite_columns: "",
};

/// The per-publication plugin choices: one table per plugin kind that has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleTable {
    /// `resource_billing`: the billing rule of a publication.
    Billing,
    /// `resource_policy`: the policy plugin of a controlled publication.
    Policy,
}

impl RuleTable {
    fn table(self) -> &'static str {
        match self {
            RuleTable::Billing => "resource_billing",
            RuleTable::Policy => "resource_policy",
        }
    }

    fn resource_fkey(self) -> Constraint {
        match self {
            RuleTable::Billing => RESOURCE_BILLING_RESOURCE_FKEY,
            RuleTable::Policy => RESOURCE_POLICY_RESOURCE_FKEY,
        }
    }
}

/// What installing a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum VersionInsert {
    Installed,
    /// This plugin already has this version; nothing was written.
    VersionExists,
}

/// Whether a billing rule was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum RuleWrite {
    Stored,
    /// The resource does not exist (any more); nothing was written.
    UnknownResource,
}

fn kind_of(text: &str) -> Result<PluginKind, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown plugin kind '{text}'")))
}

const VERSION_COLUMNS: &str = "plugin_id, version, kind, wit_version, component_sha256, \
     publisher, key_id, description, manifest, installed_by, installed_at";

fn version_row(r: &AnyRow) -> Result<InstalledVersion, StoreError> {
    Ok(InstalledVersion {
        plugin_id: r.try_get("plugin_id")?,
        version: r.try_get("version")?,
        kind: kind_of(&r.try_get::<String, _>("kind")?)?,
        wit_version: r.try_get("wit_version")?,
        component_sha256: r.try_get("component_sha256")?,
        publisher: r.try_get("publisher")?,
        key_id: r.try_get("key_id")?,
        description: r.try_get("description")?,
        manifest: r.try_get("manifest")?,
        installed_by: r.try_get("installed_by")?,
        installed_at: r.try_get("installed_at")?,
    })
}

fn plugin_row(r: &AnyRow) -> Result<InstalledPlugin, StoreError> {
    let enabled: i64 = r.try_get("enabled")?;
    Ok(InstalledPlugin {
        plugin_id: r.try_get("plugin_id")?,
        kind: kind_of(&r.try_get::<String, _>("kind")?)?,
        active_version: r.try_get("active_version")?,
        enabled: enabled != 0,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn bump_generation(tx: &mut Tx) -> Result<(), StoreError> {
    sqlx::query("UPDATE plugin_state SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// The counter every plugin change bumps.
    pub async fn plugin_generation(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT generation FROM plugin_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("generation")?)
    }

    pub async fn plugin_version(
        &self,
        plugin_id: &str,
        version: &str,
    ) -> Result<Option<InstalledVersion>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1 AND version = $2"
        )))
        .bind(plugin_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    pub async fn plugin_versions(&self) -> Result<Vec<InstalledVersion>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM plugin_versions ORDER BY plugin_id, installed_at"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    /// The signed package bytes of one version, exactly as installed.
    pub async fn plugin_package(
        &self,
        plugin_id: &str,
        version: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT package FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
        )
        .bind(plugin_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("package")).transpose()?)
    }

    pub async fn plugins(&self) -> Result<Vec<InstalledPlugin>, StoreError> {
        let rows = sqlx::query(
            "SELECT plugin_id, kind, active_version, enabled, updated_at FROM plugins \
             ORDER BY plugin_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plugin_row).collect()
    }

    pub async fn plugin(&self, plugin_id: &str) -> Result<Option<InstalledPlugin>, StoreError> {
        let row = sqlx::query(
            "SELECT plugin_id, kind, active_version, enabled, updated_at FROM plugins \
             WHERE plugin_id = $1",
        )
        .bind(plugin_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(plugin_row).transpose()
    }

    /// (kind, plugin id) of every default.
    pub async fn plugin_defaults(&self) -> Result<Vec<(PluginKind, String)>, StoreError> {
        let rows = sqlx::query("SELECT kind, plugin_id FROM plugin_defaults ORDER BY kind")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    kind_of(&r.try_get::<String, _>("kind")?)?,
                    r.try_get("plugin_id")?,
                ))
            })
            .collect()
    }

    /// Stores a new version and makes it the plugin's active one (a new plugin id starts
    /// enabled), unless that version exists.
    pub async fn install_plugin_version(
        &self,
        row: &InstalledVersion,
        package: &[u8],
    ) -> Result<VersionInsert, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO plugin_versions ({VERSION_COLUMNS}, package) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(&row.plugin_id)
        .bind(&row.version)
        .bind(row.kind.as_str())
        .bind(&row.wit_version)
        .bind(&row.component_sha256)
        .bind(&row.publisher)
        .bind(&row.key_id)
        .bind(&row.description)
        .bind(&row.manifest)
        .bind(&row.installed_by)
        .bind(row.installed_at)
        .bind(package)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[PLUGIN_VERSIONS_PKEY]));
        match inserted {
            Ok(_) => {}
            Err(StoreError::Unique(_)) => return Ok(VersionInsert::VersionExists),
            Err(e) => return Err(e),
        }
        sqlx::query(
            "INSERT INTO plugins (plugin_id, kind, active_version, enabled, updated_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (plugin_id) DO UPDATE \
               SET active_version = excluded.active_version, updated_at = excluded.updated_at",
        )
        .bind(&row.plugin_id)
        .bind(row.kind.as_str())
        .bind(&row.version)
        .bind(row.installed_at)
        .execute(&mut *tx)
        .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(VersionInsert::Installed)
    }

    /// Returns false when the plugin id is unknown.
    pub async fn set_plugin_enabled(
        &self,
        plugin_id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("UPDATE plugins SET enabled = $2, updated_at = $3 WHERE plugin_id = $1")
                .bind(plugin_id)
                .bind(i64::from(enabled))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Makes an installed version the active one. Returns false when the plugin id is
    /// unknown; the version must be installed (a foreign key enforces it).
    pub async fn activate_plugin_version(
        &self,
        plugin_id: &str,
        version: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE plugins SET active_version = $2, updated_at = $3 WHERE plugin_id = $1",
        )
        .bind(plugin_id)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Makes an installed plugin the default of its kind (a foreign key enforces it exists).
    pub async fn set_plugin_default(
        &self,
        kind: PluginKind,
        plugin_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO plugin_defaults (kind, plugin_id) VALUES ($1, $2) \
             ON CONFLICT (kind) DO UPDATE SET plugin_id = excluded.plugin_id",
        )
        .bind(kind.as_str())
        .bind(plugin_id)
        .execute(&mut *tx)
        .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores the plugin (and its config) chosen for one resource in `table`.
    pub async fn set_resource_rule(
        &self,
        table: RuleTable,
        row: &ResourceRule,
        updated_by: &str,
        now: i64,
    ) -> Result<RuleWrite, StoreError> {
        let mut tx = self.begin_write().await?;
        let written = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (resource_id, plugin_id, config, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (resource_id) DO UPDATE \
               SET plugin_id = excluded.plugin_id, config = excluded.config, \
                   updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            table.table()
        )))
        .bind(&row.resource_id)
        .bind(&row.plugin_id)
        .bind(&row.config)
        .bind(updated_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[table.resource_fkey()]));
        match written {
            Ok(_) => {}
            Err(StoreError::ForeignKey(_)) => return Ok(RuleWrite::UnknownResource),
            Err(e) => return Err(e),
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(RuleWrite::Stored)
    }

    /// Every rule of `table`.
    pub async fn resource_rules(&self, table: RuleTable) -> Result<Vec<ResourceRule>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT resource_id, plugin_id, config FROM {}",
            table.table()
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ResourceRule {
                    resource_id: r.try_get("resource_id")?,
                    plugin_id: r.try_get("plugin_id")?,
                    config: r.try_get("config")?,
                })
            })
            .collect()
    }

    /// Appends audited calls in one transaction.
    pub async fn insert_plugin_calls(&self, calls: &[PluginCallRecord]) -> Result<(), StoreError> {
        if calls.is_empty() {
            return Ok(());
        }
        // Many rows per statement: the batch holds SQLite's write turn for a few statements,
        // not one per call.
        const ROWS_PER_STATEMENT: usize = 64;
        const WIDTH: usize = 14;
        let mut tx = self.begin_write().await?;
        for chunk in calls.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO plugin_calls (id, at, plugin_id, version, component_sha256, kind, \
                   operation, caller, subject, input_sha256, outcome, error, fuel_used, \
                   duration_us) VALUES {}",
                value_rows(self.backend(), chunk.len(), WIDTH)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                query = query
                    .bind(&c.id)
                    .bind(c.at)
                    .bind(&c.plugin_id)
                    .bind(&c.version)
                    .bind(&c.component_sha256)
                    .bind(c.kind.as_str())
                    .bind(&c.operation)
                    .bind(&c.caller)
                    .bind(&c.subject)
                    .bind(&c.input_sha256)
                    .bind(&c.outcome)
                    .bind(&c.error)
                    .bind(c.fuel_used)
                    .bind(c.duration_us);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audited calls, newest first, and how many match the filter.
    pub async fn plugin_calls(
        &self,
        filter: &PluginCallFilter,
    ) -> Result<(Vec<PluginCallRecord>, i64), StoreError> {
        // Both filters are optional: `$1 IS NULL OR …` keeps one statement for every case.
        let condition = "($1 IS NULL OR plugin_id = $1) AND ($2 IS NULL OR outcome = $2)";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, at, plugin_id, version, component_sha256, kind, operation, caller, \
               subject, input_sha256, outcome, error, fuel_used, duration_us \
             FROM plugin_calls WHERE {condition} ORDER BY at DESC, id DESC LIMIT $3 OFFSET $4"
        )))
        .bind(&filter.plugin_id)
        .bind(&filter.outcome)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM plugin_calls WHERE {condition}"
        )))
        .bind(&filter.plugin_id)
        .bind(&filter.outcome)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let calls = rows
            .iter()
            .map(|r| {
                Ok(PluginCallRecord {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    plugin_id: r.try_get("plugin_id")?,
                    version: r.try_get("version")?,
                    component_sha256: r.try_get("component_sha256")?,
                    kind: kind_of(&r.try_get::<String, _>("kind")?)?,
                    operation: r.try_get("operation")?,
                    caller: r.try_get("caller")?,
                    subject: r.try_get("subject")?,
                    input_sha256: r.try_get("input_sha256")?,
                    outcome: r.try_get("outcome")?,
                    error: r.try_get("error")?,
                    fuel_used: r.try_get("fuel_used")?,
                    duration_us: r.try_get("duration_us")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((calls, total))
    }
}
