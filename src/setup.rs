//! `tidemark setup`: creates, idempotently, the watermark table and one exactly-once union
//! view per logical table in the warehouse.

use tokio_postgres::Client;

use crate::catalog::{quote_ident, quote_name};
use crate::config::{Config, TableConfig};
use crate::error::{Error, Result};

/// What setup did, for the CLI to print.
#[derive(Debug, Clone, Default)]
pub struct SetupReport {
    /// One line per action.
    pub actions: Vec<String>,
}

/// Connects with a writable session (setup is the only writer) and creates everything.
pub async fn run(config: &Config) -> Result<SetupReport> {
    let client = connect(&config.warehouse).await?;
    let mut report = SetupReport::default();
    let wm = &config.warehouse.watermark_table;
    let mut time_type: Option<String> = None;
    for t in &config.tables {
        let ty = check_table(&client, t).await?;
        if let Some(prev) = &time_type {
            if *prev != ty {
                return Err(Error::Config(format!(
                    "all logical tables must share one time column type (the watermark table has one column): {prev} vs {ty} for {}",
                    t.name
                )));
            }
        }
        time_type = Some(ty);
    }
    let ty = time_type.unwrap_or_else(|| "timestamp".into());
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, batch_watermark {ty}, updated_at timestamptz NOT NULL DEFAULT now())",
            quote_name(wm)
        ))
        .await?;
    report.actions.push(format!("watermark table {wm} ready"));
    for t in &config.tables {
        seed_watermark(&client, wm, t).await?;
        client.batch_execute(&view_sql(wm, t, &columns(&client, &t.batch_table).await?)).await?;
        report
            .actions
            .push(format!("view {} ready over {} and {}", t.name, t.batch_table, t.speed_table));
    }
    Ok(report)
}

/// A connection with the warehouse's TLS settings (setup writes, so not from the pool).
async fn connect(w: &crate::config::Warehouse) -> Result<Client> {
    let (mut pg, tls) = crate::exec::tls::warehouse_connection(w)?;
    let url_password = pg.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
    let credentials = crate::exec::credentials::Credentials::new(
        w.credentials.as_ref(),
        url_password,
        pg.get_dbname().map(str::to_string),
    )?;
    crate::exec::credentials::Credentials::apply(&credentials.current().await?, &mut pg);
    let (client, conn) = pg.connect(tls.connector()).await.map_err(|e| match e.as_db_error() {
        Some(_) => Error::from(e),
        None => Error::Unavailable(format!(
            "cannot connect to the warehouse: {}",
            crate::error::with_causes(&e)
        )),
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "setup connection closed");
        }
    });
    Ok(client)
}

/// Column names and types of a table, in order.
async fn columns(client: &Client, table: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)::text \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            &[&quote_name(table)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Checks that both layer tables exist with identical columns; returns the time column type.
async fn check_table(client: &Client, t: &TableConfig) -> Result<String> {
    let batch = columns(client, &t.batch_table).await?;
    let speed = columns(client, &t.speed_table).await?;
    if batch != speed {
        let show = |c: &[(String, String)]| {
            c.iter().map(|(n, ty)| format!("{n} {ty}")).collect::<Vec<_>>().join(", ")
        };
        return Err(Error::Config(format!(
            "logical table {}: batch table {} ({}) and speed table {} ({}) must have the same columns in the same order",
            t.name,
            t.batch_table,
            show(&batch),
            t.speed_table,
            show(&speed)
        )));
    }
    batch.iter().find(|(n, _)| *n == t.time_column).map(|(_, ty)| ty.clone()).ok_or_else(|| {
        Error::Config(format!(
            "logical table {}: no column {} in {}",
            t.name, t.time_column, t.batch_table
        ))
    })
}

/// A new logical table starts with W at the oldest speed row (or, with an empty speed table,
/// just past the newest batch row); an existing row is never changed.
async fn seed_watermark(client: &Client, wm: &str, t: &TableConfig) -> Result<()> {
    let col = quote_ident(&t.time_column);
    let sql = format!(
        "INSERT INTO {wm} (table_name, batch_watermark, updated_at) \
         SELECT $1::text, COALESCE((SELECT min({col}) FROM {speed}), (SELECT max({col}) FROM {batch}) + interval '1 microsecond', '1970-01-01'), now() \
         WHERE NOT EXISTS (SELECT 1 FROM {wm} WHERE table_name = $1::text)",
        wm = quote_name(wm),
        speed = quote_name(&t.speed_table),
        batch = quote_name(&t.batch_table),
    );
    client.execute(&sql, &[&t.name]).await?;
    Ok(())
}

/// The exactly-once union view under the logical table's name.
pub fn view_sql(wm: &str, t: &TableConfig, cols: &[(String, String)]) -> String {
    let list = cols.iter().map(|(n, _)| quote_ident(n)).collect::<Vec<_>>().join(", ");
    let w = format!(
        "(SELECT batch_watermark FROM {} WHERE table_name = '{}')",
        quote_name(wm),
        t.name.replace('\'', "''")
    );
    let col = quote_ident(&t.time_column);
    format!(
        "CREATE OR REPLACE VIEW {view} AS SELECT {list} FROM {batch} WHERE {col} < {w} \
         UNION ALL SELECT {list} FROM {speed} WHERE {col} >= {w}",
        view = quote_name(&t.name),
        batch = quote_name(&t.batch_table),
        speed = quote_name(&t.speed_table),
    )
}
