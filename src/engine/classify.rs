//! Classifying a statement: local, pass-through (and why) or split over one logical table.

use super::*;

impl Engine {
    /// Classifies one statement (errors: 42601 syntax, 25006 writes).
    pub fn classify(&self, sql: &str) -> Result<Class> {
        if sql.contains('\0') {
            return Err(Error::data(
                "22021",
                "invalid byte sequence for encoding \"UTF8\": 0x00 (SQL text cannot hold NUL)",
            ));
        }
        if plan::copy::is_copy(sql) {
            return Ok(Class::Local(Local::CopyOut(plan::copy::parse(sql)?)));
        }
        if let Some(reset) = plan::local::parse_reset(sql) {
            return Ok(Class::Local(reset));
        }
        if let Some(m) = plan::local::parse_move(sql) {
            let (name, count) = m?;
            return Ok(Class::Local(Local::Move { name, count }));
        }
        let stmts = match plan::parse(self.dialect(), sql) {
            Ok(s) => s,
            // The parser does not know every PostgreSQL form; the warehouse (whose sessions
            // are read-only) gives the authoritative answer or error.
            Err(e) if self.dialect() == Dialect::Postgres && !sql.trim().is_empty() => {
                return Ok(Class::Passthrough { reason: format!("not parsed by tidemark: {e}") })
            }
            Err(e) => return Err(e),
        };
        let stmt = match <[Statement; 1]>::try_from(stmts) {
            Ok([stmt]) => stmt,
            Err(v) if v.is_empty() => return Err(Error::Syntax("empty query".into())),
            Err(v) => {
                return Err(Error::Syntax(format!("expected one statement, got {}", v.len())))
            }
        };
        if let Some(kind) = plan::write_kind(&stmt) {
            return Err(Error::ReadOnly(kind));
        }
        Ok(match stmt {
            // Redshift's catalog listings; read-only, answered by the warehouse.
            Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
                if self.dialect() == Dialect::Redshift =>
            {
                Class::Passthrough { reason: "a catalog listing (SHOW)".into() }
            }
            Statement::Query(q) => {
                if let Some(calls) = plan::local::setting_calls(&q) {
                    return Ok(Class::Local(Local::Settings(calls)));
                }
                match self.logical_table(&Statement::Query(q.clone())) {
                    Ok(table) => Class::Split { query: q, table },
                    Err(reason) => Class::Passthrough { reason },
                }
            }
            other => Class::Local(plan::local::local_of(other)?),
        })
    }

    /// The single logical table a statement reads, or why it is not a split candidate.
    pub(super) fn logical_table(&self, stmt: &Statement) -> std::result::Result<String, String> {
        let mut hits: Vec<String> = Vec::new();
        let _ = visit_relations(stmt, |name| {
            for t in self.catalog.tables() {
                if names_table(name, t) {
                    hits.push(t.name.clone());
                }
            }
            ControlFlow::<()>::Continue(())
        });
        match hits.len() {
            0 => Err("no logical table".into()),
            1 => Ok(hits.remove(0)),
            _ => Err("logical tables referenced more than once".into()),
        }
    }
}
