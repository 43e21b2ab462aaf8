//! Access control: which logical tables and warehouse schemas each configured user may read,
//! checked on the parsed statement before anything reaches the warehouse (42501), and the
//! REST API keys (stored as SHA-256 hashes) that identify users over HTTP.
//!
//! Every schema-qualified name of a statement is checked (see [`check`]): relations, functions
//! and aggregates, types and casts, operators, and the relation names sequence and size
//! functions take as text. Functions that run SQL text or read files (`query_to_xml`,
//! `dblink`, `pg_read_file`, ...) and settings that reveal the host (`data_directory`, ...)
//! are refused for restricted users, whose statements must also parse.

mod check;

use std::collections::{HashMap, HashSet};

pub use check::{check, CatalogNames, Resolution};

use crate::config::UserConfig;
use crate::error::{Error, Result};

/// Schemas every user may read (catalog metadata for drivers and BI tools).
const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// What one user may read; `None` means everything of that kind.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    tables: Option<HashSet<String>>,
    schemas: Option<HashSet<String>>,
}

impl Grants {
    /// Whether the user is restricted at all.
    pub fn restricted(&self) -> bool {
        self.tables.is_some() || self.schemas.is_some()
    }

    /// Whether the user may read logical table `name`.
    pub fn table(&self, name: &str) -> bool {
        self.tables.as_ref().is_none_or(|t| t.contains(&name.to_lowercase()))
    }

    fn schema(&self, name: &str) -> bool {
        SYSTEM_SCHEMAS.contains(&name)
            || self.schemas.as_ref().is_none_or(|s| s.contains(&name.to_lowercase()))
    }
}

/// Users' grants and API keys from the configuration.
#[derive(Debug, Default)]
pub struct Access {
    grants: HashMap<String, Grants>,
    keys: HashMap<String, String>,
}

/// The stored form of an API key: `sha256:` and the hex SHA-256 of the key.
pub fn hash_api_key(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A new random API key (32 bytes, hex).
pub fn new_api_key() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("no system randomness"))?;
    Ok(format!("tmk_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

impl Access {
    /// Grants and keys of the configured users.
    pub fn new(users: &[UserConfig]) -> Access {
        let lower = |v: &Option<Vec<String>>| {
            v.as_ref().map(|v| v.iter().map(|s| s.to_lowercase()).collect::<HashSet<_>>())
        };
        let grants = users
            .iter()
            .map(|u| {
                let g = Grants { tables: lower(&u.tables), schemas: lower(&u.schemas) };
                (u.name.clone(), g)
            })
            .collect();
        let keys = users
            .iter()
            .flat_map(|u| u.api_keys.iter().map(|k| (k.to_lowercase(), u.name.clone())))
            .collect();
        Access { grants, keys }
    }

    /// Whether users are configured (then every frontend authenticates).
    pub fn required(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The grants of a restricted user; None for unrestricted and anonymous users.
    pub fn restricted(&self, user: &str) -> Option<&Grants> {
        self.grants.get(user).filter(|g| g.restricted())
    }

    /// The user an API key belongs to.
    pub fn user_for_key(&self, key: &str) -> Option<&str> {
        self.keys.get(&hash_api_key(key)).map(String::as_str)
    }
}
