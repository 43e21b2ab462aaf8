//! Who may run what: sessions for a user, authorization of a statement against the grants.

use super::*;

impl Engine {
    /// Users, grants and API keys.
    pub fn access(&self) -> &crate::access::Access {
        &self.access
    }

    /// A session of `frontend` for `user` (empty: anonymous), with the user's own statement
    /// timeout.
    pub fn session_for(&self, frontend: &'static str, user: &str) -> Session {
        let mut s = Session::new(frontend);
        s.user = user.to_string();
        s.user_timeout = self
            .config
            .users
            .iter()
            .find(|u| u.name == user)
            .and_then(|u| u.statement_timeout)
            .map(crate::config::Span::get);
        s
    }

    /// Refuses (42501) what a restricted user may not read, before anything runs; statements
    /// of restricted users must parse.
    pub async fn authorize(&self, sql: &str, user: &str, search_path: Option<&str>) -> Result<()> {
        match self.access.restricted(user) {
            Some(grants) => self.check_grants(&self.parsed(sql), grants, user, search_path).await,
            None => Ok(()),
        }
    }

    /// Checks the statements of `parsed` against a restricted user's `grants`.
    pub(super) async fn check_grants(
        &self,
        parsed: &Parsed,
        grants: &crate::access::Grants,
        user: &str,
        search_path: Option<&str>,
    ) -> Result<()> {
        let stmts = match &parsed.reads {
            Reads::Statements(stmts) => stmts,
            // COPY is parsed by tidemark itself (what it reads is its query)
            Reads::BadCopy(e) => return Err(e.clone()),
            Reads::Unparsed(e) => {
                return Err(Error::PermissionDenied(format!(
                    "permission denied: statements of user {user:?} must parse so their permissions can be checked ({e})"
                )))
            }
        };
        let catalog = self.catalog_names().await?;
        let resolution = crate::access::Resolution { search_path, catalog: &catalog };
        crate::access::check(grants, stmts, &self.config.tables, &resolution)
    }

    /// The warehouse catalog's names the grants check resolves against, read again after a
    /// minute (a function created since is checked against every schema of the search path
    /// until then); the last ones read stay in use while the warehouse does not answer.
    pub(super) async fn catalog_names(&self) -> Result<Arc<crate::access::CatalogNames>> {
        const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);
        let mut held = self.catalog_names.lock().await;
        if let Some((at, names)) = &*held {
            if at.elapsed() < FRESH_FOR {
                return Ok(names.clone());
            }
        }
        let sql = crate::access::CatalogNames::QUERY;
        let read = match self.warehouse.fetch(sql, &[], &[], &SessionParams::new()).await {
            Ok(f) => f,
            Err(e) => return held.as_ref().map(|(_, n)| n.clone()).ok_or(e),
        };
        let text = |v: Option<Value>| match v {
            Some(Value::Text(t)) => t,
            _ => String::new(),
        };
        let rows = read.rows.into_iter().map(|r| {
            let mut r = r.into_iter();
            (text(r.next()), text(r.next()), text(r.next()))
        });
        let names = Arc::new(crate::access::CatalogNames::from_rows(rows));
        *held = Some((Instant::now(), names.clone()));
        Ok(names)
    }
}
