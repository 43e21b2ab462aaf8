//! Authentication shared by the three frontends: SCRAM-SHA-256 verifiers (the format
//! PostgreSQL stores), MD5 hashes, checking a password against either, and the TLS acceptors.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

use crate::config::UserConfig;
use crate::error::{Error, Result};

/// SCRAM iterations used by `tidemark hash-password` (PostgreSQL's default).
pub const SCRAM_ITERATIONS: usize = 4096;

/// Configured users and their verifiers.
#[derive(Debug)]
pub struct Users {
    verifiers: HashMap<String, String>,
}

impl Users {
    /// Users from config.
    pub fn new(users: &[UserConfig]) -> Users {
        Users {
            verifiers: users.iter().map(|u| (u.name.clone(), u.password_hash.clone())).collect(),
        }
    }
}

/// Parses `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
pub fn parse_verifier(s: &str) -> Option<ScramSecret> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let rest = s.strip_prefix("SCRAM-SHA-256$")?;
    let (iter_salt, keys) = rest.split_once('$')?;
    let (iter, salt) = iter_salt.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    Some(ScramSecret::Verifier {
        salt: b64.decode(salt).ok()?,
        iterations: iter.parse().ok()?,
        stored_key: b64.decode(stored).ok()?,
        server_key: b64.decode(server).ok()?,
    })
}

/// Makes a verifier for a password with a random salt (what `tidemark hash-password` prints).
pub fn make_verifier(password: &str) -> String {
    let salt: Vec<u8> = (0..16).map(|_| rand_byte()).collect();
    let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
    let ScramSecret::Verifier { salt, iterations, stored_key, server_key } =
        ScramSecret::verifier_from_salted_password(salt, salted, SCRAM_ITERATIONS)
    else {
        unreachable!("verifier_from_salted_password returns a verifier")
    };
    let b = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b.encode(salt),
        b.encode(stored_key),
        b.encode(server_key)
    )
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u8
}

impl Users {
    /// Whether `user` logs in with MD5: their `password_hash` is PostgreSQL's MD5 form.
    pub fn uses_md5(&self, user: &str) -> bool {
        self.verifiers.get(user).is_some_and(|v| crate::config::md5_digest(v).is_some())
    }
}

/// PostgreSQL's stored MD5 form of a password (what `tidemark hash-password --md5` prints).
pub fn make_md5_hash(user: &str, password: &str) -> String {
    format!("md5{:x}", md5::compute(format!("{password}{user}")))
}

/// The answer an MD5 client must send for this stored hash and salt.
fn md5_answer(stored_hex: &str, salt: &[u8]) -> String {
    let mut bytes = stored_hex.as_bytes().to_vec();
    bytes.extend_from_slice(salt);
    format!("md5{:x}", md5::compute(bytes))
}

#[async_trait]
impl AuthSource for Users {
    /// MD5 users only: a fresh salt and the answer expected with it.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.verifiers.get(user).and_then(|v| crate::config::md5_digest(v)) {
            Some(hex) => {
                let salt: Vec<u8> = (0..4).map(|_| rand_byte()).collect();
                let answer = md5_answer(hex, &salt).into_bytes();
                Ok(Password::new(Some(salt), answer))
            }
            None => Err(PgWireError::InvalidPassword(user.to_owned())),
        }
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        match self.verifiers.get(user).and_then(|v| parse_verifier(v)) {
            Some(secret) => Ok((secret, None)),
            None => Err(PgWireError::InvalidPassword(user.to_owned())),
        }
    }
}

/// Whether `password` is `user`'s, checked against the stored SCRAM verifier or MD5 hash (for
/// frontends that receive the password itself, such as Flight's basic auth), in constant time.
pub fn password_matches(user: &str, password: &str, stored: &str) -> bool {
    if crate::config::md5_digest(stored).is_some() {
        return same_bytes(make_md5_hash(user, password).as_bytes(), stored.as_bytes());
    }
    let Some(ScramSecret::Verifier { salt, iterations, stored_key, server_key }) =
        parse_verifier(stored)
    else {
        return false;
    };
    let salted = gen_salted_password(password, &salt, iterations);
    match ScramSecret::verifier_from_salted_password(salt, salted, iterations) {
        ScramSecret::Verifier { stored_key: s, server_key: k, .. } => {
            same_bytes(&s, &stored_key) & same_bytes(&k, &server_key)
        }
        _ => false,
    }
}

/// Byte equality whose time depends only on the lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A TLS acceptor from PEM files (ALPN `postgresql` for direct TLS).
pub fn tls_acceptor(cert: &str, key: &str) -> Result<pgwire::tokio::TlsAcceptor> {
    tls_acceptor_for(cert, key, b"postgresql")
}

/// A TLS acceptor for the certificate and key (PEM files) offering one ALPN protocol.
pub fn tls_acceptor_for(cert: &str, key: &str, alpn: &[u8]) -> Result<pgwire::tokio::TlsAcceptor> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| Error::Config(format!("TLS: {e}"));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(cfg)))
}
