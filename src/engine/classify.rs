//! Classifying a statement: through the engine's parse cache, so a text is parsed once.

use super::*;

impl Engine {
    /// The parsed and classified form of `sql`, parsed on its first use only (counted in
    /// `tidemark_sql_parses_total`).
    pub(super) fn parsed(&self, sql: &str) -> Arc<Parsed> {
        let (parsed, built) = Cost::time(Phase::Parse, || {
            self.parses.get(self.dialect(), self.catalog.tables(), sql)
        });
        if built {
            self.metrics.parse();
        }
        parsed
    }

    /// Classifies one statement (errors: 42601 syntax, 25006 writes).
    pub fn classify(&self, sql: &str) -> Result<Class> {
        self.parsed(sql).class.clone()
    }
}
