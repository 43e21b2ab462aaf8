//! TOML configuration: listeners, warehouse, optional Redis and the logical tables.
//!
//! Configuration is loaded once, validated, and passed explicitly (`Arc<Config>`);
//! nothing reads it through globals.

pub use crate::conninfo::{SslMode, TlsSettings};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
pub use crate::model::duration::Span;
pub use windows::{Measure, WindowsConfig};

mod windows;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on; a listener whose key is absent is not started.
    #[serde(default)]
    pub listen: Listen,
    /// The warehouse that holds batch tables, speed tables and the watermark table.
    pub warehouse: Warehouse,
    /// Optional Redis / ElastiCache for the windows layer.
    pub redis: Option<Redis>,
    /// The logical tables tidemark serves.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// PostgreSQL wire protocol settings.
    #[serde(default)]
    pub pg: PgConfig,
    /// Arrow Flight SQL settings.
    #[serde(default)]
    pub flight: FlightConfig,
    /// How values reach Arrow clients (Flight SQL, REST Arrow IPC).
    #[serde(default)]
    pub arrow: ArrowConfig,
    /// Leg caches.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Named queries (optional).
    pub queries: Option<QueriesConfig>,
    /// TLS certificate and key for the listeners (optional).
    pub tls: Option<TlsConfig>,
    /// Users allowed to connect; empty means trust (any user, no password).
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Limits per query and on the warehouse.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The web console at `/console` and what it keeps in memory.
    #[serde(default)]
    pub console: ConsoleConfig,
}

/// The web console (`/console` on the HTTP listener) and the recent statements it lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console's page at `/console` (its data endpoints are part of REST anyway).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Finished statements kept for `GET /v1/recent` (also bounded to 32 MiB); 0 keeps none.
    #[serde(default = "default_recent")]
    pub recent: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { enabled: true, recent: default_recent() }
    }
}

fn default_recent() -> usize {
    1000
}

/// Limits that protect the warehouse and tidemark from heavy or many queries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most rows one answer may hold (54000 past it); 0 means no limit.
    #[serde(default)]
    pub max_result_rows: u64,
    /// Most bytes one answer may hold, counted as the rows' data (54000 past it); 0: no limit.
    #[serde(default)]
    pub max_result_bytes: u64,
    /// Most warehouse statements running at once; 0 means `warehouse.pool_size`.
    #[serde(default)]
    pub max_concurrent_queries: usize,
    /// Most statements waiting for one of those slots; more get 53300 at once.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Longest wait in that queue before 53300.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Span,
    /// On SIGTERM/SIGINT: how long in-flight queries may finish before they are cancelled.
    #[serde(default = "default_shutdown_deadline")]
    pub shutdown_deadline: Span,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_result_rows: 0,
            max_result_bytes: 0,
            max_concurrent_queries: 0,
            queue: default_queue(),
            queue_timeout: default_queue_timeout(),
            shutdown_deadline: default_shutdown_deadline(),
        }
    }
}

fn default_queue() -> usize {
    4096
}

fn default_queue_timeout() -> Span {
    Span(Duration::from_secs(10))
}

fn default_shutdown_deadline() -> Span {
    Span(Duration::from_secs(30))
}

/// PostgreSQL wire protocol settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// Most concurrent client connections; more get SQLSTATE 53300.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections with no statement running for this long are closed; "0" keeps them.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Span,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_idle_timeout() -> Span {
    Span(Duration::ZERO)
}

fn default_max_connections() -> usize {
    256
}

/// Arrow Flight SQL settings: the size of the record batches sent to clients and the keys
/// bearer tokens are signed with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightConfig {
    /// Most rows per FlightData message.
    #[serde(default = "default_flight_rows")]
    pub max_batch_rows: usize,
    /// Target size of one FlightData message in bytes (larger batches are split).
    #[serde(default = "default_flight_bytes")]
    pub max_message_bytes: usize,
    /// Keys that sign (the first) and verify (all) Handshake tokens, shared by the replicas;
    /// empty: a random key per process.
    #[serde(default)]
    pub token_keys: Vec<Secret>,
    /// A file with more such keys, one per line (after `token_keys`; re-read at start only),
    /// so that no key need be in the configuration file.
    pub token_keys_file: Option<String>,
    /// How long a Handshake token is valid.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: Span,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            max_batch_rows: default_flight_rows(),
            max_message_bytes: default_flight_bytes(),
            token_keys: Vec::new(),
            token_keys_file: None,
            token_ttl: default_token_ttl(),
        }
    }
}

