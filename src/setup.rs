//! `tidemark setup`: creates, idempotently, the watermark table and one exactly-once union
//! view per logical table in the warehouse.

use tokio_postgres::Client;

use crate::catalog::RELATION_BY_NAME;

use crate::config::{Config, TableConfig};
use crate::error::{Error, Result};
use crate::model::sql::{quote_ident, quote_name, split_name};

/// What setup did, for the CLI to print.
#[derive(Debug, Clone, Default)]
pub struct SetupReport {
    /// One line per action.
    pub actions: Vec<String>,
}

/// The SQL forms of the server setup writes to: Redshift has no `now()` on compute nodes
/// (`getdate()` instead) and late-binding views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forms {
    /// `getdate()` or `now()`.
    pub now: &'static str,
    /// Views `WITH NO SCHEMA BINDING` over schema-qualified names, so a batch recompute that
    /// drops and recreates a layer table does not break (or drop) the view.
    pub late_binding: bool,
}

impl Forms {
    /// PostgreSQL's forms.
    pub const POSTGRES: Forms = Forms { now: "now()", late_binding: false };
    /// Redshift's forms (late binding unless configured off).
    pub const REDSHIFT: Forms = Forms { now: "getdate()", late_binding: true };

    /// The forms of the server `client` talks to (`version()` says Redshift or not), with
    /// `[warehouse] late_binding_views` over the default.
    async fn of(client: &Client, late_binding: Option<bool>) -> Result<Forms> {
        let version: String = client.query_one("SELECT version()::text", &[]).await?.get(0);
        let mut forms = match version.to_lowercase().contains("redshift") {
            true => Forms::REDSHIFT,
            false => Forms::POSTGRES,
        };
        forms.late_binding = late_binding.unwrap_or(forms.late_binding);
        Ok(forms)
    }
}

