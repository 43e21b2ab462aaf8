//! How tidemark reaches Redis / ElastiCache: the seed URLs with the credentials of `[redis]`
//! (an AUTH token, or an RBAC user and password) and, for `rediss://`, TLS with the system's
//! roots or `[redis.tls]`'s (`insecure` only by explicit opt-in). One node, a replication
//! group's primary endpoint and cluster mode alike; in cluster mode every discovered node gets
//! the same TLS and credentials.

use redis::cluster::ClusterClient;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};

use crate::config::Redis as RedisConfig;
use crate::error::{Error, Result};

/// The seeds and certificates of `[redis]`.
#[derive(Clone)]
pub struct RedisTarget {
    seeds: Vec<ConnectionInfo>,
    certs: Option<TlsCertificates>,
    tls: bool,
    insecure: bool,
    cluster: bool,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("tls", &self.tls)
            .field("cluster", &self.cluster)
            .finish()
    }
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("[redis]: {e}"))
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad(format!("{path}: {e}")))
}

/// The password of `[redis]`: `password` (or `TIDEMARK_REDIS_PASSWORD`), else `password_file`.
fn password(cfg: &RedisConfig) -> Result<Option<String>> {
    if let Some(p) = &cfg.password {
        return Ok(Some(p.clone()));
    }
    match &cfg.password_file {
        None => Ok(None),
        Some(path) => {
            let text =
                String::from_utf8(read(path)?).map_err(|_| bad(format!("{path}: not UTF-8")))?;
            Ok(Some(text.lines().next().unwrap_or_default().to_string()))
        }
    }
}

impl RedisTarget {
    /// The target `[redis]` describes (URLs parsed, certificate files read now).
    pub fn new(cfg: &RedisConfig) -> Result<RedisTarget> {
        crate::exec::tls::install_provider();
        let password = password(cfg)?;
        let mut seeds = Vec::new();
        for url in std::iter::once(&cfg.url).chain(&cfg.nodes) {
            let info = url.as_str().into_connection_info().map_err(|e| bad(format!("url: {e}")))?;
            let mut redis = info.redis_settings().clone();
            if let Some(u) = &cfg.username {
                redis = redis.set_username(u);
            }
            if let Some(p) = &password {
                redis = redis.set_password(p);
            }
            let addr = match info.addr().clone() {
                ConnectionAddr::TcpTls { host, port, tls_params, .. } if cfg.tls.insecure => {
                    ConnectionAddr::TcpTls { host, port, insecure: true, tls_params }
                }
                other => other,
            };
            seeds.push(info.set_redis_settings(redis).set_addr(addr));
        }
        let tls = seeds.iter().any(|s| matches!(s.addr(), ConnectionAddr::TcpTls { .. }));
        let t = &cfg.tls;
        let client_tls = match (&t.client_cert, &t.client_key) {
            (Some(c), Some(k)) => {
                Some(redis::ClientTlsConfig { client_cert: read(c)?, client_key: read(k)? })
            }
            (None, None) => None,
            _ => return Err(bad("tls.client_cert and tls.client_key go together")),
        };
        let root_cert = t.root_cert.as_deref().map(read).transpose()?;
        let certs = (client_tls.is_some() || root_cert.is_some())
            .then_some(TlsCertificates { client_tls, root_cert });
        if certs.is_some() && !tls {
            return Err(bad("[redis.tls] certificates need a rediss:// url"));
        }
        Ok(RedisTarget {
            seeds,
            certs,
            tls,
            insecure: t.insecure,
            cluster: cfg.cluster,
            timeout: cfg.timeout()?,
        })
    }

    /// Cluster mode.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// A client of the first seed (single node, replication group primary).
    pub fn client(&self) -> Result<redis::Client> {
        let info = self.seeds[0].clone();
        let client = match &self.certs {
            Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
            None => redis::Client::open(info),
        };
        client.map_err(|e| Error::Unavailable(format!("redis: {e}")))
    }

    /// A cluster client over every seed, with the same TLS and credentials for the nodes it
    /// discovers.
    pub fn cluster(&self) -> Result<ClusterClient> {
        let redis = self.seeds[0].redis_settings();
        let mut b = ClusterClient::builder(self.seeds.clone())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout);
        if let Some(u) = redis.username() {
            b = b.username(u);
        }
        if let Some(p) = redis.password() {
            b = b.password(p);
        }
        if self.tls {
            let mode =
                if self.insecure { redis::TlsMode::Insecure } else { redis::TlsMode::Secure };
            b = b.tls(mode);
        }
        if let Some(certs) = &self.certs {
            b = b.certs(certs.clone());
        }
        b.build().map_err(|e| Error::Unavailable(format!("redis: {e}")))
    }
}