fn default_token_ttl() -> Span {
    Span(Duration::from_secs(12 * 3600))
}

/// A secret from the configuration: never printed (Debug shows `***`).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's text, for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn default_flight_rows() -> usize {
    65_536
}

fn default_flight_bytes() -> usize {
    2 * 1024 * 1024
}

/// Leg caches: batch legs kept until evicted, speed legs for a short TTL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turns the caches on (default) or off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Byte budget of the batch leg cache.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
    /// Byte budget of the speed leg cache.
    #[serde(default = "default_speed_bytes")]
    pub speed_bytes: u64,
    /// How long a speed leg result is reused (e.g. "1s"; "0" disables caching). Whole
    /// answers are cached per realtime epoch of this length, and REST sends it as max-age.
    #[serde(default = "default_speed_ttl")]
    pub speed_ttl: Span,
    /// Byte budget of the whole-answer cache.
    #[serde(default = "default_speed_bytes")]
    pub result_bytes: u64,
    /// Re-run named and frequent recent queries in the background when W moves.
    #[serde(default = "default_true")]
    pub rewarm: bool,
    /// With `[redis]`: share batch legs and chunks with the other replicas through Redis,
    /// compute each once per fleet (leases), and re-warm each query on one replica.
    #[serde(default = "default_true")]
    pub shared: bool,
    /// How long a shared leg lives in Redis (old W's legs also go when W moves).
    #[serde(default = "default_shared_ttl")]
    pub shared_ttl: Span,
    /// Largest shared leg (compressed bytes); larger legs stay in this replica's cache.
    #[serde(default = "default_shared_entry_bytes")]
    pub shared_entry_bytes: u64,
    /// Longest a replica waits for a leg another replica is computing before computing it
    /// itself.
    #[serde(default = "default_shared_wait")]
    pub shared_wait: Span,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            batch_bytes: default_batch_bytes(),
            speed_bytes: default_speed_bytes(),
            speed_ttl: default_speed_ttl(),
            result_bytes: default_speed_bytes(),
            rewarm: true,
            shared: true,
            shared_ttl: default_shared_ttl(),
            shared_entry_bytes: default_shared_entry_bytes(),
            shared_wait: default_shared_wait(),
        }
    }
}

fn default_shared_ttl() -> Span {
    Span(Duration::from_secs(3600))
}
fn default_shared_entry_bytes() -> u64 {
    4 << 20
}
fn default_shared_wait() -> Span {
    Span(Duration::from_secs(10))
}

fn default_true() -> bool {
    true
}
fn default_batch_bytes() -> u64 {
    256 << 20
}
fn default_speed_bytes() -> u64 {
    64 << 20
}
fn default_speed_ttl() -> Span {
    Span(Duration::from_secs(1))
}

/// Where named queries live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueriesConfig {
    /// Directory of `*.sql` files (relative to the working directory).
    pub dir: String,
}

/// PEM files for TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
}

/// One user and the SCRAM-SHA-256 verifier of their password (never the password itself;
/// make one with `tidemark hash-password`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as PostgreSQL stores it.
    pub password_hash: String,
    /// REST API keys as `sha256:<hex>` (from `tidemark new-api-key`).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Logical tables this user may read; absent: all.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Warehouse schemas this user may read through pass-through queries (pg_catalog and
    /// information_schema always); absent: all.
    #[serde(default)]
    pub schemas: Option<Vec<String>>,
    /// This user's statement timeout (e.g. "30s"), instead of `warehouse.statement_timeout`.
    #[serde(default)]
    pub statement_timeout: Option<Span>,
    /// May read the text of every user's recent statements (like PostgreSQL's
    /// `pg_read_all_stats` role); others see only their own.
    #[serde(default)]
    pub read_all_stats: bool,
}

fn is_key_hash(k: &str) -> bool {
    k.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Listener addresses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// REST over HTTP.
    pub http: Option<String>,
    /// PostgreSQL wire protocol.
    pub pg: Option<String>,
    /// Arrow Flight SQL.
    pub flight: Option<String>,
}

/// How `numeric` columns reach Arrow clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumericMode {
    /// `Decimal128`: `numeric(p,s)` as `decimal128(p,s)`; unconstrained numeric with a scale
    /// chosen from the answer's values (exact text when they do not fit).
    #[default]
    Decimal,
    /// `Utf8` holding the exact decimal text (tidemark before decimals).
    Text,
}

