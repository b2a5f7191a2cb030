//! The PostgreSQL server that tests and benchmarks create their throwaway databases on: one
//! variable, `LIUTONG_TEST_POSTGRES` (an admin URL; `skip` makes benchmarks skip PostgreSQL).
//! `LIUTONG_BENCH_POSTGRES`, its former name for benchmarks, is still read when it is unset.

pub const VARIABLE: &str = "LIUTONG_TEST_POSTGRES";
const FORMER: &str = "LIUTONG_BENCH_POSTGRES";
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The admin URL (tests always run on PostgreSQL: they do not ask `enabled`).
pub fn admin_url() -> String {
    std::env::var(VARIABLE)
        .or_else(|_| std::env::var(FORMER))
        .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Whether to use PostgreSQL at all (benchmarks): anything but `skip`.
pub fn enabled() -> bool {
    admin_url() != "skip"
}

/// The URL of database `name` on the server of `admin`.
pub fn database_url(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

pub async fn connect_admin(admin: &str) -> Result<sqlx::AnyConnection, String> {
    sqlx::any::install_default_drivers();
    <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
        .await
        .map_err(|e| {
            format!(
                "cannot reach PostgreSQL at {admin}: {e}. Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 or point {VARIABLE} elsewhere."
            )
        })
}

/// Creates a fresh database named `<prefix>_<uuid>` on the server of `admin`; returns its name.
pub async fn create_database(admin: &str, prefix: &str) -> Result<String, String> {
    let mut conn = connect_admin(admin).await?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .map_err(|e| format!("cannot create database {name} on {admin}: {e}"))?;
    Ok(name)
}

/// Removes a database made by `create_database`, even while connections to it are open.
pub async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut conn) = connect_admin(admin).await {
        let _ = sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
        )
        .await;
    }
}