/// Connects with a writable session (setup is the only writer) and creates everything; run
/// twice it changes nothing.
pub async fn run(config: &Config) -> Result<SetupReport> {
    let client = connect(&config.warehouse).await?;
    let forms = Forms::of(&client, config.warehouse.late_binding_views).await?;
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
    client.batch_execute(&watermark_table_sql(wm, &ty, forms)).await?;
    report.actions.push(format!("watermark table {wm} ready"));
    let schema: String = client.query_one("SELECT current_schema()::text", &[]).await?.get(0);
    for t in &config.tables {
        client.execute(&seed_sql(wm, t, forms), &[&t.name]).await?;
        let cols = columns(&client, &t.batch_table).await?;
        client.batch_execute(&view_sql(wm, t, &cols, forms, &schema)).await?;
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
    let (schema, name) = split_name(table);
    let rows = client.query(&columns_sql(), &[&schema, &name]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Columns (name, type) of a table, found by schema and name.
fn columns_sql() -> String {
    format!(
        "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)::text \
         FROM pg_catalog.pg_attribute a {RELATION_BY_NAME} AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum"
    )
}

/// Checks that both layer tables exist with identical columns; returns the time column type.
async fn check_table(client: &Client, t: &TableConfig) -> Result<String> {
    let batch = columns(client, &t.batch_table).await?;
    let speed = columns(client, &t.speed_table).await?;
    for (table, cols) in [(&t.batch_table, &batch), (&t.speed_table, &speed)] {
        if cols.is_empty() {
            return Err(Error::Config(format!(
                "logical table {}: table {table} does not exist (or the setup user cannot see it)",
                t.name
            )));
        }
    }
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

/// The watermark table: one row per logical table.
pub fn watermark_table_sql(wm: &str, ty: &str, forms: Forms) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, batch_watermark {ty}, updated_at timestamptz NOT NULL DEFAULT {})",
        quote_name(wm),
        forms.now
    )
}

/// A new logical table starts with W at the oldest speed row (or, with an empty speed table,
/// just past the newest batch row); an existing row is never changed. `$1` is the name.
pub fn seed_sql(wm: &str, t: &TableConfig, forms: Forms) -> String {
    let col = quote_ident(&t.time_column);
    format!(
        "INSERT INTO {wm} (table_name, batch_watermark, updated_at) \
         SELECT $1::text, COALESCE((SELECT min({col}) FROM {speed}), (SELECT max({col}) FROM {batch}) + interval '1 microsecond', '1970-01-01'), {now} \
         WHERE NOT EXISTS (SELECT 1 FROM {wm} WHERE table_name = $1::text)",
        wm = quote_name(wm),
        speed = quote_name(&t.speed_table),
        batch = quote_name(&t.batch_table),
        now = forms.now,
    )
}

/// The exactly-once union view under the logical table's name; late-binding views name every
/// table with its schema (`schema` for unqualified names), as Redshift requires.
pub fn view_sql(
    wm: &str,
    t: &TableConfig,
    cols: &[(String, String)],
    forms: Forms,
    schema: &str,
) -> String {
    let name = |n: &str| match (forms.late_binding, n.contains('.')) {
        (true, false) => format!("{}.{}", quote_ident(schema), quote_ident(n)),
        _ => quote_name(n),
    };
    let list = cols.iter().map(|(n, _)| quote_ident(n)).collect::<Vec<_>>().join(", ");
    let w = format!(
        "(SELECT batch_watermark FROM {} WHERE table_name = '{}')",
        name(wm),
        t.name.replace('\'', "''")
    );
    let col = quote_ident(&t.time_column);
    format!(
        "CREATE OR REPLACE VIEW {view} AS SELECT {list} FROM {batch} WHERE {col} < {w} \
         UNION ALL SELECT {list} FROM {speed} WHERE {col} >= {w}{binding}",
        view = quote_name(&t.name),
        batch = name(&t.batch_table),
        speed = name(&t.speed_table),
        binding = if forms.late_binding { " WITH NO SCHEMA BINDING" } else { "" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableConfig {
        crate::config::Config::from_toml_str(
            "[warehouse]\nurl = \"postgres://h/db\"\n[[tables]]\nname = \"events\"\ntime_column = \"event_time\"\nbatch_table = \"events_batch\"\nspeed_table = \"rt.events_speed\"\n",
        )
        .unwrap()
        .tables
        .remove(0)
    }

    /// Every statement setup sends to Redshift, checked against its rules: no `now()`, no
    /// `regclass`, a late-binding view over schema-qualified names.
    #[test]
    fn redshift_setup_statements() {
        let t = table();
        let cols = vec![("id".to_string(), "bigint".to_string())];
        let rs = Forms::REDSHIFT;
        let all = [
            watermark_table_sql("tidemark_watermarks", "timestamp without time zone", rs),
            seed_sql("tidemark_watermarks", &t, rs),
            view_sql("tidemark_watermarks", &t, &cols, rs, "public"),
            columns_sql(),
        ];
        for sql in &all {
            assert!(!sql.contains("now()") && !sql.contains("regclass"), "{sql}");
        }
        assert_eq!(
            all[2],
            "CREATE OR REPLACE VIEW \"events\" AS SELECT \"id\" FROM \"public\".\"events_batch\" \
             WHERE \"event_time\" < (SELECT batch_watermark FROM \"public\".\"tidemark_watermarks\" WHERE table_name = 'events') \
             UNION ALL SELECT \"id\" FROM \"rt\".\"events_speed\" WHERE \"event_time\" >= \
             (SELECT batch_watermark FROM \"public\".\"tidemark_watermarks\" WHERE table_name = 'events') WITH NO SCHEMA BINDING"
        );
        assert!(all[1].contains("getdate()") && all[0].contains("DEFAULT getdate()"));
        let pg = view_sql("tidemark_watermarks", &t, &cols, Forms::POSTGRES, "public");
        assert!(pg.contains("FROM \"events_batch\"") && !pg.contains("SCHEMA BINDING"));
    }
}