impl NumericMode {
    /// `decimal` or `text` (case-insensitive), as the per-request headers give it.
    pub fn parse(text: &str) -> Option<NumericMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "decimal" => Some(NumericMode::Decimal),
            "text" => Some(NumericMode::Text),
            _ => None,
        }
    }
}

/// `[arrow]`: the representation of values in Arrow answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrowConfig {
    /// `decimal` (default) or `text`.
    #[serde(default)]
    pub numeric: NumericMode,
}

/// SQL dialect of the warehouse: decides parsing, rendering and result-type rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL (tests and the demo).
    Postgres,
    /// Amazon Redshift (production).
    Redshift,
}

/// Warehouse connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warehouse {
    /// libpq-style URL, e.g. `postgres://user@host:5432/db`.
    pub url: String,
    /// `postgres` or `redshift`.
    #[serde(default = "default_dialect")]
    pub dialect: Dialect,
    /// Name of the watermark table.
    #[serde(default = "default_watermark_table")]
    pub watermark_table: String,
    /// Maximum pooled warehouse connections.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long to wait for a warehouse connection (e.g. "5s").
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Statement timeout applied to every warehouse query (e.g. "60s"; "0" disables).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: Span,
    /// How often the watermark table is polled (e.g. "1s"; default 1s, 10s on Redshift so a
    /// Serverless workgroup can pause: the Redis push keeps replicas prompt).
    #[serde(default)]
    pub watermark_poll: Option<Span>,
    /// Redshift `query_group` (WLM queue label) set on sessions that set none themselves.
    #[serde(default)]
    pub query_group: Option<String>,
    /// `tidemark setup` creates late-binding views (`WITH NO SCHEMA BINDING`); default: on
    /// Redshift, off on PostgreSQL (which has none).
    #[serde(default)]
    pub late_binding_views: Option<bool>,
    /// Pooled connections older than this are closed instead of reused, so logins pick up
    /// rotated credentials and load spreads after failovers (PgBouncer's `server_lifetime`;
    /// "0" keeps them).
    #[serde(default = "default_max_connection_age")]
    pub max_connection_age: Span,
    /// `[warehouse.tls]`: TLS to the warehouse (over the URL's `sslmode`, `sslrootcert`, ...).
    #[serde(default)]
    pub tls: TlsSettings,
    /// `[warehouse.credentials]`: where the password comes from (absent: the URL's).
    pub credentials: Option<CredentialsConfig>,
}

/// Where the warehouse password (and, for IAM, the user) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    /// The URL's password, read once.
    Static,
    /// A file's first line, re-read whenever the file changes (a mounted Kubernetes secret).
    File,
    /// A command's output: the password, or JSON `{"password", "user", "expiration"}` (as AWS
    /// CLI's `credential_process` prints), run again before the expiration.
    Command,
    /// Redshift provisioned: `GetClusterCredentials` (with `db_user`) or
    /// `GetClusterCredentialsWithIAM` (without: the IAM identity's user).
    RedshiftIam,
    /// Redshift Serverless: `GetCredentials`.
    RedshiftServerlessIam,
}

/// `[warehouse.credentials]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// The source.
    pub source: CredentialSource,
    /// `file`: the password file.
    pub path: Option<String>,
    /// `command`: the program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// `command`: how long a password printed without an expiration is used (default 10m).
    pub refresh: Option<Span>,
    /// IAM: the AWS region.
    pub region: Option<String>,
    /// `redshift-iam`: the cluster identifier.
    pub cluster: Option<String>,
    /// `redshift-serverless-iam`: the workgroup name.
    pub workgroup: Option<String>,
    /// `redshift-iam`: the database user for `GetClusterCredentials`.
    pub db_user: Option<String>,
    /// IAM: the database (default: the URL's).
    pub db_name: Option<String>,
    /// IAM: how long the credentials last (15m to 60m; default 15m).
    pub duration: Option<Span>,
    /// `redshift-iam` with `db_user`: create the user if it does not exist.
    #[serde(default)]
    pub auto_create: bool,
    /// IAM: the API endpoint instead of AWS's (a VPC endpoint, or a stand-in in tests).
    pub endpoint: Option<String>,
}

/// Redis / ElastiCache settings (used by the windows layer).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://host:port` of a single node (or the first cluster seed).
    pub url: String,
    /// ElastiCache cluster mode: `url` and `nodes` are seeds of a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    /// More cluster seed URLs (cluster mode only).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Bound on each Redis round trip; slower answers count as Redis being down (degraded).
    #[serde(default = "default_redis_timeout")]
    pub timeout: Span,
    /// RBAC user (ElastiCache user group); the URL's `user:` works too.
    pub username: Option<String>,
    /// AUTH token or the RBAC user's password (or `TIDEMARK_REDIS_PASSWORD`, or `password_file`).
    pub password: Option<String>,
    /// A file whose first line is the password (a mounted secret).
    pub password_file: Option<String>,
    /// `[redis.tls]`: certificates for `rediss://`.
    #[serde(default)]
    pub tls: RedisTls,
}

/// `[redis.tls]`: TLS to Redis (used with `rediss://` URLs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// PEM roots (default: the system's).
    pub root_cert: Option<String>,
    /// PEM client certificate.
    pub client_cert: Option<String>,
    /// PEM key of the client certificate.
    pub client_key: Option<String>,
    /// Accept any certificate: explicit opt-in only (test setups).
    #[serde(default)]
    pub insecure: bool,
}

impl Redis {
    /// A single-node Redis at `url` with default settings.
    pub fn at(url: &str) -> Redis {
        Redis {
            url: url.into(),
            cluster: false,
            nodes: vec![],
            timeout: default_redis_timeout(),
            username: None,
            password: None,
            password_file: None,
            tls: RedisTls::default(),
        }
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Result<Duration> {
        let d = self.timeout.get();
        if d.is_zero() {
            return Err(Error::Config("redis.timeout must be positive".into()));
        }
        Ok(d)
    }
}

fn default_redis_timeout() -> Span {
    Span(Duration::from_millis(250))
}

/// One logical table and its layer tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Logical table name analysts query (a view of that name is created by setup).
    pub name: String,
    /// Event-time column shared by both layer tables.
    pub time_column: String,
    /// Batch layer table (history, complete below the watermark).
    pub batch_table: String,
    /// Speed layer table (recent rows loaded by the stream processor).
    pub speed_table: String,
    /// Optional per-bucket aggregates in Redis written by the stream processor.
    #[serde(default)]
    pub windows: Option<WindowsConfig>,
}

fn default_dialect() -> Dialect {
    Dialect::Postgres
}
fn default_watermark_table() -> String {
    "tidemark_watermarks".into()
}
fn default_pool_size() -> usize {
    16
}
fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(5))
}
/// The hex digest of a `password_hash` in PostgreSQL's MD5 form (`md5` + md5(password ||
/// user name)); such users log in with MD5.
pub fn md5_digest(hash: &str) -> Option<&str> {
    let hex = hash.strip_prefix("md5")?;
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn default_statement_timeout() -> Span {
    Span(Duration::from_secs(60))
}

fn default_max_connection_age() -> Span {
    Span(Duration::from_secs(3600))
}

impl Config {
    /// Parses TOML text, applies environment overrides and validates.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| Error::Config(format!("invalid config: {e}")))?;
        cfg.apply_env();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &str) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read config {path}: {e}")))?;
        Self::from_toml_str(&text)
    }

    /// Environment overrides: `TIDEMARK_WAREHOUSE_URL`, `TIDEMARK_LISTEN_HTTP`,
    /// `TIDEMARK_LISTEN_PG`, `TIDEMARK_LISTEN_FLIGHT`, `TIDEMARK_REDIS_URL`,
    /// `TIDEMARK_REDIS_PASSWORD`.
    fn apply_env(&mut self) {
        if let Ok(v) = std::env::var("TIDEMARK_WAREHOUSE_URL") {
            self.warehouse.url = v;
        }
        if let Ok(v) = std::env::var("TIDEMARK_LISTEN_HTTP") {
            self.listen.http = Some(v);
        }
        if let Ok(v) = std::env::var("TIDEMARK_LISTEN_PG") {
            self.listen.pg = Some(v);
        }
        if let Ok(v) = std::env::var("TIDEMARK_LISTEN_FLIGHT") {
            self.listen.flight = Some(v);
        }
        if let Ok(v) = std::env::var("TIDEMARK_REDIS_URL") {
            match &mut self.redis {
                Some(r) => r.url = v,
                None => self.redis = Some(Redis::at(&v)),
            }
        }
        if let (Ok(v), Some(r)) = (std::env::var("TIDEMARK_REDIS_PASSWORD"), &mut self.redis) {
            r.password = Some(v);
        }
    }

    /// Checks everything that can be checked without connecting.
    pub fn validate(&self) -> Result<()> {
        for addr in [&self.listen.http, &self.listen.pg, &self.listen.flight].into_iter().flatten()
        {
            addr.parse::<SocketAddr>()
                .map_err(|_| Error::Config(format!("invalid listen address {addr:?}")))?;
        }
        let (url, _) = crate::conninfo::split_url(&self.warehouse.url)?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| Error::Config(format!("invalid warehouse.url: {e}")))?;
        self.warehouse.connect_timeout()?;
        self.warehouse.statement_timeout()?;
        self.warehouse.watermark_poll()?;
        for u in &self.users {
            let md5 = md5_digest(&u.password_hash).is_some();
            if !u.password_hash.starts_with("SCRAM-SHA-256$") && !md5 {
                return Err(Error::Config(format!(
                    "user {:?}: password_hash must be a SCRAM-SHA-256 verifier, or for MD5 login an md5 hash (see `tidemark hash-password [--md5 USER]`)",
                    u.name
                )));
            }
            if let Some(k) = u.api_keys.iter().find(|k| !is_key_hash(k)) {
                return Err(Error::Config(format!(
                    "user {:?}: api key {k:?} must be sha256:<64 hex digits> (see `tidemark new-api-key`)",
                    u.name
                )));
            }
        }
        if self.flight.max_batch_rows == 0 || self.flight.max_message_bytes < 1024 {
            return Err(Error::Config(
                "flight.max_batch_rows must be positive and flight.max_message_bytes at least 1024"
                    .into(),
            ));
        }
        if let Some(r) = &self.redis {
            r.timeout()?;
        }
        if self.pg.max_connections == 0 {
            return Err(Error::Config("pg.max_connections must be at least 1".into()));
        }
        if self.warehouse.pool_size == 0 {
            return Err(Error::Config("warehouse.pool_size must be at least 1".into()));
        }
        check_ident("warehouse.watermark_table", &self.warehouse.watermark_table)?;
        let mut seen = std::collections::HashSet::new();
        for t in &self.tables {
            check_ident("tables.name", &t.name)?;
            check_ident("tables.time_column", &t.time_column)?;
            check_ident("tables.batch_table", &t.batch_table)?;
            check_ident("tables.speed_table", &t.speed_table)?;
            if !seen.insert(t.name.to_lowercase()) {
                return Err(Error::Config(format!("table {:?} is configured twice", t.name)));
            }
            if let Some(w) = &t.windows {
                w.validate(&t.name)?;
                if self.redis.is_none() {
                    return Err(Error::Config(format!(
                        "table {:?} has windows but no [redis] is configured",
                        t.name
                    )));
                }
            }
            if t.batch_table.eq_ignore_ascii_case(&t.speed_table) {
                return Err(Error::Config(format!(
                    "table {:?}: batch_table and speed_table must differ",
                    t.name
                )));
            }
        }
        Ok(())
    }

    /// The logical table with this (case-insensitive) name.
    pub fn table(&self, name: &str) -> Option<&TableConfig> {
        self.tables.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

impl Warehouse {
    /// Connection wait timeout.
    pub fn connect_timeout(&self) -> Result<Duration> {
        Ok(self.connect_timeout.get())
    }
    /// Statement timeout (zero: none).
    pub fn statement_timeout(&self) -> Result<Duration> {
        Ok(self.statement_timeout.get())
    }
    /// How long a pooled connection may be reused (None: for ever).
    pub fn max_connection_age(&self) -> Result<Option<Duration>> {
        let d = self.max_connection_age.get();
        Ok((!d.is_zero()).then_some(d))
    }
    /// Watermark poll interval.
    pub fn watermark_poll(&self) -> Result<Duration> {
        let default = match self.dialect {
            Dialect::Redshift => Duration::from_secs(10),
            Dialect::Postgres => Duration::from_secs(1),
        };
        let d = self.watermark_poll.map_or(default, Span::get);
        if d.is_zero() {
            return Err(Error::Config("warehouse.watermark_poll must be positive".into()));
        }
        Ok(d)
    }
}

/// Accepts identifiers and schema-qualified names made of letters, digits, `_` and `$`.
fn check_ident(key: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{key} = {value:?} is not a plain identifier (letters, digits, _ and $, optionally schema-qualified)"
        )))
    }
}

/// Parses "250ms", "5s", "2m", "1h" or a bare number of seconds (for values set at run time,
/// such as a session's `statement_timeout`; config files are parsed into [`Span`]s).
pub fn parse_duration(key: &str, text: &str) -> Result<Duration> {
    Span::parse(text).map(Span::get).map_err(|e| Error::Config(format!("{key} = {e}")))
}

#[cfg(test)]
mod tests;
